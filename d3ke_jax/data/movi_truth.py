"""BML-MoVi ground truth per subject with the project's solvers, as the D3KE paper makes it.

From a subject's virtual markers (SMPL-H, ``d3ke_jax.body``): measurement-based scaling on
the static trial with the original's marker pairs, marker placement (OpenSim's
MarkerPlacer) with its scaling weights, inverse kinematics of every motion frame with its IK
weights, then per frame the coordinates, pelvis frame, joints and markers of the fitted
model and the original's 2 cm masks. The tables below are the original code's
(``scalingIKInf.py``, digest sections 3.1-3.4), with the full-body model's body names.

Frames and units: metres and radians. The static trial is in any frame (the original's is
SMPL's zero pose turned to y up, facing +x); motions stay in their own world frame (AMASS:
z up), which IK fits directly, the free pelvis joint absorbing the orientation (digest 3.6),
so every per-frame output is in the motion's world frame. Scales are relative to the given
model, as everywhere in the project.
"""

import dataclasses
from typing import Dict, NamedTuple, Sequence, Tuple

import numpy as np

from d3ke_jax.skeleton.ik import inverse_kinematics_chunks
from d3ke_jax.skeleton.kinematics import forward_kinematics
from d3ke_jax.skeleton.model import GROUND, SkeletalModel
from d3ke_jax.skeleton.placement import model_markers, model_weights, place_markers
from d3ke_jax.skeleton.scaling import Measurement, measurement_scales

ERROR_THRESHOLD = 0.02  # m: the 2 cm rule of the masks
BONY_WEIGHT = 20  # markers with at least this IK weight are bony landmarks

_SPINE_Y = ("lumbar5", "lumbar4", "lumbar3", "lumbar2", "lumbar1", "thoracic12")
_LUMBAR = ("lumbar5", "lumbar4", "lumbar3", "lumbar2", "lumbar1")
_THORACIC = tuple(f"thoracic{k}" for k in range(12, 0, -1))
_NECK = ("head_neck", "cerv6", "cerv5", "cerv4", "cerv3", "cerv2", "cerv1")
_SKULL = ("skull", "jaw")
_SCAPULA = ("scapula", "scapphant", "humphant", "humphant1")
_CARPALS = ("lunate", "scaphoid", "pisiform", "triquetrum", "capitate", "trapezium",
            "trapezoid", "hamate", "firstmc1", "secondmc", "thirdmc", "fourthmc", "fifthmc")
# Bodies of each finger's three segments (joint 1 to 2, 2 to 3, 3 to the fingertip).
_PHALANGES = {"thumb": ("firstmc", "proximal_thumb", "distal_thumb"),
              "index": ("2proxph", "2midph", "2distph"), "middle": ("3proxph", "3midph", "3distph"),
              "ring": ("4proxph", "4midph", "4distph"), "pinky": ("5proxph", "5midph", "5distph")}
_FINGERS = tuple(_PHALANGES)


def _m(name, pairs, bodies, axes):
  """A measurement from "A-B C-D" marker pairs, the bodies and the axes they scale."""
  pairs = tuple(tuple(p.split("-")) for p in pairs.split())
  return Measurement(name=name, marker_pairs=pairs, bodies={b: axes for b in bodies})


def _side(name, side):
  """A left-side body name (the full-body model's: right side unsuffixed, left ``_l``)."""
  return name + "_l" if side == "l" else name


def _hand_measurements(side):
  prefix, tip = ("right", "r") if side == "r" else ("left", "l")
  wrist = f"Virtual_{side.upper()}WRIST"
  out = [_m(f"Hands_XYZ{'_l' * (side == 'l')}",
            " ".join(f"{wrist}-{prefix}_{f}1" for f in ("thumb", "index", "middle", "pinky",
                                                        "ring")),
            [_side(b, side) for b in _CARPALS], "xyz")]
  for finger, bodies in _PHALANGES.items():
    points = [f"{prefix}_{finger}{k}" for k in (1, 2, 3)] + [tip + finger]
    for k, body in enumerate(bodies):
      out.append(_m(f"{finger}{k + 1}_XYZ{'_l' * (side == 'l')}", f"{points[k]}-{points[k + 1]}",
                    [_side(body, side)], "xyz"))
  return out


