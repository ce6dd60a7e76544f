"""Authors d3ke-jax's default full-body OpenSim model, the packaged
``d3ke_jax/skeleton/models/d3ke_full_body.osim``.

``python -m experiments.make_default_model`` regenerates the packaged file (the output is
the same bytes on every run and every machine: numbers are written to 12 significant
digits and those below 1e-12 as 0, so last-bit differences of the CPU's arithmetic do not
show); ``build_model()`` returns the ``opensim.Model`` and ``write(path)`` saves it elsewhere.

The model is a 1.75 m, 75 kg adult standing in the anatomical position (arms hanging at the
sides, palms forward) with every coordinate at zero: 32 bodies, a pelvis with six degrees of
freedom, a thoracolumbar spine and neck of nine three-degree-of-freedom joints (L5/S1,
L4/L5, T12/L1, T11/T12, T10/T11, T9/T10, T8/T9, T1/T2, C7/T1 carrying the head), legs down
to the toes and arms down to the hands, and 114 markers named as in the full-body model of
the D3KE paper and BML-MoVi's virtual-marker set: bony landmarks, joint centres of the
SMPL-H body model (ROOT, Spine1-3, NECK, HEAD, the collars, hips, knees, ankles, feet,
shoulders, elbows and wrists), midpoints of marker pairs (CENTER, Virtual_*), the spinous
processes (Tracking_*), and the floor below the feet (Virtual_Ground_*, for scaling the
feet from a standing trial). Hands have no finger markers: the hand is one rigid body.
All joints are CustomJoints whose axis functions are linear in one coordinate; there are
no constraints.

Conventions (as in OpenSim's gait models): ground and every body frame have x forward, y up
and z to the right in the default pose; each body's origin is the centre of the joint that
moves it. Three-axis joints rotate body-fixed about z, then x, then y (flexion or
extension, adduction or lateral bending, axial rotation). Left-side points are the right
side's mirrored across the sagittal plane (z -> -z) and left rotation axes are mirrored as
axial vectors ((x, y, z) -> (-x, -y, z)), so a coordinate means the same motion on both
sides. Positive values: hip, shoulder and wrist flexion, adduction, internal rotation, knee
extension (knee flexion is negative, as in gait2392), ankle dorsiflexion, subtalar
inversion, toe extension, clavicle protraction and elevation, scapular upward rotation,
elbow flexion, pronation, ulnar deviation; spinal and neck extension, bending to the right
and turning to the left.

Sources of the figures (H = stature):
  - Segment lengths and landmark heights: Winter, D.A. (2009), Biomechanics and Motor Control
    of Human Movement, 4th ed., Fig. 4.1 (after Drillis and Contini): hip (greater
    trochanter) 0.530 H, knee 0.285 H, ankle 0.039 H, shoulder 0.818 H; thigh 0.245 H, leg
    0.246 H, foot 0.152 H long and 0.055 H wide, upper arm 0.186 H, forearm 0.146 H, hand
    0.108 H.
  - Segment masses, centres of mass and radii of gyration: de Leva, P. (1996), Adjustments to
    Zatsiorsky-Seluyanov's segment inertia parameters, J. Biomech. 29(9):1223-1230, Table 4
    (males), with its segment lengths (head, trunk subsegments, hand) scaled by H / 1.741 m.
    Small bodies (vertebral slices, clavicle, scapula, talus, toes) are uniform boxes.
  - Hip joint centre from the anterior superior iliac spines (ASIS): Bell, A.L., Pedersen,
    D.R., Brand, R.A. (1990), J. Biomech. 23(6):617-621 (14 % of the inter-ASIS width
    posterior, 30 % inferior, 36 % lateral).
  - Ankle and subtalar axes: Inman, V.T. (1976), The Joints of the Ankle (talocrural axis
    10 deg below the transverse axis laterally and 6 deg behind it; subtalar axis 42 deg up
    from the horizontal and 23 deg medial to the foot's long axis). Oblique
    metatarsophalangeal axis about 62 deg to the foot's long axis: Bojsen-Moller, F. (1979),
    J. Anat. 129(1):165-176.
  Spinal curvature, vertebral heights, the shoulder girdle and other landmark offsets are
  typical adult values estimated to be consistent with the figures above.
"""

import math
import os
import re
import tempfile
from typing import NamedTuple, Tuple

import numpy as np

from d3ke_jax.io.atomic import atomic_write
from d3ke_jax.skeleton.osim import default_model_path

MODEL_PATH = default_model_path()  # the packaged file
SIGNIFICANT_DIGITS = 12  # of every number in the file (OpenSim prints 17)
NEGLIGIBLE = 1e-12  # smaller magnitudes (rounding residue, e.g. of axes) are written as 0
_NUMBER = re.compile(r"(?<=[>\s])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?=[\s<])")  # in element text

HEIGHT = 1.75  # m
MASS = 75.0  # kg
DE_LEVA_HEIGHT = 1.741  # m, stature of de Leva's male sample

