"""SMPL+H in JAX (float32) against an independent NumPy skinning (float64, plain loops, SciPy
rotations), the virtual markers against their definitions, and the fabricated MoVi/AMASS/SMPL+H
files (tests/movi_fakes.py) read back as the original reads them."""

import csv
import os
import shutil

import numpy as np
import pytest
import scipy.io
from scipy.spatial.transform import Rotation

import movi_fakes
from conftest import REPO
from d3ke_jax.body import fake_smplh, smplh, virtual_markers as vm
from d3ke_jax.errors import UserError

MOVI_FACTS = os.path.join(REPO, os.pardir, "shared", "movi")
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def fake_npz(tmp_path_factory):
  return fake_smplh.write_fake_smplh(
      str(tmp_path_factory.mktemp("smplh") / "smplh" / "female" / "model.npz"), "female", 0)


@pytest.fixture(scope="module")
def model(fake_npz):
  return smplh.load_smplh(fake_npz)


def _numpy_skinning(npz, betas, pose, trans):
  """SMPL+H by the book (smplx.lbs.lbs), one frame, float64, loops over joints."""
  parents = npz["kintree_table"][0]
  shaped = npz["v_template"] + npz["shapedirs"][:, :, :16] @ betas
  rest = npz["J_regressor"] @ shaped
  rotations = [Rotation.from_rotvec(pose[3 * j:3 * j + 3]).as_matrix() for j in range(52)]
  feature = np.concatenate([(r - np.eye(3)).ravel() for r in rotations[1:]])
  posed = shaped + npz["posedirs"] @ feature
  world = []
  for j in range(52):
    local = np.eye(4)
    local[:3, :3] = rotations[j]
    local[:3, 3] = rest[j] - (rest[parents[j]] if j else 0)
    world.append(local if j == 0 else world[parents[j]] @ local)
  skinning = []
  for j in range(52):
    a = world[j].copy()
    a[:3, 3] -= world[j][:3, :3] @ rest[j]
    skinning.append(a)
  blended = np.einsum("vj,jab->vab", npz["weights"], np.array(skinning))
  vertices = np.einsum("vab,vb->va", blended[:, :3, :3], posed) + blended[:, :3, 3]
  return vertices + trans, np.array([w[:3, 3] for w in world]) + trans


def test_forward_matches_numpy_skinning(model, fake_npz):
  betas = RNG.normal(size=16)
  poses = RNG.normal(0, 0.4, (3, 156))
  trans = RNG.normal(0, 0.5, (3, 3))
  vertices, joints = smplh.smplh_forward(model, np.float32(betas), np.float32(poses),
                                         np.float32(trans))
  assert vertices.shape == (3, 6890, 3) and joints.shape == (3, 52, 3)
  assert vertices.dtype == np.float32
  with np.load(fake_npz) as npz:
    npz = dict(npz)
  for t in range(3):
    expected_v, expected_j = _numpy_skinning(npz, betas, poses[t], trans[t])
    # Measured: 3.6e-7 m (vertices), 1.8e-7 m (joints): float32 rounding over ~1 m.
    np.testing.assert_allclose(vertices[t], expected_v, rtol=0, atol=2e-6)
    np.testing.assert_allclose(joints[t], expected_j, rtol=0, atol=2e-6)


def test_zero_pose_is_the_template_and_its_regressed_joints(model):
  zeros = np.zeros((3, 156), np.float32)  # 3 frames, as above: one compilation
  vertices, joints = smplh.smplh_forward(model, np.zeros(16, np.float32), zeros,
                                         np.zeros((3, 3), np.float32))
  # Measured: 1.5e-8 m and 3e-8 m.
  np.testing.assert_allclose(vertices[0], model.v_template, rtol=0, atol=2e-7)
  np.testing.assert_allclose(joints[0], model.J_regressor @ model.v_template, rtol=0, atol=2e-7)
  betas = np.float32(RNG.normal(size=16))
  shaped, rest = smplh.rest_pose(model, betas)
  vertices, joints = smplh.smplh_forward(model, betas, zeros, np.zeros((3, 3), np.float32))
  np.testing.assert_allclose(vertices[1], shaped, rtol=0, atol=2e-7)
  np.testing.assert_allclose(joints[2], rest, rtol=0, atol=2e-7)