# The original's measurement set (scalingIKInf.py:L18-751), in its order.
MEASUREMENTS = tuple([
    _m("pelvisX", "MPSI-MASI", ["pelvis"], "x"),
    _m("pelvisY", "MHIPJ-CENTER", ["pelvis"], "y"),
    _m("pelvisZ", "RASI-LASI RPSI-LPSI", ["pelvis"], "z"),
    _m("Torso_Y_L5L1", "MPSI-T12", _SPINE_Y, "y"),
    _m("Torso_Y_T12T11", "T12-T10", ["thoracic11", "thoracic10"], "y"),
    _m("Torso_Y_T10T9", "T10-T8", ["thoracic9", "thoracic8"], "y"),
    _m("Torso_Y_T8T1", "T8-C7", _THORACIC[5:], "y"),
    _m("NeckY", "C7-HEAD", _NECK, "y"),
    _m("SkullY", "HEAD-RFHD HEAD-RBHD HEAD-LFHD HEAD-LBHD", _SKULL, "y"),
    _m("TorsoZ", "RPSI-LPSI", _LUMBAR + _THORACIC + _NECK, "z"),
    _m("TorsoX", "MPSI-CENTER", _LUMBAR + _THORACIC, "x"),
    _m("cerveX", "CLAV-C7", _NECK, "x"),
    _m("SkullX", "LBHD-LFHD RBHD-RFHD", _SKULL, "x"),
    _m("SkullZ", "LBHD-RBHD LFHD-RFHD", _SKULL, "z"),
    _m("femurY", "RHIPJ-Virtual_RKJC", ["femur_r"], "y"),
    _m("femurY_l", "LHIPJ-Virtual_LKJC", ["femur_l"], "y"),
    _m("femurXZ", "RKNI-RKNE", ["femur_r"], "xz"),
    _m("femurXZ_l", "LKNE-LKNI", ["femur_l"], "xz"),
    _m("tibiaY", "RKJC-Virtual_RAJC", ["tibia_r", "talus_r"], "y"),
    _m("tibiaY_l", "LKJC-Virtual_LAJC", ["tibia_l", "talus_l"], "y"),
    _m("tibiaXZ", "RANI-RANK", ["tibia_r", "talus_r"], "xz"),
    _m("tibiaXZ_l", "LANK-LANI", ["tibia_l", "talus_l"], "xz"),
    _m("calcnX", "Virtual_Ground_RHEE-Virtual_Ground_RFOOT", ["calcn_r"], "x"),
    _m("footY", "Virtual_Ground_RAJC-Virtual_RAJC", ["calcn_r", "toes_r"], "y"),
    _m("calcnZ", "Virtual_Ground_RMT1-Virtual_Ground_RMT5", ["calcn_r"], "z"),
    _m("calcnX_l", "Virtual_Ground_LHEE-Virtual_Ground_LFOOT", ["calcn_l"], "x"),
    _m("footY_l", "Virtual_Ground_LAJC-Virtual_LAJC", ["calcn_l", "toes_l"], "y"),
    _m("calcnZ_l", "Virtual_Ground_LMT1-Virtual_Ground_LMT5", ["calcn_l"], "z"),
    _m("toesX", "Virtual_Ground_RMT5-Virtual_Ground_RMT1", ["toes_r"], "x"),
    _m("toesX_l", "Virtual_Ground_LMT1-Virtual_Ground_LMT5", ["toes_l"], "x"),
    _m("toesYZ", "Virtual_Ground_RFOOT-Virtual_Ground_RTOE", ["toes_r"], "yz"),
    _m("toesYZ_l", "Virtual_Ground_LFOOT-Virtual_Ground_LTOE", ["toes_l"], "yz"),
    _m("ribsX", "CLAV-C7", ["thorax"], "x"),
    _m("ribsY", "T10-C7", ["thorax"], "y"),
    _m("ribsZ", "RSHO-LSHO", ["thorax"], "z"),
    _m("calvY", "C7-CLAV", ["clavicle", "clavphant", "clavicle_l", "clavphant_l"], "y"),
    _m("scapulaY", "C7-T10", _SCAPULA + tuple(_side(b, "l") for b in _SCAPULA), "y"),
    _m("calvX", "C7-CLAV RSHO-CLAV", ["clavicle", "clavphant"], "x"),
    _m("calv_l_X", "C7-CLAV LSHO-CLAV", ["clavicle_l", "clavphant_l"], "x"),
    _m("scapulaX", "STRN-T10", _SCAPULA, "x"),
    _m("scapula_l_X", "STRN-T10", [_side(b, "l") for b in _SCAPULA], "x"),
    _m("calvZ", "C7-RSHO", ("clavicle", "clavphant") + _SCAPULA, "z"),
    _m("calv_l_Z", "LSHO-C7", [_side(b, "l") for b in ("clavicle", "clavphant") + _SCAPULA],
       "z"),
    _m("ArmY", "Virtual_RELC-RSHO", ["humerus"], "y"),
    _m("Arm_l_Y", "Virtual_LELC-LSHO", ["humerus_l"], "y"),
    _m("ArmXZ", "RELB-RELBIN", ["humerus"], "xz"),
    _m("Arm_l_XZ", "LELB-LELBIN", ["humerus_l"], "xz"),
    _m("formArmY", "Virtual_RWRIST-RELC", ["ulna", "radius"], "y"),
    _m("formArm_l_Y", "Virtual_LWRIST-LELC", ["ulna_l", "radius_l"], "y"),
    _m("formArmXZ", "RIWR-ROWR", ["ulna", "radius"], "xz"),
    _m("formArm_l_XZ", "LIWR-LOWR", ["ulna_l", "radius_l"], "xz"),
] + _hand_measurements("r") + _hand_measurements("l"))

