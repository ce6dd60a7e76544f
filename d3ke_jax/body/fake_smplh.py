"""A human-shaped fake SMPL+H body made from the project's skeletal model, and its motions.

No real SMPL+H model ships with the project; tests and benchmarks use this one. The body is
made from the skeletal model (``load_osim()``) in a T-pose (shoulders abducted 90 degrees):
the 22 body joints sit at the model's markers named as the joint markers (ROOT, LHIPJ, ...,
else at the matching joint centre), the hands get five 3-joint fingers, and the mesh is one
closed tube per joint (from the joint towards its child; its first ring and cap centre
regress the joint) plus a sole under each foot. The marker vertices
(``virtual_markers.VERTEX_MARKERS``) are the tube vertices nearest to the model's markers of
the same name, moved onto them and skinned to their body's joint only; other vertices near a
joint blend it with its parent. Then everything is turned into SMPL's frame (y up, facing
+z). Betas 0 and 1 scale stature and girth, the others are small linear fields; pose blend
shapes are small.

Motions are the skeletal model's own, turned into SMPL+H joint rotations (``smplh_motion``),
so the model can follow the virtual markers up to the joints SMPL+H and the model place
differently; ``smplh_coordinates`` names the coordinates the body can show.
"""

import functools
import os

import numpy as np
from scipy.spatial.transform import Rotation

from d3ke_jax.body.smplh import NUM_BETAS, NUM_JOINTS, NUM_VERTICES
from d3ke_jax.body.virtual_markers import JOINT_MARKERS, STATIC_ROTATION, VERTEX_MARKERS
from d3ke_jax.skeleton import forward_kinematics, load_osim

SMPLH_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
                 20, 22, 23, 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35,
                 21, 37, 38, 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50)
# SMPL+H body joint -> (the model's bodies it moves, the first one leading; the model joint
# whose centre it sits at when the model has no marker named as its joint marker).
BODY_JOINTS = {
    0: (("pelvis", "lumbar5"), "ground_pelvis"), 1: (("femur_l",), "hip_l"),
    2: (("femur_r",), "hip_r"), 3: (("lumbar4",), "L4_L5_IVDjnt"), 4: (("tibia_l",), "knee_l"),
    5: (("tibia_r",), "knee_r"),
    6: (("thoracic12", "thoracic11", "thoracic10", "thoracic9"), "T12_L1_IVDjnt"),
    7: (("talus_l", "calcn_l"), "ankle_l"), 8: (("talus_r", "calcn_r"), "ankle_r"),
    9: (("thorax",), "T8_T9_IVDjnt"), 10: (("toes_l",), "mtp_l"), 11: (("toes_r",), "mtp_r"),
    12: (("thoracic1",), "T1_T2_IVDjnt"), 13: (("clavicle_l", "scapula_l"), "sternoclavicular_l"),
    14: (("clavicle_r", "scapula_r"), "sternoclavicular_r"), 15: (("head",), "T1_head_neck"),
    16: (("humerus_l",), "shoulder_l"), 17: (("humerus_r",), "shoulder_r"),
    18: (("ulna_l", "radius_l"), "elbow_l"), 19: (("ulna_r", "radius_r"), "elbow_r"),
    20: (("hand_l",), "radiocarpal_l"), 21: (("hand_r",), "radiocarpal_r")}
# SMPL+H finger order under each wrist; each finger's knuckle (m along the hand from the
# wrist, m towards the thumb side) and its three phalanges (m, the last one to the tip).
FINGERS = (("index", 0.08, 0.025, (0.04, 0.025, 0.02)),
           ("middle", 0.082, 0.005, (0.045, 0.028, 0.022)),
           ("pinky", 0.072, -0.033, (0.03, 0.02, 0.018)),
           ("ring", 0.078, -0.015, (0.04, 0.026, 0.02)),
           ("thumb", 0.025, 0.03, (0.035, 0.03, 0.025)))