# Winter's segment lengths (fractions of H).
L_THIGH = 0.245 * HEIGHT  # hip to knee centre
L_SHANK = 0.246 * HEIGHT  # knee to ankle centre
L_FOOT = 0.152 * HEIGHT  # heel to toe tip
ANKLE_HEIGHT = 0.039 * HEIGHT
W_FOOT = 0.055 * HEIGHT
L_UPPER_ARM = 0.186 * HEIGHT  # shoulder to elbow centre
L_FOREARM = 0.146 * HEIGHT  # elbow to wrist centre
L_HAND = 0.108 * HEIGHT  # wrist centre to fingertip
SHOULDER_HEIGHT = 0.818 * HEIGHT  # acromion
# de Leva's segment lengths, scaled to our stature.
DE_LEVA_SCALE = HEIGHT / DE_LEVA_HEIGHT
L_HEAD = 0.2429 * DE_LEVA_SCALE  # vertex to cervicale
L_HAND_MET3 = 0.0862 * DE_LEVA_SCALE  # wrist centre to third metacarpal head
L_UPPER_TRUNK = 0.1707 * DE_LEVA_SCALE  # suprasternale to xiphion
L_LOWER_TRUNK = 0.1457 * DE_LEVA_SCALE  # omphalion to mid-hip

# Points are given in the standing model's frame (metres): the default pose, with the pelvis
# origin, midway between the ASIS, at the ground origin.
ASIS_WIDTH = 0.24
HIP = np.array([-0.14, -0.30, 0.36]) * ASIS_WIDTH  # right hip centre (Bell et al.)
KNEE = HIP - [0.0, L_THIGH, 0.0]
ANKLE = KNEE - [0.0, L_SHANK, 0.0]
FLOOR = ANKLE[1] - ANKLE_HEIGHT  # ~1.0 m below the pelvis origin
VERTEX = FLOOR + HEIGHT  # top of the head


class _Dof(NamedTuple):
  name: str
  axis: Tuple[float, float, float]  # right side, in the parent offset frame
  range: Tuple[float, float]  # degrees (rotations) or metres (translations)


class _Segment(NamedTuple):
  """Inertial and display properties of a body, in the standing model's frame."""
  mass: float  # fraction of body mass
  com: np.ndarray
  gyration: Tuple[float, float, float]  # radii of gyration about x, y, z through the com
  shape: str  # "Ellipsoid" (semi-axes), "Cylinder" (radius, half height along y), "Brick"
  size: Tuple[float, ...]
  centre: np.ndarray  # of the shape


def _spine_dofs(prefix, ranges):
  """Flexion-extension (z), lateral bending (x), axial rotation (y) of a spinal joint."""
  return tuple(_Dof(f"{prefix}_{kind}", axis, limits) for kind, axis, limits in
               zip(("FE", "LB", "AR"), ((0, 0, 1), (1, 0, 0), (0, 1, 0)), ranges))


def _de_leva(length, sagittal, transverse, longitudinal):
  """Radii of gyration about x, y, z from de Leva's percentages of a segment along y."""
  return tuple(0.01 * r * length for r in (sagittal, longitudinal, transverse))


def _box(size):
  """Radii of gyration about x, y, z of a uniform box with full edge lengths ``size``."""
  x, y, z = size
  return tuple(math.sqrt((a * a + b * b) / 12) for a, b in ((y, z), (x, z), (x, y)))


def _along(start, end, fraction):
  return np.asarray(start, float) + fraction * (np.asarray(end, float) - start)


def _unit(v):
  v = np.asarray(v, float)
  return v / np.linalg.norm(v)


def _limb(start, end, com_fraction, gyration_percent, mass, radius):
  """A long bone from ``start`` to ``end`` shown as a cylinder (de Leva's properties)."""
  length = np.linalg.norm(np.subtract(end, start))
  return _Segment(mass, _along(start, end, com_fraction), _de_leva(length, *gyration_percent),
                  "Cylinder", (radius, 0.5 * length), _along(start, end, 0.5))