_FINGER_MARKERS = tuple(f"{side}_{finger}{k}" for side in ("left", "right") for finger in _FINGERS
                        for k in (1, 2, 3)) + tuple(s + f for s in "rl" for f in _FINGERS)


def _weights(table):
  return {name: weight for weight, names in table.items() for name in names.split()}


# Marker weights of the static pose's IK in the marker placement (scalingIKInf.py:L758-932).
# Markers not named (the Tracking_* markers) have weight 0.
SCALING_WEIGHTS = {
    **_weights({
        20: "MASI MPSI MHIPJ CENTER Virtual_LWRIST Virtual_RWRIST Virtual_LAJC Virtual_RAJC "
            "Virtual_LKJC Virtual_RKJC Virtual_Ground_RAJC Virtual_Ground_LAJC LPSI RPSI RASI "
            "LASI LHIPJ RHIPJ T10 STRN CLAV C7 LKJC RKJC RKNE RKNI LKNE LKNI LANK RANK LANI "
            "RANI LFOOT RFOOT LHEE RHEE LSHO RSHO LELB RELB LELBIN RELBIN LIWR RIWR LOWR ROWR",
        10: "T12 T8 T1 RTOE LTOE",
        1: " ".join(f"Virtual_Ground_{s}{m}" for s in "RL" for m in ("FOOT", "TOE", "MT1", "MT5",
                                                                      "HEE"))
           + " LBHD LFHD RBHD RFHD LMT5 RMT5 RMT1 LMT1",
        0: "Virtual_LELC Virtual_RELC ROOT Spine1 Spine2 Spine3 LCOL RCOL HEAD NECK LAJC RAJC "
           "LCLAV RCLAV LELC RELC LSHOULDER RSHOULDER LWRIST RWRIST"}),
    **{name: 20 for name in _FINGER_MARKERS}}

