"""The original's virtual markers on SMPL+H (BML-MoVi ground truth), as data and functions.

142 markers in the original's column order (``StaticMarkerIndexTable``): 66 mesh vertices,
the 52 posed joints, 12 midpoints (plain means of two or four of those) and 12 ground
markers. ``smplh_points(model, betas, poses, trans, POINT_VERTICES, POINT_JOINTS)`` gives the
118 points the first three kinds are made of; ``virtual_markers`` turns them into markers.

Ground markers exist only for the static (scaling) trial: a copy of the source marker moved
along the up axis onto the floor, the lowest vertex of the static mesh. They serve the foot
measurements of the scaling and are never IK targets. The original also wrote them into
every motion trial by setting Y to the trial's lowest point while those data stay z-up, so
they were not on the floor (a bug; its IK gave them weight 0); they are not made here.
"""

import jax.numpy as jnp
import numpy as np

from d3ke_jax.body.smplh import rest_pose

# name, 0-based SMPL+H vertex index (smplh_vertex_index.py:L105-190 of the original).
VERTEX_MARKERS = (
    ("STRN", 3079), ("T1", 3012), ("T8", 3014), ("T10", 3017), ("T12", 3173), ("C7", 828),
    ("CLAV", 3171), ("LANK", 3327), ("RANK", 6728), ("LANI", 3198), ("RANI", 6598),
    ("LASI", 1799), ("RASI", 5262), ("LPSI", 3097), ("RPSI", 6521), ("LSHO", 606), ("RSHO", 4094),
    ("LTOE", 3232), ("RTOE", 6634), ("RHEE", 6787), ("LHEE", 3386), ("LKNE", 1010),
    ("RKNE", 4495), ("LKNI", 1148), ("RKNI", 4634), ("RIWR", 5691), ("LIWR", 2230),
    ("RELB", 5091), ("LELB", 1620), ("RELBIN", 5131), ("LELBIN", 1661), ("LOWR", 2108),
    ("ROWR", 5568), ("RCLAV", 4780), ("LCLAV", 1298), ("RFHD", 3645), ("LBHD", 272),
    ("LFHD", 134), ("RBHD", 3783), ("LMT1", 3338), ("LMT5", 3346), ("RMT1", 6738), ("RMT5", 6747),
    ("Tracking_L5", 3021), ("Tracking_L4", 3022), ("Tracking_L3", 3502), ("Tracking_L2", 3023),
    ("Tracking_L1", 3024), ("Tracking_T11", 3016), ("Tracking_T9", 3505), ("Tracking_T7", 3015),
    ("Tracking_T6", 3027), ("Tracking_T5", 3029), ("Tracking_T4", 1755), ("Tracking_T3", 2877),
    ("Tracking_T2", 1305), ("rthumb", 6191), ("rindex", 5782), ("rmiddle", 5905), ("rring", 6016),
    ("rpinky", 6133), ("lthumb", 2746), ("lindex", 2319), ("lmiddle", 2445), ("lring", 2556),
    ("lpinky", 2673))

# name, index into the 52 posed SMPL+H joints (smplh_vertex_index.py:L4-68).
JOINT_MARKERS = (
    ("ROOT", 0), ("Spine1", 3), ("Spine2", 6), ("Spine3", 9), ("LHIPJ", 1), ("RHIPJ", 2),
    ("LKJC", 4), ("RKJC", 5), ("LAJC", 7), ("RAJC", 8), ("LFOOT", 10), ("RFOOT", 11),
    ("NECK", 12), ("LCOL", 13), ("RCOL", 14), ("HEAD", 15), ("LSHOULDER", 16), ("RSHOULDER", 17),
    ("LELC", 18), ("RELC", 19), ("LWRIST", 20), ("RWRIST", 21), ("left_index1", 22),
    ("left_index2", 23), ("left_index3", 24), ("left_middle1", 25), ("left_middle2", 26),
    ("left_middle3", 27), ("left_pinky1", 28), ("left_pinky2", 29), ("left_pinky3", 30),
    ("left_ring1", 31), ("left_ring2", 32), ("left_ring3", 33), ("left_thumb1", 34),
    ("left_thumb2", 35), ("left_thumb3", 36), ("right_index1", 37), ("right_index2", 38),
    ("right_index3", 39), ("right_middle1", 40), ("right_middle2", 41), ("right_middle3", 42),
    ("right_pinky1", 43), ("right_pinky2", 44), ("right_pinky3", 45), ("right_ring1", 46),
    ("right_ring2", 47), ("right_ring3", 48), ("right_thumb1", 49), ("right_thumb2", 50),
    ("right_thumb3", 51))

# name, the markers it is the mean of (TrcGenerator.py:L16-29).
MIDPOINT_MARKERS = (
    ("MASI", ("RASI", "LASI")), ("MPSI", ("RPSI", "LPSI")), ("MHIPJ", ("LHIPJ", "RHIPJ")),
    ("CENTER", ("RASI", "LASI", "RPSI", "LPSI")), ("Virtual_LWRIST", ("LIWR", "LOWR")),
    ("Virtual_RWRIST", ("RIWR", "ROWR")), ("Virtual_LAJC", ("LANK", "LANI")),
    ("Virtual_RAJC", ("RANK", "RANI")), ("Virtual_LKJC", ("LKNE", "LKNI")),
    ("Virtual_RKJC", ("RKNE", "RKNI")), ("Virtual_LELC", ("LELB", "LELBIN")),
    ("Virtual_RELC", ("RELB", "RELBIN")))