# Pelvis, spine and head. Centres of the intervertebral discs in the standing model (x, y),
# bottom up, each with the joint, its coordinates' prefix, the body it moves and its
# ranges (degrees: flexion(-)/extension(+), lateral bending, axial rotation). Lumbar
# vertebrae L1-L4 form one body, as do T2-T8 with the rib cage and sternum (thorax), and the
# cervical spine with the skull (head). The spine is 0.17 m lumbar and 0.26 m thoracic
# with a lumbar lordosis and a thoracic kyphosis.
SPINE = (
    ("L5_S1_IVDjnt", "L5_S1", "lumbar5", (-0.060, 0.045), ((-45, 20), (-20, 20), (-20, 20))),
    ("L4_L5_IVDjnt", "L4_L5", "lumbar4", (-0.048, 0.079), ((-45, 20), (-25, 25), (-20, 20))),
    ("T12_L1_IVDjnt", "T12_L1", "thoracic12", (-0.048, 0.215),
     ((-20, 20), (-20, 20), (-20, 20))),
    ("T11_T12_IVDjnt", "T11_T12", "thoracic11", (-0.052, 0.242),
     ((-20, 20), (-20, 20), (-20, 20))),
    ("T10_T11_IVDjnt", "T10_T11", "thoracic10", (-0.057, 0.268),
     ((-20, 20), (-20, 20), (-20, 20))),
    ("T9_T10_IVDjnt", "T9_T10", "thoracic9", (-0.063, 0.293), ((-20, 20), (-20, 20), (-20, 20))),
    ("T8_T9_IVDjnt", "T8_T9", "thorax", (-0.070, 0.317), ((-20, 20), (-20, 20), (-20, 20))),
    ("T1_T2_IVDjnt", "T1_T2", "thoracic1", (-0.062, 0.457), ((-20, 20), (-20, 20), (-20, 20))),
    ("T1_head_neck", "T1_head_neck", "head", (-0.056, 0.476), ((-60, 70), (-45, 45), (-80, 80))),
)
SPINOUS_DEPTH = 0.085  # vertebral body centre to a marker on the spinous process
ABDOMEN = (0.20, 0.30)  # depth and width of the middle trunk's vertebral slices
ABDOMEN_FORWARD = 0.06  # their centres of mass lie in front of the vertebral bodies
# Mass fractions (de Leva): lower trunk on the pelvis, middle trunk spread over the slices
# from L5 to T9 by height, upper trunk on the thorax less T1 and the shoulder girdles.
MASS_LOWER_TRUNK, MASS_MIDDLE_TRUNK, MASS_UPPER_TRUNK, MASS_HEAD = 0.1117, 0.1633, 0.1596, 0.0694
MASS_T1, MASS_CLAVICLE, MASS_SCAPULA = 0.004, 0.004, 0.008
JUGULAR_NOTCH = np.array([0.015, 0.410, 0.0])  # the CLAV marker
XIPHOID = np.array([0.070, 0.280, 0.0])  # the STRN marker
HEAD_CENTRE = np.array([0.0, VERTEX - 0.11, 0.0])
PSIS = np.array([-0.165, 0.035, 0.045])
# Heights of the spinous processes of the vertebrae without a marker of the paper's model
# (BML-MoVi's Tracking_* markers) and the bodies they move with.
SPINOUS_PROCESSES = (
    ("L5", "lumbar5", 0.060), ("L4", "lumbar4", 0.100), ("L3", "lumbar4", 0.135),
    ("L2", "lumbar4", 0.170), ("L1", "lumbar4", 0.200), ("T11", "thoracic11", 0.255),
    ("T9", "thoracic9", 0.305), ("T7", "thorax", 0.340), ("T6", "thorax", 0.360),
    ("T5", "thorax", 0.380), ("T4", "thorax", 0.400), ("T3", "thorax", 0.420),
    ("T2", "thorax", 0.440))
# Joint centres of the SMPL-H body model (BML-MoVi's joint markers) on the midline and the
# right side, where a mean SMPL-H body in the anatomical position puts them relative to
# the landmarks above: the pelvis joint between and above the hips, the spine joints in
# front of the lumbar, lower and middle thoracic spine, the neck at the cervicothoracic
# junction, the head at the skull base, the collar inside the trapezius above the
# clavicle's medial third, and the foot at the ball of the foot.
SMPL_JOINTS = {
    "ROOT": np.array([-0.03, -0.04, 0.0]),
    "Spine1": np.array([-0.02, 0.12, 0.0]),
    "Spine2": np.array([-0.02, 0.25, 0.0]),
    "Spine3": np.array([-0.02, 0.38, 0.0]),
    "NECK": np.array([-0.04, 0.50, 0.0]),
    "HEAD": np.array([-0.01, VERTEX - 0.15, 0.0]),
    "COL": np.array([-0.03, 0.43, 0.07]),
}

# Legs (right side). Axes from Inman's and Bojsen-Moller's angles.
ANKLE_AXIS = (-math.sin(math.radians(6)) * math.cos(math.radians(10)),
              -math.sin(math.radians(10)),
              math.cos(math.radians(6)) * math.cos(math.radians(10)))
SUBTALAR_AXIS = (math.cos(math.radians(42)) * math.cos(math.radians(23)),
                 math.sin(math.radians(42)),
                 -math.cos(math.radians(42)) * math.sin(math.radians(23)))