# Marker weights of the motions' IK (scalingIKInf.py:L940-1118); weight 0: the midpoints,
# the ground markers, LSHOULDER and RSHOULDER.
IK_WEIGHTS = {
    **_weights({
        20: "LPSI RPSI RASI LASI T10 STRN CLAV C7 RKNE RKNI LKNE LKNI LANK RANK LANI RANI "
            "LFOOT RFOOT LHEE RHEE LSHO RSHO LELB RELB LELBIN RELBIN LIWR RIWR LOWR ROWR",
        10: "ROOT LHIPJ RHIPJ T12 T8 T1 NECK HEAD LBHD LFHD RBHD RFHD RTOE LTOE",
        1: "Tracking_L5 Tracking_L4 Tracking_L3 Tracking_L2 Tracking_L1 Tracking_T11 "
           "Tracking_T9 Tracking_T7 Tracking_T6 Tracking_T5 Tracking_T4 Tracking_T3 "
           "Tracking_T2 Spine1 Spine2 Spine3 LCOL RCOL LKJC RKJC LAJC RAJC LMT5 RMT5 RMT1 "
           "LMT1 LCLAV RCLAV LELC RELC LWRIST RWRIST"}),
    **{name: 20 for name in _FINGER_MARKERS}}

# Shoulder-girdle groups: a bony landmark off by more than 2 cm on one of these bodies
# invalidates the coordinates of the joints that move all of them (digest 3.4).
SHOULDER_GROUPS = (("clavicle", "clavphant") + _SCAPULA,
                   tuple(_side(b, "l") for b in ("clavicle", "clavphant") + _SCAPULA))

# Bodies the packaged model merges into one: its head carries the skull.
MERGED_BODIES = {"skull": "head"}

# The pose the static trial shows and the scaling measures the model in: SMPL's zero pose,
# arms horizontal, which is the paper's model's default pose. Models whose default pose has
# the arms down (the packaged one) get these coordinate values, where they have them.
STATIC_POSE = {"shoulder_add_r": -np.pi / 2, "shoulder_add_l": -np.pi / 2}


def static_pose(model: SkeletalModel):
  """(C,) the model's default coordinates with ``STATIC_POSE`` applied."""
  pose = np.array(model.coordinate_defaults, float)
  for name, value in STATIC_POSE.items():
    if name in model.coordinate_names:
      pose[model.coordinate_index(name)] = value
  return pose


def resolve_body(model: SkeletalModel, name):
  """The model's body for a full-body-model body name, or None.

  The rule: the name itself; else, for an unsuffixed (right-side) name, the name with
  ``_r`` (the packaged model names both sides: clavicle -> clavicle_r); else the body
  ``MERGED_BODIES`` names.
  """
  candidates = [name]
  if not name.endswith(("_l", "_r")):
    candidates.append(name + "_r")
  if name in MERGED_BODIES:
    candidates.append(MERGED_BODIES[name])
  return next((c for c in candidates if c in model.body_names), None)


class Resolution(NamedTuple):
  """Measurements as they apply to one model, and what was dropped, {name: reason}."""
  measurements: Tuple[Measurement, ...]
  dropped: Dict[str, str]


def resolve_measurements(model: SkeletalModel, available=None,
                         measurements: Sequence[Measurement] = MEASUREMENTS):
  """The measurements restricted to the model: bodies resolved (``resolve_body``; bodies
  the model lacks left out), marker pairs kept where the model (and ``available``, the
  names of the measured markers, when given) has both markers; a measurement without a
  body or a pair is dropped. Two table bodies that resolve to one model body keep the
  first's axes."""
  names = set(model.marker_names)
  if available is not None:
    names &= set(available)
  kept, dropped = [], {}
  for m in measurements:
    bodies = {}
    for body, axes in m.bodies.items():
      resolved = resolve_body(model, body)
      if resolved is not None:
        bodies.setdefault(resolved, axes)
    pairs = tuple(p for p in m.marker_pairs if set(p) <= names)
    if not bodies:
      dropped[m.name] = "none of its bodies is in the model"
    elif not pairs:
      dropped[m.name] = "no marker pair in the model" + (" and the data" if available else "")
    else:
      kept.append(dataclasses.replace(m, marker_pairs=pairs, bodies=bodies))
  return Resolution(tuple(kept), dropped)