T_POSE = {"shoulder_add_r": -np.pi / 2, "shoulder_add_l": -np.pi / 2}
FK_BLOCK = 64  # poses per forward-kinematics call: one compilation
GENDER_SCALE = {"female": 0.94, "male": 1.0, "neutral": 0.97}
# AMASS's world is z up: the y-up SMPL frame turned +90 degrees about x.
Z_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
OSIM_TO_SMPL = STATIC_ROTATION.T.astype(np.float64)  # the original's static rotation, undone


def write_fake_smplh(path, gender="female", seed=0):
  """Writes a human-shaped fake extended SMPL+H ``model.npz`` (module docstring)."""
  body = _fake_body(gender, seed)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    np.savez_compressed(f, **body)
  return path


def posed_skeleton(coordinates):
  """Model, FK (body transforms, joint origins, markers) of the model at ``coordinates`` (names
  to values; others at their defaults), float64 NumPy. FK runs on blocks of ``FK_BLOCK`` poses
  so that it compiles once (about 10 s on 2 cores)."""
  model = skeletal_model()
  q = np.tile(np.array(model.coordinate_defaults, np.float32), (len(coordinates), 1))
  for row, values in enumerate(coordinates):
    for name, value in values.items():
      q[row, model.coordinate_index(name)] = value
  blocks = [np.pad(q[s:s + FK_BLOCK], ((0, max(0, s + FK_BLOCK - len(q))), (0, 0)), mode="edge")
            for s in range(0, len(q), FK_BLOCK)]
  outputs = [forward_kinematics(model, block) for block in blocks]
  return model, tuple(np.concatenate([np.asarray(out[k], np.float64) for out in outputs])[:len(q)]
                      for k in range(3))


@functools.lru_cache(maxsize=1)
def skeletal_model():
  return load_osim()


def _skeleton(model, joints, markers):
  """SMPL+H joints (52, 3) of the T-posed model, and fingertips (name -> (3,), joint)."""
  positions = np.zeros((NUM_JOINTS, 3))
  joint_marker = {j: name for name, j in JOINT_MARKERS}
  for j in range(22):
    if joint_marker[j] in model.marker_names:
      positions[j] = markers[model.marker_index(joint_marker[j])]
    else:
      positions[j] = joints[model.joint_index(BODY_JOINTS[j][1])]
  tips = {}
  for side, wrist, first in (("l", 20, 22), ("r", 21, 37)):
    marker = lambda name: markers[model.marker_index(side.upper() + name)]
    along = _unit(marker("FIN") - positions[wrist])
    radial = marker("IWR") - marker("OWR")
    radial = _unit(radial - radial @ along * along)
    for k, (finger, reach, offset, lengths) in enumerate(FINGERS):
      direction = _unit(along + radial) if finger == "thumb" else along
      point = positions[wrist] + reach * along + offset * radial
      for i, length in enumerate(lengths):
        positions[first + 3 * k + i] = point
        point = point + length * direction
      tips[side + finger] = (point, first + 3 * k + 2)
  return positions, tips


def _unit(v):
  return v / np.linalg.norm(v)