MTP_AXIS = (-math.sin(math.radians(28)), 0.0, math.cos(math.radians(28)))
HEEL_X = ANKLE[0] - 0.06  # back of the heel
SUBTALAR = ANKLE + [-0.045, -0.035, 0.005]
MTP = np.array([ANKLE[0] + 0.1225, FLOOR + 0.015, ANKLE[2] + 0.0075])  # between MT1, MT5 heads
MALLEOLUS = 0.042  # ankle centre to the malleolar markers, along the ankle axis
# The knee and ankle markers sit on the prominences of the epicondyles and malleoli, above
# the knee's joint line and the malleolar tips the ankle axis runs through (so the midpoint
# of a pair is not the joint centre).
EPICONDYLES, MALLEOLI = 0.015, 0.01
LEG_DOFS = {
    "hip": (_Dof("hip_flexion", (0, 0, 1), (-30, 120)),
            _Dof("hip_adduction", (1, 0, 0), (-50, 30)),
            _Dof("hip_rotation", (0, 1, 0), (-45, 45))),
    "knee": (_Dof("knee_angle", (0, 0, 1), (-120, 10)),),
    "ankle": (_Dof("ankle_angle", ANKLE_AXIS, (-50, 30)),),
    "subtalar": (_Dof("subtalar_angle", SUBTALAR_AXIS, (-25, 25)),),
    "mtp": (_Dof("mtp_angle", MTP_AXIS, (-30, 60)),),
}
MASS_THIGH, MASS_SHANK, MASS_TALUS, MASS_CALCN, MASS_TOES = 0.1416, 0.0433, 0.0012, 0.0100, 0.0025

# Shoulder girdle and arm (right side). The clavicle runs 20 deg backward and 7 deg upward
# from the sternoclavicular joint; the glenohumeral centre lies 42 mm below the acromion.
STERNOCLAVICULAR = np.array([0.005, 0.405, 0.025])
L_CLAVICLE = 0.155
ACROMIOCLAVICULAR = STERNOCLAVICULAR + L_CLAVICLE * np.array(
    [-math.cos(math.radians(7)) * math.sin(math.radians(20)), math.sin(math.radians(7)),
     math.cos(math.radians(7)) * math.cos(math.radians(20))])
ACROMION = np.array([-0.043, SHOULDER_HEIGHT + FLOOR, 0.19])  # the RSHO marker
SHOULDER = np.array([-0.053, ACROMION[1] - 0.042, 0.18])
ELBOW = SHOULDER - [0.0, L_UPPER_ARM, 0.0]
WRIST = ELBOW - [0.0, L_FOREARM, 0.0]
RADIAL_HEAD = ELBOW + [0.0, 0.0, 0.02]  # on the flexion axis, at the capitulum
ULNAR_HEAD = WRIST + [0.0, 0.01, -0.022]
# The scapula rotates upward about the normal of the scapular plane (30 deg forward of the
# frontal plane); pronation turns the radius about the line from radial to ulnar head.
SCAPULAR_NORMAL = (-math.cos(math.radians(30)), 0.0, math.sin(math.radians(30)))
ARM_DOFS = {
    "sternoclavicular": (_Dof("clavicle_protraction", (0, 1, 0), (-30, 30)),
                         _Dof("clavicle_elevation", (-1, 0, 0), (-10, 45))),
    "acromioclavicular": (_Dof("scapula_upward_rotation", SCAPULAR_NORMAL, (-15, 60)),),
    "shoulder": (_Dof("shoulder_flex", (0, 0, 1), (-60, 180)),
                 _Dof("shoulder_add", (1, 0, 0), (-180, 30)),
                 _Dof("shoulder_rot", (0, 1, 0), (-90, 90))),
    "elbow": (_Dof("elbow_flexion", (0, 0, 1), (-10, 150)),),
    "radioulnar": (_Dof("pro_sup", tuple(_unit(RADIAL_HEAD - ULNAR_HEAD)), (-10, 170)),),
    "radiocarpal": (_Dof("wrist_flex", (0, 0, 1), (-70, 80)),
                    _Dof("wrist_dev", (1, 0, 0), (-25, 35))),
}
MASS_UPPER_ARM, MASS_FOREARM, MASS_HAND = 0.0271, 0.0162, 0.0061

PELVIS_DOFS = (
    _Dof("pelvis_tilt", (0, 0, 1), (-180, 180)),
    _Dof("pelvis_list", (1, 0, 0), (-90, 90)),
    _Dof("pelvis_rotation", (0, 1, 0), (-180, 180)),
)
PELVIS_TRANSLATIONS = (
    _Dof("pelvis_tx", (1, 0, 0), (-10, 10)),
    _Dof("pelvis_ty", (0, 1, 0), (-10, 10)),
    _Dof("pelvis_tz", (0, 0, 1), (-10, 10)),
)


class _Side(NamedTuple):
  suffix: str  # of body, joint and coordinate names
  prefix: str  # of marker names
  sign: float  # +1 right, -1 left

  def point(self, p):
    return np.array([p[0], p[1], self.sign * p[2]], float)

  def axis(self, a):
    return (self.sign * a[0], self.sign * a[1], a[2])

  def dofs(self, dofs):
    return tuple(_Dof(d.name + self.suffix, self.axis(d.axis), d.range) for d in dofs)

  def segment(self, s):
    return s._replace(com=self.point(s.com), centre=self.point(s.centre))