class MotionTruth(NamedTuple):
  """One motion's ground truth, per frame, in the motion's world frame (metres, radians).

  ``coordinate_mask``: the 2 cm rule on the bony landmarks (``MaskRules.coordinates``).
  ``marker_mask``: the marker has a label within 2 cm of the fitted model's marker (False
  where the label is missing: model markers the data lack). ``joint_mask``: no coordinate
  of a joint above it is masked (joint centres have no labels to compare with; they move
  with the coordinates above them).
  """
  coords: np.ndarray  # (T, C) every coordinate of the model
  pelvis_rotation: np.ndarray  # (T, 3, 3) world <- pelvis
  pelvis_translation: np.ndarray  # (T, 3) the pelvis origin in the world
  joints: np.ndarray  # (T, J, 3) joint centres (child-frame origins)
  markers: np.ndarray  # (T, M, 3) the fitted model's markers
  marker_errors: np.ndarray  # (T, M) distance to the label, NaN where it is missing
  coordinate_mask: np.ndarray  # (T, C) bool, True = valid
  joint_mask: np.ndarray  # (T, J) bool
  marker_mask: np.ndarray  # (T, M) bool
  converged: np.ndarray  # (T,) bool, the IK solver's report


class SubjectTruth(NamedTuple):
  """A subject's scaling and marker placement, and the ground truth of its motions."""
  scales: np.ndarray  # (B, 3) relative to the model, the same for every frame
  marker_offsets: np.ndarray  # (M, 3) placed markers, unscaled body frames
  static_coords: np.ndarray  # (C,) the static trial's pose
  dropped_measurements: Dict[str, str]
  ignored_markers: Tuple[str, ...]  # names in the data that the model lacks
  motions: Tuple[MotionTruth, ...]


def subject_truth(model: SkeletalModel, static_markers, motions, names, rate,
                  static_names=None, chunk=256):
  """Scaling, marker placement and IK of one subject (digest 3.1-3.4).

  Args:
    model: the generic model (e.g. the packaged one, or the paper's full_body_wo_hands).
    static_markers: (K_s, 3) or (T, K_s, 3) the static trial named ``static_names``.
    motions: sequence of (T_i, K, 3) motion trials named ``names`` (NaN = missing).
    names: the motions' marker names (``static_names`` defaults to them).
    rate: frames per second of the motions (for IK's temporal prior).
    chunk: IK frames per compiled chunk (``inverse_kinematics_chunks``).

  Returns:
    ``SubjectTruth``.
  """
  static_names = tuple(names if static_names is None else static_names)
  static = np.asarray(static_markers, float)
  static = model_markers(model, static.reshape((-1,) + static.shape[-2:]), static_names)
  measured = [n for k, n in enumerate(model.marker_names)
              if np.isfinite(static[:, k]).all(-1).any()]
  resolution = resolve_measurements(model, measured)
  # Measured, placed and solved from the static pose (its default pose in the result).
  model = model.replace(coordinate_defaults=static_pose(model))
  scales = measurement_scales(model, static, resolution.measurements, inherit=True)
  placed, static_coords = place_markers(model, scales, static, model.marker_names,
                                        SCALING_WEIGHTS)
  weights = model_weights(placed, IK_WEIGHTS)
  masks = MaskRules(placed)
  out = []
  for motion in motions:
    targets = model_markers(placed, motion, names).astype(np.float32)
    results = list(inverse_kinematics_chunks(placed, targets, chunk=chunk, weights=weights,
                                             scales=scales, rate=rate))
    coords = np.concatenate([np.asarray(r.coords) for r in results])
    errors = np.concatenate([np.asarray(r.marker_errors) for r in results])
    fk = forward_kinematics(placed, coords, scales=scales.astype(np.float32))
    pelvis = np.asarray(fk.body_transforms[:, placed.root_body])
    coordinate_mask = masks.coordinates(errors)
    out.append(MotionTruth(
        coords=coords, pelvis_rotation=pelvis[:, :3, :3], pelvis_translation=pelvis[:, :3, 3],
        joints=np.asarray(fk.joint_origins), markers=np.asarray(fk.markers),
        marker_errors=errors, coordinate_mask=coordinate_mask,
        joint_mask=masks.joints(coordinate_mask),
        marker_mask=np.nan_to_num(errors, nan=np.inf) <= ERROR_THRESHOLD,
        converged=np.concatenate([np.asarray(r.converged) for r in results])))
  return SubjectTruth(
      scales=scales, marker_offsets=np.asarray(placed.marker_offsets),
      static_coords=static_coords, dropped_measurements=resolution.dropped,
      ignored_markers=tuple(n for n in dict.fromkeys(static_names + tuple(names))
                            if n not in model.marker_names),
      motions=tuple(out))