def _segments(positions, tips, markers, model):
  """Tubes (joint, start, end, (radius a, radius b), vertices around, direction of a, whether
  its first ring regresses the joint) in the T-posed model's frame."""
  p, up, lateral, forward = positions, np.array([0, 1.0, 0]), np.array([0, 0, 1.0]), np.eye(3)[0]
  marker = lambda name: markers[model.marker_index(name)]
  tubes = [(0, p[0], p[3], (0.15, 0.11), 24, lateral), (3, p[3], p[6], (0.14, 0.11), 24, lateral),
           (6, p[6], p[9], (0.15, 0.11), 24, lateral), (9, p[9], p[12], (0.16, 0.11), 24, lateral),
           (12, p[12], p[15], (0.055, 0.055), 12, lateral),
           (15, p[15], p[15] + 0.16 * up, (0.075, 0.095), 20, lateral)]
  for side, hip, knee, ankle, foot in (("L", 1, 4, 7, 10), ("R", 2, 5, 8, 11)):
    toe_end = marker(side + "TOE") + 0.02 * forward
    tubes += [(hip, p[hip], p[knee], (0.07, 0.07), 16, lateral),
              (knee, p[knee], p[ankle], (0.05, 0.05), 16, lateral),
              (ankle, p[ankle], p[foot], (0.035, 0.03), 12, lateral),
              (foot, p[foot], toe_end, (0.035, 0.015), 12, lateral)]
  for collar, shoulder, elbow, wrist, finger in ((13, 16, 18, 20, 22), (14, 17, 19, 21, 37)):
    knuckles = np.mean(p[finger + np.arange(0, 12, 3)], axis=0)  # index, middle, pinky, ring
    tubes += [(collar, p[collar], p[shoulder], (0.04, 0.04), 12, up),
              (shoulder, p[shoulder], p[elbow], (0.045, 0.045), 16, up),
              (elbow, p[elbow], p[wrist], (0.035, 0.035), 16, up),
              (wrist, p[wrist], knuckles, (0.015, 0.04), 12, up)]
  ends = {j: p[j + 1] for j in range(22, NUM_JOINTS) if (j - 22) % 3 != 2}
  ends.update({joint: tip for tip, joint in tips.values()})
  tubes += [(j, p[j], ends[j], (0.008, 0.008), 6, up) for j in range(22, NUM_JOINTS)]
  tubes = [t + (True,) for t in tubes]
  for side, ankle in (("L", 7), ("R", 8)):  # soles, from heel to the metatarsal heads
    tubes.append((ankle, marker(side + "HEE"), (marker(side + "MT1") + marker(side + "MT5")) / 2,
                  (0.04, 0.022), 12, lateral, False))
  return tubes


def _tube(start, end, radii, around, rings, reference):
  """A closed elliptic tube: ``rings`` rings of ``around`` vertices from start to end, then
  the two cap centres. Returns vertices, outward faces, each vertex's axial fraction and axis
  point, and the first ring with its cap centre (their mean is ``start``)."""
  axis = end - start
  d = _unit(axis)
  u = _unit(reference - reference @ d * d)
  w = np.cross(d, u)
  s = np.linspace(0.0, 1.0, rings)
  theta = 2 * np.pi * np.arange(around) / around
  ring = (radii[0] * np.cos(theta)[:, None] * u + radii[1] * np.sin(theta)[:, None] * w)
  vertices = (start + s[:, None, None] * axis + ring[None]).reshape(-1, 3)
  vertices = np.concatenate([vertices, [start, end]])
  k, i = np.meshgrid(np.arange(rings - 1), np.arange(around), indexing="ij")
  a, b = k * around + i, k * around + (i + 1) % around
  c, e = b + around, a + around
  faces = [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, e], -1).reshape(-1, 3)]
  first, last = rings * around, rings * around + 1
  i = np.arange(around)
  faces.append(np.stack([np.full(around, first), (i + 1) % around, i], -1))
  top = (rings - 1) * around
  faces.append(np.stack([np.full(around, last), top + i, top + (i + 1) % around], -1))
  fraction = np.concatenate([np.repeat(s, around), [0.0, 1.0]])
  first_ring = np.append(np.arange(around), first)
  return vertices, np.concatenate(faces), fraction, start + fraction[:, None] * axis, first_ring


def _ring_counts(tubes):
  """Rings per tube: 3 on fingers, elsewhere the finest even spacing that fits the mesh."""
  for spacing in np.arange(0.005, 0.05, 0.0005):
    rings = [3 if joint >= 22 else max(3, int(round(np.linalg.norm(end - start) / spacing)) + 1)
             for joint, start, end, *_ in tubes]
    if sum(r * tube[4] + 2 for r, tube in zip(rings, tubes)) <= NUM_VERTICES:
      return rings
  raise AssertionError("the fake body's tubes do not fit in the SMPL+H vertex count")