RIGHT, LEFT = _Side("_r", "R", 1.0), _Side("_l", "L", -1.0)


class _Builder:
  """Adds bodies, joints and markers given in the standing model's frame."""

  def __init__(self, osim):
    self.osim = osim
    self.model = osim.Model()
    self.model.setName("d3ke_full_body")
    self.model.set_credits("Generated by experiments.make_default_model (d3ke-jax).")
    self.model.set_publications(
        "Anthropometry: Winter (2009) Biomechanics and Motor Control of Human Movement; "
        "de Leva (1996) J. Biomech. 29:1223-1230; Bell et al. (1990) J. Biomech. 23:617-621; "
        "Inman (1976) The Joints of the Ankle.")
    self.origins = {"ground": np.zeros(3)}

  def _vec3(self, v):
    return self.osim.Vec3(*(float(x) for x in v))

  def _frame(self, name):
    if name == "ground":
      return self.model.getGround()
    return self.model.getBodySet().get(name)

  def body(self, name, parent, joint, origin, rotations, segment, translations=()):
    """A body with origin ``origin``, moved by a CustomJoint from ``parent``."""
    osim = self.osim
    inertia = [MASS * segment.mass * r * r for r in segment.gyration]
    body = osim.Body(name, MASS * segment.mass, self._vec3(segment.com - origin),
                     osim.Inertia(*inertia))
    self.model.addBody(body)
    self.origins[name] = np.asarray(origin, float)
    body = self._frame(name)
    display = osim.PhysicalOffsetFrame(f"{name}_geometry", body,
                                       osim.Transform(self._vec3(segment.centre - origin)))
    body.addComponent(display)
    if segment.shape == "Brick":
      display.attachGeometry(osim.Brick(self._vec3(segment.size)))
    else:
      display.attachGeometry(getattr(osim, segment.shape)(*segment.size))
    transform = _spatial_transform(osim, rotations, translations)
    custom = osim.CustomJoint(joint, self._frame(parent),
                              self._vec3(origin - self.origins[parent]), self._vec3((0, 0, 0)),
                              body, self._vec3((0, 0, 0)), self._vec3((0, 0, 0)), transform)
    self.model.addJoint(custom)
    ranges = {d.name: [math.radians(x) for x in d.range] for d in rotations}
    ranges.update({d.name: list(d.range) for d in translations})
    for i in range(custom.numCoordinates()):
      coordinate = custom.upd_coordinates(i)
      low, high = ranges[coordinate.getName()]
      coordinate.setRangeMin(low)
      coordinate.setRangeMax(high)
      coordinate.setDefaultValue(0.0)
      # The pelvis is free in space: a subject turning round is not stopped at +-180 deg.
      coordinate.setDefaultClamped(parent != "ground")
      coordinate.setDefaultLocked(False)

  def marker(self, name, body, point):
    location = self._vec3(np.asarray(point, float) - self.origins[body])
    self.model.addMarker(self.osim.Marker(name, self._frame(body), location))


def _spatial_transform(osim, rotations, translations):
  """Rotation axes of ``rotations`` completed to three, then translations (fixed if none)."""
  transform = osim.SpatialTransform()
  axes = _complete_axes([d.axis for d in rotations])
  names = [d.name for d in rotations] + [None] * (3 - len(rotations))
  if translations:
    axes += [d.axis for d in translations]
    names += [d.name for d in translations]
  else:
    axes += list(np.eye(3))
    names += [None] * 3
  for i, (axis, name) in enumerate(zip(axes, names)):
    transform_axis = transform.updTransformAxis(i)
    transform_axis.setAxis(osim.Vec3(*(float(x) for x in axis)))
    if name is not None:
      transform_axis.setCoordinateNames(osim.ArrayStr(name, 1))
      transform_axis.set_function(osim.LinearFunction(1.0, 0.0))  # set_ copies the function
    else:
      transform_axis.set_function(osim.Constant(0.0))
  return transform


def _complete_axes(axes):
  """The given (orthogonal) unit axes followed by unit axes orthogonal to them, three in all."""
  basis = [_unit(a) for a in axes]
  for candidate in np.eye(3):
    if len(basis) == 3:
      break
    v = candidate - sum((np.dot(candidate, b) * b for b in basis), np.zeros(3))
    if np.linalg.norm(v) > 0.1:
      basis.append(_unit(v))
  return basis