# name, the marker it projects onto the floor (TrcGenerator.py:L35-48).
GROUND_MARKERS = (
    ("Virtual_Ground_RAJC", "Virtual_RAJC"), ("Virtual_Ground_LAJC", "Virtual_LAJC"),
    ("Virtual_Ground_RFOOT", "RFOOT"), ("Virtual_Ground_LFOOT", "LFOOT"),
    ("Virtual_Ground_RTOE", "RTOE"), ("Virtual_Ground_LTOE", "LTOE"),
    ("Virtual_Ground_RMT1", "RMT1"), ("Virtual_Ground_LMT1", "LMT1"),
    ("Virtual_Ground_RMT5", "RMT5"), ("Virtual_Ground_LMT5", "LMT5"),
    ("Virtual_Ground_RHEE", "RHEE"), ("Virtual_Ground_LHEE", "LHEE"))

POINT_VERTICES = tuple(index for _, index in VERTEX_MARKERS)
POINT_JOINTS = tuple(index for _, index in JOINT_MARKERS)
POINT_NAMES = tuple(name for name, _ in VERTEX_MARKERS + JOINT_MARKERS)  # the 118 points
MARKER_NAMES = POINT_NAMES + tuple(name for name, _ in MIDPOINT_MARKERS)  # motion markers (130)
STATIC_MARKER_NAMES = MARKER_NAMES + tuple(name for name, _ in GROUND_MARKERS)  # all 142

# The original's static pose: SMPL's y-up, +z-facing frame turned 90 degrees about y, so the
# body faces +x with its right side at +z, as an OpenSim model in its default pose.
STATIC_ROTATION = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], np.float32)


def marker_weights(names=None):
  """(K, 118) weights that make markers ``names`` (default ``MARKER_NAMES``) from the points."""
  names = MARKER_NAMES if names is None else tuple(names)
  sources = dict(MIDPOINT_MARKERS)
  weights = np.zeros((len(names), len(POINT_NAMES)), np.float32)
  for row, name in enumerate(names):
    if name in POINT_NAMES:
      weights[row, POINT_NAMES.index(name)] = 1.0
    elif name in sources:
      weights[row, [POINT_NAMES.index(s) for s in sources[name]]] = 1.0 / len(sources[name])
    elif name in dict(GROUND_MARKERS):
      raise ValueError(f"virtual_markers: {name} is a ground marker of the static trial only "
                       "(see ground_markers)")
    else:
      raise ValueError(f"virtual_markers: no virtual marker named {name!r}")
  return weights


def virtual_markers(points, names=None):
  """Markers (..., K, 3) and their names from the 118 points (..., 118, 3) that
  ``smplh_points(..., POINT_VERTICES, POINT_JOINTS)`` returns (vertex, joint and midpoint
  markers; default: all 130 in the original's order)."""
  names = MARKER_NAMES if names is None else tuple(names)
  markers = jnp.einsum("kp,...pc->...kc", marker_weights(names), jnp.asarray(points))
  return markers, names


def ground_markers(markers, names, floor, up_axis=1):
  """The 12 ground markers (..., 12, 3) and their names: each source marker (found by name in
  ``markers`` (..., K, 3)) with its ``up_axis`` coordinate set to ``floor``."""
  names = tuple(names)
  missing = [source for _, source in GROUND_MARKERS if source not in names]
  if missing:
    raise ValueError(f"ground_markers: source markers missing: {', '.join(missing)}")
  sources = jnp.asarray(markers)[..., np.array([names.index(s) for _, s in GROUND_MARKERS]), :]
  return sources.at[..., up_axis].set(floor), tuple(name for name, _ in GROUND_MARKERS)


def static_pose_points(model, betas):
  """The original's scaling pose: the 118 points (118, 3) and all vertices (V, 3) of the zero
  pose with ``betas``, no translation, turned by ``STATIC_ROTATION`` (y up, facing +x)."""
  vertices, joints = rest_pose(model, betas)
  points = jnp.concatenate([vertices[np.array(POINT_VERTICES)], joints[np.array(POINT_JOINTS)]])
  rotation = jnp.asarray(STATIC_ROTATION)
  return points @ rotation.T, vertices @ rotation.T


def static_markers(model, betas):
  """The static trial's 142 markers (142, 3) and names (``STATIC_MARKER_NAMES``), in the
  frame of ``static_pose_points``; ground markers on the floor at the lowest vertex."""
  points, vertices = static_pose_points(model, betas)
  markers, names = virtual_markers(points)
  ground, ground_names = ground_markers(markers, names, jnp.min(vertices[:, 1]))
  return jnp.concatenate([markers, ground]), names + ground_names