class MaskRules:
  """The 2 cm rule as matrices over one model's markers, bodies, joints and coordinates.

  A bony landmark (IK weight >= 20) whose error exceeds 2 cm makes its body wrong, and with
  it the body's shoulder-girdle group (``SHOULDER_GROUPS`` resolved on the model: on the
  packaged model the clavicle and scapula of a side); the coordinates of the joints that
  move wrong bodies are masked. Markers count on the body they are on in the model given
  (the original's template model, before its re-parenting of knee and ankle markers).
  """

  def __init__(self, model: SkeletalModel):
    weights = model_weights(model, IK_WEIGHTS)
    body_of = np.eye(model.num_bodies)[np.array(model.marker_body)]  # (M, B)
    self.bony_body = body_of * (weights >= BONY_WEIGHT)[:, None]  # (M, B)
    self.group = np.eye(model.num_bodies)  # (B, B): a wrong body makes its group wrong
    for group in SHOULDER_GROUPS:
      members = {resolve_body(model, b) for b in group} - {None}
      index = np.array([model.body_index(b) for b in members], int)
      self.group[np.ix_(index, index)] = 1
    # (B, C): the coordinates of the joint that moves each body; (J, C) of each joint.
    self.joint_coordinates = np.zeros((model.num_joints, model.num_coordinates))
    for joint, _, coordinate in model.axis_inputs:
      self.joint_coordinates[joint, coordinate] = 1
    self.body_coordinates = self.joint_coordinates[
        np.argsort(np.array(model.joint_child_body))]
    # (J, J): joint k is above joint j (moves j's parent body).
    mover = {b: j for j, b in enumerate(model.joint_child_body)}
    self.above = np.zeros((model.num_joints, model.num_joints))
    for j in range(model.num_joints):
      body = model.joint_parent_body[j]
      while body != GROUND:
        k = mover[body]
        self.above[k, j] = 1
        body = model.joint_parent_body[k]

  def coordinates(self, errors):
    """(T, C) bool coordinate mask from marker errors (T, M) (NaN = no label)."""
    wrong = (np.nan_to_num(errors) > ERROR_THRESHOLD).astype(float)
    wrong_bodies = (wrong @ self.bony_body @ self.group) > 0
    return (wrong_bodies @ self.body_coordinates) == 0

  def joints(self, coordinate_mask):
    """(T, J) bool: no masked coordinate in the joints above each joint."""
    masked_joints = (~coordinate_mask).astype(float) @ self.joint_coordinates.T
    return (masked_joints @ self.above) == 0