def _pelvis(b):
  com = np.array([-0.03, HIP[1] + (1 - 0.6115) * L_LOWER_TRUNK, 0.0])
  b.body("pelvis", "ground", "ground_pelvis", np.zeros(3), PELVIS_DOFS,
         _Segment(MASS_LOWER_TRUNK, com, _de_leva(L_LOWER_TRUNK, 61.5, 55.1, 58.7),
                  "Ellipsoid", (0.09, 0.10, 0.14), np.array([-0.08, -0.03, 0.0])),
         PELVIS_TRANSLATIONS)
  asi = np.array([0.01, 0.0, 0.5 * ASIS_WIDTH])
  psi = PSIS + [-0.01, 0.0, 0.0]
  for side in (RIGHT, LEFT):
    b.marker(side.prefix + "ASI", "pelvis", side.point(asi))
    b.marker(side.prefix + "PSI", "pelvis", side.point(psi))
  b.marker("MASI", "pelvis", [asi[0], asi[1], 0.0])
  b.marker("MPSI", "pelvis", [psi[0], psi[1], 0.0])
  for side in (RIGHT, LEFT):
    b.marker(side.prefix + "HIPJ", "pelvis", side.point(HIP))
  b.marker("MHIPJ", "pelvis", [HIP[0], HIP[1], 0.0])
  b.marker("CENTER", "pelvis", [0.5 * (asi[0] + psi[0]), 0.5 * (asi[1] + psi[1]), 0.0])
  b.marker("ROOT", "pelvis", SMPL_JOINTS["ROOT"])


def _spine(b):
  """The nine spinal joints up to the head, with the trunk's mass spread along them."""
  centres = [np.array([x, y, 0.0]) for _, _, _, (x, y), _ in SPINE]
  bodies = [body for _, _, body, _, _ in SPINE]
  sliced_height = centres[bodies.index("thorax")][1] - centres[0][1]  # L5/S1 to T8/T9
  parent = "pelvis"
  for k, (joint, prefix, body, _, ranges) in enumerate(SPINE):
    if body in _TRUNK_SEGMENTS:
      segment = _TRUNK_SEGMENTS[body](centres[k])
    else:
      segment = _trunk_slice(centres[k], centres[k + 1], sliced_height)
    b.body(body, parent, joint, centres[k], _spine_dofs(prefix, ranges), segment)
    parent = body
  for name, body in (("T12", "thoracic12"), ("T10", "thoracic10"), ("T8", "thorax"),
                     ("T1", "thoracic1"), ("C7", "head")):
    b.marker(name, body, b.origins[body] + [-SPINOUS_DEPTH, 0.005, 0.0])
  for name, body, height in SPINOUS_PROCESSES:
    b.marker("Tracking_" + name, body, _spine_centre(height) - [SPINOUS_DEPTH, 0.0, 0.0])
  for name, body in (("Spine1", "lumbar4"), ("Spine2", "thoracic11"), ("Spine3", "thorax"),
                     ("NECK", "head"), ("HEAD", "head")):
    b.marker(name, body, SMPL_JOINTS[name])
  b.marker("CLAV", "thorax", JUGULAR_NOTCH)
  b.marker("STRN", "thorax", XIPHOID)
  for side in (RIGHT, LEFT):
    b.marker(side.prefix + "FHD", "head", side.point(HEAD_CENTRE + [0.07, 0.02, 0.06]))
    b.marker(side.prefix + "BHD", "head", side.point(HEAD_CENTRE + [-0.075, 0.02, 0.05]))


def _spine_centre(height):
  """The point of the spine's curve (through the disc centres) at a height."""
  x, y = np.array([centre for _, _, _, centre, _ in SPINE]).T
  return np.array([np.interp(height, y, x), height, 0.0])


def _trunk_slice(bottom, top, sliced_height):
  """A vertebral body between two discs with its share of the middle trunk's mass."""
  height = top[1] - bottom[1]
  middle = _along(bottom, top, 0.5)
  return _Segment(MASS_MIDDLE_TRUNK * height / sliced_height,
                  middle + [ABDOMEN_FORWARD, 0.0, 0.0],
                  _box((ABDOMEN[0], height, ABDOMEN[1])), "Cylinder", (0.022, 0.4 * height),
                  middle)


def _thorax(origin):
  mass = MASS_UPPER_TRUNK - MASS_T1 - 2 * (MASS_CLAVICLE + MASS_SCAPULA)
  com = JUGULAR_NOTCH + [-0.035, -0.2999 * L_UPPER_TRUNK, 0.0]
  return _Segment(mass, com, _de_leva(L_UPPER_TRUNK, 71.6, 45.4, 65.9), "Ellipsoid",
                  (0.10, 0.15, 0.14), origin + [0.04, 0.03, 0.0])


def _thoracic1(origin):
  size = (0.06, 0.019, 0.06)
  return _Segment(MASS_T1, origin + [-0.02, 0.0095, 0.0], _box(size), "Cylinder",
                  (0.018, 0.008), origin + [0.0, 0.0095, 0.0])


def _head(origin):
  com = np.array([-0.005, VERTEX - 0.5976 * L_HEAD, 0.0])
  return _Segment(MASS_HEAD, com, _de_leva(L_HEAD, 36.2, 37.6, 31.2), "Ellipsoid",
                  (0.10, 0.11, 0.078), HEAD_CENTRE)


_TRUNK_SEGMENTS = {"thorax": _thorax, "thoracic1": _thoracic1, "head": _head}