def test_points_in_padded_chunks_equal_the_full_forward(model):
  betas = np.float32(RNG.normal(size=16))
  poses = np.float32(RNG.normal(0, 0.4, (3, 156)))  # 3 frames: two chunks, one padded
  trans = np.float32(RNG.normal(0, 0.5, (3, 3)))
  vertex_ids, joint_ids = (3079, 0, 6889, 3079), (15, 0, 51)
  points = smplh.smplh_points(model, betas, poses, trans, vertex_ids, joint_ids, chunk=2)
  vertices, joints = smplh.smplh_forward(model, betas, poses, trans)
  assert points.shape == (3, 7, 3)
  expected = np.concatenate([vertices[:, vertex_ids], joints[:, joint_ids]], axis=1)
  np.testing.assert_allclose(points, expected, rtol=0, atol=1e-6)  # measured: 0


def test_mesh_volume_and_height_of_a_known_box():
  corners = np.array([[x, y, z] for x in (0, 2.0) for y in (0, 3.0) for z in (0, 0.5)])
  faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                    [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
  assert float(smplh.mesh_volume(corners, faces)) == pytest.approx(3.0, rel=1e-6)
  assert float(smplh.height(corners)) == pytest.approx(3.0)


def test_fake_body_is_a_closed_human_sized_mesh(model):
  mass, stature = smplh.mass_and_height(model, np.zeros(16, np.float32))
  # A closed, outward mesh: every edge in exactly two faces, in opposite directions.
  edges = np.concatenate([model.faces[:, [0, 1]], model.faces[:, [1, 2]], model.faces[:, [2, 0]]])
  assert len({tuple(e) for e in edges}) == len(edges)
  assert {tuple(e) for e in edges} == {tuple(e) for e in edges[:, ::-1]}
  assert 1.5 < float(stature) < 1.9 and 40 < float(mass) < 100
  volume = smplh.mesh_volume(model.v_template, model.faces)
  assert float(mass) == pytest.approx(smplh.DENSITY * float(volume), rel=1e-6)


def test_marker_table_is_the_csv():
  path = os.path.join(MOVI_FACTS, "smplh_virtual_markers.csv")
  if not os.path.exists(path):
    pytest.skip(f"{path} absent")
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  assert vm.STATIC_MARKER_NAMES == tuple(r["name"] for r in rows)
  indices = dict(vm.VERTEX_MARKERS + vm.JOINT_MARKERS)
  for r in rows:
    if r["type"] in ("vertex", "joint"):
      assert indices[r["name"]] == int(r["index"]), r["name"]
    elif r["type"] == "midpoint":
      assert "+".join(dict(vm.MIDPOINT_MARKERS)[r["name"]]) == r["definition"][len("mean of "):]
    else:
      assert f"copy of {dict(vm.GROUND_MARKERS)[r['name']]} " in r["definition"]


def test_virtual_markers_index_points_and_average_midpoints():
  points = np.float32(RNG.normal(size=(2, 118, 3)))
  markers, names = vm.virtual_markers(points)
  assert names == vm.MARKER_NAMES and markers.shape == (2, 130, 3)
  point = lambda name: points[:, vm.POINT_NAMES.index(name)]
  np.testing.assert_array_equal(markers[:, names.index("STRN")], points[:, 0])
  np.testing.assert_array_equal(markers[:, names.index("HEAD")], points[:, 66 + 15])
  np.testing.assert_allclose(markers[:, names.index("CENTER")],
                             (point("RASI") + point("LASI") + point("RPSI") + point("LPSI")) / 4,
                             rtol=0, atol=1e-6)
  np.testing.assert_allclose(markers[:, names.index("Virtual_RELC")],
                             (point("RELB") + point("RELBIN")) / 2, rtol=0, atol=1e-6)
  subset, subset_names = vm.virtual_markers(points, ["MHIPJ", "ROOT"])
  np.testing.assert_allclose(subset[:, 0], (point("LHIPJ") + point("RHIPJ")) / 2, atol=1e-6)
  with pytest.raises(ValueError, match="static trial only"):
    vm.virtual_markers(points, ["Virtual_Ground_RHEE"])


def test_static_trial_faces_x_with_ground_markers_on_the_floor(model):
  betas = np.float32(RNG.normal(size=16))
  points, vertices = vm.static_pose_points(model, betas)
  shaped = model.v_template + model.shapedirs @ betas
  turned = shaped @ vm.STATIC_ROTATION.T
  np.testing.assert_allclose(vertices, turned, rtol=0, atol=1e-6)  # measured: 1.2e-7
  np.testing.assert_allclose(points[:66], turned[list(vm.POINT_VERTICES)], rtol=0, atol=1e-6)
  markers, names = vm.static_markers(model, betas)
  assert names == vm.STATIC_MARKER_NAMES and markers.shape == (142, 3)
  at = lambda name: np.asarray(markers[names.index(name)])
  assert at("STRN")[0] > at("T8")[0] and at("RASI")[2] > at("LASI")[2]  # facing +x, right +z
  assert at("HEAD")[1] > at("ROOT")[1] > at("RAJC")[1]  # y up
  for name, source in vm.GROUND_MARKERS:
    np.testing.assert_allclose(at(name)[[0, 2]], at(source)[[0, 2]], rtol=0, atol=0)
    assert at(name)[1] == pytest.approx(float(np.min(turned[:, 1])), abs=1e-6)


def test_fake_markers_follow_the_skeletal_model_through_a_walk(model, fake_npz):
  """The fake is built so that the skeletal model can fit it: with betas 0 its vertex markers
  stay within millimetres of the model's markers of the same names (up to the fake's size
  factor, fitted as one scale) while both walk."""
  with np.load(fake_npz) as npz:
    poses, trans = fake_smplh.smplh_motion(movi_fakes.walk(24, seed=3), npz["v_template"],
                                           npz["shapedirs"], npz["J_regressor"], np.zeros(16))
  skeleton = fake_smplh.skeletal_model()
  names = [n for n, _ in vm.VERTEX_MARKERS if n in skeleton.marker_names]
  ids = [dict(vm.VERTEX_MARKERS)[n] for n in names]
  points = np.asarray(smplh.smplh_points(model, np.zeros(16, np.float32), poses, trans, ids),
                      np.float64)
  _, (_, _, markers) = fake_smplh.posed_skeleton(movi_fakes.walk(24, seed=3))
  markers = markers[:, [skeleton.marker_index(n) for n in names]]
  turn = fake_smplh.Z_UP @ fake_smplh.OSIM_TO_SMPL
  # Both relative to their mean over markers, model turned into AMASS's frame; one scale.
  fake = points - points.mean(1, keepdims=True)
  real = (markers - markers.mean(1, keepdims=True)) @ turn.T
  scale = np.sum(fake * real) / np.sum(real * real)
  error = np.linalg.norm(fake - scale * real, axis=-1)
  # Measured: 4.0 mm (RANI: OpenSim's knee slides as it flexes, SMPL+H's does not).
  assert error.max() < 0.01, names[np.argmax(error.max(0))]


def test_load_errors_name_the_file_and_key(tmp_path, fake_npz):
  missing = tmp_path / "smplh" / "male" / "model.npz"
  with pytest.raises(UserError, match=str(missing)):
    smplh.load_smplh(missing)
  with np.load(fake_npz) as npz:
    arrays = dict(npz)
  broken = tmp_path / "broken.npz"
  np.savez(broken, **{k: v for k, v in arrays.items() if k != "posedirs"})
  with pytest.raises(UserError, match=f"{broken}: no 'posedirs' array"):
    smplh.load_smplh(broken)
  np.savez(broken, **dict(arrays, weights=arrays["weights"][:, :22]))
  with pytest.raises(UserError, match=f"{broken}: 'weights' has shape"):
    smplh.load_smplh(broken)


def test_gender_from_folder(tmp_path, fake_npz, model):
  path = tmp_path / "smplh" / "male" / "model.npz"
  path.parent.mkdir(parents=True)
  shutil.copy(fake_npz, path)
  loaded = smplh.load_smplh(path)
  assert loaded.gender == "male" and model.gender == "female"
  assert loaded.parents == fake_smplh.SMPLH_PARENTS


def test_find_smplh_skips_other_models(tmp_path, fake_npz):
  dmpl = tmp_path / "dmpls" / "female" / "model.npz"
  dmpl.parent.mkdir(parents=True)
  dmpl.write_bytes(b"")
  with pytest.raises(UserError, match="no SMPL\\+H model smplh/female/model.npz"):
    smplh.find_smplh(tmp_path, "female")
  root = os.path.dirname(os.path.dirname(os.path.dirname(fake_npz)))
  assert smplh.find_smplh(root, "female") == fake_npz


def test_fake_movi_files_read_back_as_the_original_reads_them(tmp_path):
  flags30 = np.array([[1, 12], [23, 34]])
  path = movi_fakes.write_fake_v3d(str(tmp_path / "F_v3d_Subject_7.mat"), 7, "female", flags30)
  subject = os.path.basename(path).split(".")[0].split("_")[3]  # generate_index.py
  mat = scipy.io.loadmat(path)[f"Subject_{subject}_F"]
  assert mat["subject"][0, 0]["sex"][0, 0][0].lower() == "female"
  table = mat["move"][0, 0][0, 0]["flags30"][0][0].T
  np.testing.assert_array_equal(table[0], [1, 23])  # first frames, 1-based
  np.testing.assert_array_equal(table[1], [12, 34])  # last frames
  shape = movi_fakes.write_fake_shape(str(tmp_path / "shape.npz"), np.arange(16.0), "male")
  with np.load(shape) as npz:
    assert npz["betas"].shape == (16,) and str(npz["gender"]) == "male"


def test_fake_amass_walks_upright_on_a_z_up_floor(tmp_path):
  tree = movi_fakes.fake_movi_tree(str(tmp_path), subjects=(1,), movements=1, frames=24)
  subject = tree["subjects"][1]
  assert subject["amass"][0].endswith("BMLmovi/Subject_1_F_MoSh/Subject_1_F_1_poses.npz")
  with np.load(subject["amass"][0]) as amass:
    assert amass["poses"].shape == (24, 156) and amass["dmpls"].shape == (24, 8)
    assert float(amass["mocap_framerate"]) == 120 and str(amass["gender"]) == "female"
    poses, trans, betas = amass["poses"], amass["trans"], amass["betas"]
  model = smplh.load_smplh(smplh.find_smplh(tmp_path, "female"))
  feet = [dict(vm.VERTEX_MARKERS)[s + n] for s in "LR" for n in movi_fakes.FOOT_MARKERS]
  points = np.asarray(smplh.smplh_points(model, betas, poses, trans, feet, (0, 15)))
  foot, root, head = points[:, :-2, 2].min(1), points[:, -2, 2], points[:, -1, 2]
  assert np.all(head > root + 0.4) and np.all((0.8 < root) & (root < 1.0))  # z up
  # The lowest foot marker stays 0-3 cm above the floor, as standing; measured: 1.7-1.9 cm.
  assert np.all((0 < foot) & (foot < 0.03)) and np.ptp(foot) < 0.006
  walked = np.linalg.norm(points[-1, -2, :2] - points[0, -2, :2])
  assert walked == pytest.approx(1.1 * 23 / 120, rel=0.05)  # 1.1 m/s; measured: 0.9 % off
