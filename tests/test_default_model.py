"""The project's default full-body model: what the issue asks of it, and FK against OpenSim.

Expected poses come from OpenSim 4.6 run live on the packaged .osim (tests/opensim_helpers),
compared in float64: measured errors <= 1.4e-15 m on positions and 1.1e-15 on rotation
entries; the tolerance is 5e-15 (4x).
"""

import filecmp
import re

import numpy as np
import pytest

from d3ke_jax.skeleton import default_model_path, forward_kinematics, load_osim
from experiments import make_default_model as default_model
from conftest import reference_file
from opensim_helpers import opensim_fk

SPINE_JOINTS = ("L5_S1", "L4_L5", "T12_L1", "T11_T12", "T10_T11", "T9_T10", "T8_T9", "T1_T2",
                "T1_head_neck")
TOL = 5e-15


def _random_pose(model, rng, n):
  low, high = np.asarray(model.coordinate_ranges).T
  return rng.uniform(np.maximum(low, -1.5), np.minimum(high, 1.5), (n, model.num_coordinates))


@pytest.mark.float64
def test_matches_opensim_on_random_poses():
  model = load_osim()
  coords = _random_pose(model, np.random.default_rng(0), 5)
  expected = opensim_fk(default_model_path(), coords)
  out = forward_kinematics(model, coords)
  np.testing.assert_allclose(out.markers, expected["markers"], rtol=0, atol=TOL)
  np.testing.assert_allclose(out.joint_origins, expected["joint_origins"], rtol=0, atol=TOL)
  np.testing.assert_allclose(out.body_transforms, expected["body_transforms"], rtol=0, atol=TOL)


@pytest.mark.float64
def test_matches_opensim_scaled():
  model = load_osim()
  rng = np.random.default_rng(1)
  coords = _random_pose(model, rng, 3)
  factors = rng.uniform(0.85, 1.15, (model.num_bodies, 3))
  expected = opensim_fk(default_model_path(), coords, scale_factors=factors)
  out = forward_kinematics(model, coords, scales=factors)
  np.testing.assert_allclose(out.markers, expected["markers"], rtol=0, atol=TOL)
  np.testing.assert_allclose(out.body_transforms, expected["body_transforms"], rtol=0, atol=TOL)


def test_nine_segment_spine_with_three_rotations_each():
  model = load_osim()
  for joint in SPINE_JOINTS:
    for dof in ("FE", "LB", "AR"):
      index = model.coordinate_index(f"{joint}_{dof}")
      assert model.coordinate_types[index] == "rotational"


def test_limbs_and_markers():
  model = load_osim()
  for side in "rl":
    for name in ("hip_flexion", "hip_adduction", "hip_rotation", "knee_angle", "ankle_angle",
                 "subtalar_angle", "mtp_angle", "shoulder_flex", "shoulder_add",
                 "shoulder_rot", "elbow_flexion", "pro_sup", "wrist_flex"):
      model.coordinate_index(f"{name}_{side}")
  assert model.num_markers >= 60
  assert len(set(model.marker_names)) == model.num_markers


def test_marker_names_follow_the_reference_model():
  reference = load_osim(reference_file("models", "full_body_wo_hands.osim"))
  shared = set(load_osim().marker_names) & set(reference.marker_names)
  assert len(shared) >= 40, sorted(shared)


def test_default_pose_stands_upright_with_right_side_at_positive_z():
  model = load_osim()
  out = forward_kinematics(model, np.zeros(model.num_coordinates))
  y = {name: out.joint_origins[model.joint_index(name), 1] for name in model.joint_names}
  assert y["T1_head_neck"] > y["L5_S1_IVDjnt"] > y["knee_r"] > y["ankle_r"]
  markers = dict(zip(model.marker_names, np.asarray(out.markers)))
  for name, point in markers.items():
    if name.startswith("R") and "L" + name[1:] in markers:
      assert point[2] > 0, name
      # Exactly mirrored (float32): the arithmetic of the two sides differs only in signs.
      np.testing.assert_array_equal(markers["L" + name[1:]], point * [1, 1, -1])


def test_packaged_file_is_what_the_script_writes(tmp_path):
  path = tmp_path / "d3ke_full_body.osim"
  default_model.write(str(path))
  assert filecmp.cmp(path, default_model_path(), shallow=False), \
      "regenerate it: python -m d3ke_jax.skeleton.default_model"


def test_last_bit_differences_do_not_change_the_file(tmp_path):
  """Another CPU computes some numbers (e.g. axes through BLAS norms) with other last bits:
  moving every number OpenSim prints by up to 2 ulps still writes the packaged file."""
  printed = tmp_path / "printed.osim"
  default_model.build_model().printToXML(str(printed))
  text = printed.read_text()
  rng = np.random.default_rng(0)

  def nudge(match):
    value = float(match.group())
    return repr(value + float(rng.integers(-2, 3) * np.spacing(value)))

  other_machine = re.sub(r"(?<=[>\s])-?\d+\.\d+(?:e-?\d+)?(?=[\s<])", nudge, text)
  assert other_machine != text
  with open(default_model_path(), encoding="utf-8") as f:
    assert default_model.round_numbers(other_machine) == f.read()