@functools.lru_cache(maxsize=4)
def _fake_body(gender, seed):
  """The arrays of a fake model.npz (module docstring)."""
  rng = np.random.default_rng(seed)
  model, (_, joints, markers) = posed_skeleton([T_POSE])
  positions, tips = _skeleton(model, joints[0], markers[0])
  tubes = _segments(positions, tips, markers[0], model)
  vertices, faces, cores, weights, fixed = [], [], [], [], []
  regressor = np.zeros((NUM_JOINTS, NUM_VERTICES))
  count = 0
  for (joint, start, end, radii, around, reference, regress), rings in zip(tubes,
                                                                           _ring_counts(tubes)):
    verts, tri, fraction, core, first_ring = _tube(start, end, radii, around, rings, reference)
    parent = SMPLH_PARENTS[joint]
    own = np.ones(len(verts))
    if regress:
      regressor[joint, count + first_ring] = 1 / len(first_ring)
      fixed.extend(count + first_ring)
      if parent >= 0:  # blend with the parent joint near the joint
        own = np.clip(0.5 + fraction / 0.4, 0.5, 1.0)
    w = np.zeros((len(verts), NUM_JOINTS))
    w[:, joint] = own
    if parent >= 0:
      w[:, parent] += 1 - own
    vertices.append(verts)
    faces.append(tri + count)
    cores.append(core)
    weights.append(w)
    count += len(verts)
  vertices, faces = np.concatenate(vertices), np.concatenate(faces)
  cores, weights = np.concatenate(cores), np.concatenate(weights)

  # Fill the vertex count: a vertex in the middle of each of the largest triangles.
  corners = vertices[faces]
  area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]),
                        axis=-1)
  split = np.argsort(-area, kind="stable")[:NUM_VERTICES - count]
  new = count + np.arange(len(split))
  a, b, c = faces[split].T
  faces = np.concatenate([np.delete(faces, split, 0), np.stack([a, b, new], -1),
                          np.stack([b, c, new], -1), np.stack([c, a, new], -1)])
  vertices = np.concatenate([vertices, corners[split].mean(1)])
  cores = np.concatenate([cores, cores[a]])
  weights = np.concatenate([weights, weights[a]])

  # Marker vertices: the nearest free vertex moves onto the model's marker, rigid on its body.
  body_joint = {b: j for j, (bodies, _) in BODY_JOINTS.items() for b in bodies}
  free = np.ones(NUM_VERTICES, bool)
  free[fixed] = False
  final = np.full(NUM_VERTICES, -1)
  for name, index in VERTEX_MARKERS:
    if name in tips:
      point, joint = tips[name]
    elif name in model.marker_names:
      m = model.marker_index(name)
      point, joint = markers[0, m], body_joint[model.body_names[model.marker_body[m]]]
    else:
      raise KeyError(f"the skeletal model has no marker {name!r} to place the fake's vertex on")
    candidates = np.flatnonzero(free)
    g = candidates[np.argmin(np.linalg.norm(vertices[candidates] - point, axis=-1))]
    free[g] = False
    vertices[g], weights[g] = point, np.eye(NUM_JOINTS)[joint]
    final[g] = index
  final[final < 0] = np.setdiff1d(np.arange(NUM_VERTICES), final[final >= 0])

  # In SMPL's frame, scaled for the gender about the root joint.
  scale = GENDER_SCALE[gender] * (1 + 0.02 * rng.uniform(-1, 1))
  to_smpl = lambda x: (positions[0] + scale * (x - positions[0])) @ OSIM_TO_SMPL.T
  v_template = np.zeros((NUM_VERTICES, 3))
  v_template[final] = to_smpl(vertices)
  core = np.zeros((NUM_VERTICES, 3))
  core[final] = to_smpl(cores)
  lbs_weights = np.zeros((NUM_VERTICES, NUM_JOINTS))
  lbs_weights[final] = weights
  j_regressor = np.zeros((NUM_JOINTS, NUM_VERTICES))
  j_regressor[:, final] = regressor
  centre = to_smpl(positions[0])

  shapedirs = np.zeros((NUM_VERTICES, 3, NUM_BETAS))
  shapedirs[:, :, 0] = 0.04 * (v_template - centre)  # stature: 4 % per unit
  shapedirs[:, :, 1] = 0.15 * (v_template - core)  # girth: 15 % of the radius per unit
  fields = rng.normal(size=(NUM_BETAS - 2, 3, 3))
  shapedirs[:, :, 2:] = 0.003 * np.einsum("kab,vb->vak", fields, v_template - centre)
  dominant = np.argmax(lbs_weights, axis=1)
  posedirs = np.zeros((NUM_VERTICES, 3, NUM_JOINTS - 1, 9))
  moved = np.flatnonzero(dominant > 0)
  posedirs[moved, :, dominant[moved] - 1] = rng.normal(0, 1e-3, (len(moved), 3, 9))
  kintree = np.array([SMPLH_PARENTS, range(NUM_JOINTS)], np.int64)
  kintree[0, 0] = 2**32 - 1  # as SMPL's uint32 -1
  return {"v_template": v_template, "shapedirs": shapedirs,
          "posedirs": posedirs.reshape(NUM_VERTICES, 3, -1), "J_regressor": j_regressor,
          "weights": lbs_weights, "kintree_table": kintree,
          "f": final[faces].astype(np.uint32)}