def _leg(b, side):
  foot = np.array([HEEL_X + 0.4415 * L_FOOT, FLOOR + 0.04, ANKLE[2]])
  # The foot lies along x: de Leva's longitudinal radius of gyration is about x.
  foot_gyration = (0.124 * L_FOOT, 0.257 * L_FOOT, 0.245 * L_FOOT)
  heel_to_mtp = MTP[0] - HEEL_X
  toe_length = HEEL_X + L_FOOT - MTP[0]
  segments = (
      ("femur", "pelvis", "hip", HIP,
       _limb(HIP, KNEE, 0.4095, (32.9, 32.9, 14.9), MASS_THIGH, 0.03)),
      ("tibia", "femur", "knee", KNEE,
       _limb(KNEE, ANKLE, 0.4459, (25.5, 24.9, 10.3), MASS_SHANK, 0.025)),
      ("talus", "tibia", "ankle", ANKLE,
       _Segment(MASS_TALUS, ANKLE + [0.01, -0.01, 0.0], _box((0.05, 0.04, 0.04)), "Ellipsoid",
                (0.025, 0.02, 0.02), ANKLE + [0.01, -0.01, 0.0])),
      ("calcn", "talus", "subtalar", SUBTALAR,
       _Segment(MASS_CALCN, foot, foot_gyration, "Brick",
                (0.5 * heel_to_mtp, 0.025, 0.5 * W_FOOT),
                np.array([HEEL_X + 0.5 * heel_to_mtp, FLOOR + 0.03, ANKLE[2]]))),
      ("toes", "calcn", "mtp", MTP,
       _Segment(MASS_TOES, MTP + [0.03, -0.003, 0.0], _box((toe_length, 0.02, W_FOOT)), "Brick",
                (0.5 * toe_length, 0.012, 0.5 * W_FOOT),
                np.array([MTP[0] + 0.5 * toe_length, FLOOR + 0.012, ANKLE[2]]))),
  )
  for body, parent, joint, origin, segment in segments:
    b.body(body + side.suffix, parent if parent == "pelvis" else parent + side.suffix,
           joint + side.suffix, side.point(origin), side.dofs(LEG_DOFS[joint]),
           side.segment(segment))
  ankle_axis = _unit(ANKLE_AXIS)
  markers = (
      ("THI", "femur", [HIP[0] + 0.01, KNEE[1] + 0.14, 0.155]),
      ("KNE", "femur", KNEE + [0.0, EPICONDYLES, 0.055]),
      ("KNI", "femur", KNEE + [0.0, EPICONDYLES, -0.055]),
      ("KJC", "femur", KNEE),
      ("TIB", "tibia", ANKLE + [0.0, 0.15, 0.05]),
      ("ANK", "tibia", ANKLE + [0.0, MALLEOLI, 0.0] + MALLEOLUS * ankle_axis),
      ("ANI", "tibia", ANKLE + [0.0, MALLEOLI, 0.0] - MALLEOLUS * ankle_axis),
      ("AJC", "tibia", ANKLE),
      ("HEE", "calcn", [HEEL_X - 0.008, FLOOR + 0.035, ANKLE[2]]),
      ("MT1", "calcn", [ANKLE[0] + 0.14, FLOOR + 0.025, ANKLE[2] - 0.045]),
      ("MT5", "calcn", [ANKLE[0] + 0.10, FLOOR + 0.02, ANKLE[2] + 0.05]),
      ("TOE", "toes", [ANKLE[0] + 0.165, FLOOR + 0.025, ANKLE[2] - 0.015]),
      ("FOOT", "toes", MTP + [0.01, 0.025, 0.0]),
  )
  for name, body, point in markers:
    b.marker(side.prefix + name, body + side.suffix, side.point(point))
  points = {name: np.asarray(point, float) for name, _, point in markers}
  for name, body, pair in (("KJC", "femur", ("KNE", "KNI")), ("AJC", "tibia", ("ANK", "ANI"))):
    b.marker(f"Virtual_{side.prefix}{name}", body + side.suffix,
             side.point(0.5 * (points[pair[0]] + points[pair[1]])))
  # The floor below markers of the standing model, as BML-MoVi projects them.
  points["AJC"] = 0.5 * (points["ANK"] + points["ANI"])
  for name, body in (("AJC", "calcn"), ("FOOT", "calcn"), ("TOE", "toes"), ("MT1", "calcn"),
                     ("MT5", "calcn"), ("HEE", "calcn")):
    b.marker(f"Virtual_Ground_{side.prefix}{name}", body + side.suffix,
             side.point(points[name] * [1, 0, 1] + [0, FLOOR, 0]))