def smplh_motion(coordinates, v_template, shapedirs, j_regressor, betas):
  """AMASS poses (N, 156) and trans (N, 3) that move the fake body as the skeletal model moves
  through ``coordinates`` (one dict per frame), in AMASS's z-up world, feet on z = 0 at rest.

  Joint j copies the rotation of its leading body relative to the T-pose, turned into SMPL's
  frame and then z up; fingers follow their wrist. ``trans`` carries the root joint as the
  model carries the same point of its pelvis.
  """
  model, (transforms, joints, markers) = posed_skeleton([T_POSE] + list(coordinates))
  rotations, origins = transforms[..., :3, :3], transforms[..., :3, 3]
  lead = np.array([model.body_index(BODY_JOINTS[j][0][0]) for j in range(22)])
  turn = Z_UP @ OSIM_TO_SMPL
  world = turn @ rotations[1:, lead] @ np.swapaxes(rotations[0, lead], -1, -2) @ OSIM_TO_SMPL.T
  world = np.concatenate([world, np.repeat(world[:, 20:21], 15, 1),
                          np.repeat(world[:, 21:22], 15, 1)], axis=1)
  parents = np.array(SMPLH_PARENTS[1:])
  local = np.concatenate([world[:, :1], np.swapaxes(world[:, parents], -1, -2) @ world[:, 1:]], 1)
  poses = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(len(local), -1)

  root_rest = _skeleton(model, joints[0], markers[0])[0][0]
  pelvis = model.body_index("pelvis")
  on_pelvis = np.swapaxes(rotations[0, pelvis], -1, -2) @ (root_rest - origins[0, pelvis])
  root = rotations[1:, pelvis] @ on_pelvis + origins[1:, pelvis]  # (N, 3)
  shaped = v_template + shapedirs[:, :, :NUM_BETAS] @ betas
  root_joint = j_regressor[0] @ shaped
  floor = shaped[:, 1].min()
  target = (root - root_rest) @ turn.T + Z_UP @ root_joint - np.array([0, 0, floor])
  return poses, target - root_joint


def smplh_coordinates():
  """Indices of the skeletal model's coordinates that the fake body can show: those of the
  joints that move the leading body of an SMPL+H joint (``BODY_JOINTS``). The others (e.g.
  pronation, subtalar) move bodies the fake skins rigidly with their leading body."""
  model = skeletal_model()
  leading = {bodies[0] for bodies, _ in BODY_JOINTS.values()}
  return tuple(sorted({c for j, _, c in model.axis_inputs
                       if model.body_names[model.joint_child_body[j]] in leading}))