def _arm(b, side):
  segments = (
      ("clavicle", "thorax", "sternoclavicular", STERNOCLAVICULAR,
       _Segment(MASS_CLAVICLE, _along(STERNOCLAVICULAR, ACROMIOCLAVICULAR, 0.5),
                _box((0.02, 0.02, L_CLAVICLE)), "Ellipsoid", (0.012, 0.012, 0.5 * L_CLAVICLE),
                _along(STERNOCLAVICULAR, ACROMIOCLAVICULAR, 0.5))),
      ("scapula", "clavicle", "acromioclavicular", ACROMIOCLAVICULAR,
       _Segment(MASS_SCAPULA, np.array([-0.11, 0.35, 0.11]), _box((0.03, 0.15, 0.10)), "Brick",
                (0.01, 0.075, 0.05), np.array([-0.11, 0.35, 0.11]))),
      ("humerus", "scapula", "shoulder", SHOULDER,
       _limb(SHOULDER, ELBOW, 0.5772, (28.5, 26.9, 15.8), MASS_UPPER_ARM, 0.022)),
      ("ulna", "humerus", "elbow", ELBOW,
       _limb(ELBOW - [0.0, 0.0, 0.012], WRIST - [0.0, 0.0, 0.012], 0.4574, (27.6, 26.5, 12.1),
             0.5 * MASS_FOREARM, 0.012)),
      ("radius", "ulna", "radioulnar", RADIAL_HEAD,
       _limb(RADIAL_HEAD, WRIST + [0.0, 0.0, 0.012], 0.4574, (27.6, 26.5, 12.1),
             0.5 * MASS_FOREARM, 0.012)),
      ("hand", "radius", "radiocarpal", WRIST,
       _Segment(MASS_HAND, WRIST - [0.0, 0.79 * L_HAND_MET3, 0.0],
                _de_leva(L_HAND_MET3, 62.8, 51.3, 40.1), "Brick",
                (0.015, 0.5 * L_HAND, 0.042), WRIST - [0.0, 0.5 * L_HAND, 0.0])),
  )
  for body, parent, joint, origin, segment in segments:
    b.body(body + side.suffix, parent if parent == "thorax" else parent + side.suffix,
           joint + side.suffix, side.point(origin), side.dofs(ARM_DOFS[joint]),
           side.segment(segment))
  markers = (
      ("BAK", "scapula", [-0.13, 0.35, 0.09]),
      ("CLAV", "clavicle", _along(STERNOCLAVICULAR, ACROMIOCLAVICULAR, 0.4) + [0.008, 0.01, 0.0]),
      ("SHO", "scapula", ACROMION),
      ("SHOULDER", "humerus", SHOULDER),
      ("UPA", "humerus", SHOULDER + [-0.01, -0.17, 0.045]),
      ("ELB", "humerus", ELBOW + [-0.005, 0.005, 0.045]),
      ("ELBIN", "humerus", ELBOW + [-0.005, 0.005, -0.045]),
      ("ELC", "humerus", ELBOW),
      ("FRM", "ulna", ELBOW + [-0.03, -0.10, -0.01]),
      ("OWR", "ulna", WRIST + [-0.008, 0.0, -0.03]),
      ("IWR", "radius", WRIST + [0.005, -0.008, 0.032]),
      ("WRIST", "radius", WRIST),
      ("FIN", "hand", WRIST + [-0.02, -0.08, 0.015]),
      ("COL", "clavicle", SMPL_JOINTS["COL"]),
  )
  for name, body, point in markers:
    b.marker(side.prefix + name, body + side.suffix, side.point(point))
  points = {name: np.asarray(point, float) for name, _, point in markers}
  for name, body, pair in (("ELC", "humerus", ("ELB", "ELBIN")),
                           ("WRIST", "radius", ("IWR", "OWR"))):
    b.marker(f"Virtual_{side.prefix}{name}", body + side.suffix,
             side.point(0.5 * (points[pair[0]] + points[pair[1]])))


def build_model():
  """The default full-body model as an ``opensim.Model`` (not yet initialised)."""
  import opensim  # pylint: disable=g-import-not-at-top
  b = _Builder(opensim)
  _pelvis(b)
  _spine(b)
  for side in (RIGHT, LEFT):
    _leg(b, side)
  for side in (RIGHT, LEFT):
    _arm(b, side)
  b.model.finalizeConnections()
  return b.model


def round_numbers(text):
  """``text`` with each number in element text rounded to ``SIGNIFICANT_DIGITS``, and
  those below ``NEGLIGIBLE`` written as 0, so that last-bit differences do not show."""

  def rounded(match):
    value = float(match.group())
    return "0" if abs(value) < NEGLIGIBLE else f"{value:.{SIGNIFICANT_DIGITS}g}"

  return _NUMBER.sub(rounded, text)


def write(path=MODEL_PATH):
  """Builds the model and saves it as an OpenSim model file at ``path``, numbers rounded."""
  path = os.fspath(path)
  with tempfile.TemporaryDirectory() as directory:
    printed = os.path.join(directory, "model.osim")
    build_model().printToXML(printed)
    with open(printed, encoding="utf-8") as f:
      text = f.read()
  with atomic_write(path) as f:
    f.write(round_numbers(text))
  return path


if __name__ == "__main__":
  print(write())
