"""Forward kinematics against OpenSim on small models built with the opensim API.

Each test builds a model with the ``opensim`` Python API, writes it to pytest's tmp_path,
compiles it with ``load_osim`` and compares ``forward_kinematics`` (float64) with OpenSim's
own kinematics at random poses. Expected numbers come from OpenSim 4.6 (the PyPI
``opensim`` package), computed inside the tests by tests/opensim_helpers.py: body frames
(``Body.getTransformInGround``), joint child-frame origins and marker locations in ground.
Measured errors: <= 7.8e-16 on rotation-matrix entries; <= 2e-15 m on positions, except
CustomJoint functions (splines): 9.3e-15 m. Tolerances: 2e-15 and 2e-14 m.
"""

import re

import jax
import numpy as np
import opensim
import pytest

from d3ke_jax.skeleton import OsimError, forward_kinematics, load_osim
from conftest import float64
from opensim_helpers import apply_couplers, load_model, opensim_fk, pose, write_scaled_model

pytestmark = pytest.mark.float64  # compared with OpenSim's double precision

POSITION_TOL = 2e-14  # metres
ROTATION_TOL = 2e-15  # rotation-matrix entries

FIXED_AXIS_JOINTS = ["PinJoint", "SliderJoint", "UniversalJoint", "GimbalJoint", "BallJoint",
                     "FreeJoint", "PlanarJoint", "WeldJoint"]

# Spline knots span [-1, 1]; poses go to +-1.3 so that every spline is also extrapolated.
KNOTS = np.linspace(-1.0, 1.0, 7)


# ----------------------------------------------------------------------------------------
# Building models with the opensim API.

def _vec(*values):
  return opensim.Vec3(*map(float, values))


def _strings(*names):
  out = opensim.ArrayStr()
  for name in names:
    out.append(name)
  return out


def _xy(cls, xs, ys):
  function = cls()
  for x, y in zip(xs, ys):
    function.addPoint(float(x), float(y))
  return function


def _gcv(degree, xs, ys):
  function = opensim.GCVSpline()
  function.setDegree(degree)
  for x, y in zip(xs, ys):
    function.addPoint(float(x), float(y))
  return function


def _polynomial(*coefficients):
  vector = opensim.Vector(len(coefficients), 0.0)
  for i, c in enumerate(coefficients):
    vector.set(i, float(c))
  return opensim.PolynomialFunction(vector)


def _multiplier(function, scale):
  function.thisown = False  # the MultiplierFunction adopts (and deletes) it
  return opensim.MultiplierFunction(function, float(scale))


def _spatial_transform(axes):
  """A SpatialTransform from six (axis, coordinate name or None, function or None)."""
  transform = opensim.SpatialTransform()
  for i, (axis, coordinate, function) in enumerate(axes):
    transform_axis = transform.updTransformAxis(i)
    transform_axis.setAxis(_vec(*axis))
    if coordinate:
      transform_axis.setCoordinateNames(_strings(coordinate))
    if function is not None:
      transform_axis.set_function(function)  # copies
  return transform


class _Builder:
  """A model under construction: every body gets a marker, every joint random offset frames
  (translation and orientation) on both the parent and the child side."""

  def __init__(self, name, seed=0):
    self.model = opensim.Model()
    self.model.setName(name)
    self.rng = np.random.default_rng(seed)
    self.frames = {"ground": self.model.getGround()}

  def body(self, name):
    body = opensim.Body(name, 1.0, _vec(0, 0, 0), opensim.Inertia(0.1, 0.1, 0.1))
    self.model.addBody(body)
    self.model.addMarker(opensim.Marker(f"{name}_marker", body,
                                        _vec(*self.rng.uniform(-0.2, 0.2, 3))))
    self.frames[name] = body
    return body

  def offset_frame(self, name, parent):
    """A PhysicalOffsetFrame with a random pose on ``parent`` (a body or another frame)."""
    frame = opensim.PhysicalOffsetFrame(name, self.frames[parent], opensim.Transform())
    frame.set_translation(_vec(*self.rng.uniform(-0.2, 0.2, 3)))
    frame.set_orientation(_vec(*self.rng.uniform(-1.0, 1.0, 3)))
    self.frames[parent].addComponent(frame)
    self.frames[name] = frame
    return frame

  def joint(self, kind, name, parent, child, *extra):
    """Adds joint ``kind`` from frame ``parent`` to a new body ``child``."""
    r = self.rng
    joint = getattr(opensim, kind)(
        name, self.frames[parent], _vec(*r.uniform(-0.3, 0.3, 3)), _vec(*r.uniform(-1, 1, 3)),
        self.body(child), _vec(*r.uniform(-0.3, 0.3, 3)), _vec(*r.uniform(-1, 1, 3)), *extra)
    self.model.addJoint(joint)
    return joint

  def custom_joint(self, name, parent, child, axes):
    return self.joint("CustomJoint", name, parent, child, _spatial_transform(axes))

  def coupler(self, name, dependent, independent, function, scale_factor):
    constraint = opensim.CoordinateCouplerConstraint()
    constraint.setName(name)
    constraint.setIndependentCoordinateNames(_strings(independent))
    constraint.setDependentCoordinateName(dependent)
    function.thisown = False  # the constraint adopts it
    constraint.setFunction(function)
    opensim.PropertyHelper.setValueDouble(float(scale_factor),
                                          constraint.updPropertyByName("scale_factor"))
    self.model.addConstraint(constraint)

  def write(self, path):
    self.model.finalizeConnections()
    self.model.printToXML(str(path))
    return path


# ----------------------------------------------------------------------------------------
# Comparing with OpenSim.

def _poses(num_coordinates, n=12, low=-1.3, high=1.3, seed=1):
  """Random poses plus all-at-one-value rows at the knots' ends and just beyond them."""
  rng = np.random.default_rng(seed)
  special = np.array([-1.0, 1.0, -1.05, 1.05, 0.0])[:, None] * np.ones(num_coordinates)
  return np.concatenate([rng.uniform(low, high, (n, num_coordinates)), special])


def _assert_close(out, expected):
  """forward_kinematics output against OpenSim's."""
  transforms = np.asarray(out.body_transforms)
  assert transforms.dtype == np.float64
  want = expected["body_transforms"]
  np.testing.assert_allclose(transforms[..., :3, :3], want[..., :3, :3], rtol=0,
                             atol=ROTATION_TOL)
  np.testing.assert_allclose(transforms[..., :3, 3], want[..., :3, 3], rtol=0,
                             atol=POSITION_TOL)
  np.testing.assert_array_equal(transforms[..., 3, :], want[..., 3, :])
  np.testing.assert_allclose(out.joint_origins, expected["joint_origins"], rtol=0,
                             atol=POSITION_TOL)
  np.testing.assert_allclose(out.markers, expected["markers"], rtol=0, atol=POSITION_TOL)


def _assert_matches_opensim(path, coords, scale_factors=None, model=None):
  """Compares forward_kinematics with OpenSim at every pose."""
  model = load_osim(path) if model is None else model
  expected = opensim_fk(path, coords, scale_factors)
  assert model.coordinate_names == tuple(expected["coordinate_names"])
  assert model.body_names == tuple(expected["body_names"])
  assert model.joint_names == tuple(expected["joint_names"])
  assert model.marker_names == tuple(expected["marker_names"])
  scales = None if scale_factors is None else np.asarray(scale_factors, np.float64)
  out = forward_kinematics(model, np.asarray(coords, np.float64), scales=scales)
  _assert_close(out, expected)


# ----------------------------------------------------------------------------------------
# 1. Joints with fixed axes.

@pytest.fixture(scope="module")
def fixed_axis_chains(tmp_path_factory):
  """One model holding a 3-body chain of each fixed-axis joint type, each hanging from
  ground (one compilation), with forward_kinematics and OpenSim at the same poses."""
  builder = _Builder("fixed_axis_chains", seed=2)
  for kind in FIXED_AXIS_JOINTS:
    builder.joint(kind, f"{kind}_0", "ground", f"{kind}_b0")
    builder.joint(kind, f"{kind}_1", f"{kind}_b0", f"{kind}_b1")
    builder.joint(kind, f"{kind}_2", f"{kind}_b1", f"{kind}_b2")
  path = builder.write(tmp_path_factory.mktemp("fixed") / "fixed_axis_chains.osim")
  model = load_osim(path)
  coords = _poses(model.num_coordinates, low=-2.0, high=2.0)
  with float64():  # a module fixture, set up before the tests' own float64 mark applies
    out = jax.tree.map(np.asarray, forward_kinematics(model, coords))
  return model, coords, opensim_fk(path, coords), out


@pytest.mark.parametrize("kind", FIXED_AXIS_JOINTS)
def test_fixed_axis_joint_chain_matches_opensim(kind, fixed_axis_chains):
  model, coords, expected, out = fixed_axis_chains
  joints = [j for j, name in enumerate(model.joint_names) if name.startswith(kind + "_")]
  bodies = [model.joint_child_body[j] for j in joints]
  markers = [m for m, b in enumerate(model.marker_body) if b in bodies]
  assert [model.joint_types[j] for j in joints] == [kind] * 3
  assert len(markers) == 3
  uses = {c for j, _, c in model.axis_inputs if j in joints}
  assert len(uses) == {"WeldJoint": 0, "PinJoint": 1, "SliderJoint": 1, "UniversalJoint": 2,
                       "GimbalJoint": 3, "BallJoint": 3, "FreeJoint": 6,
                       "PlanarJoint": 3}[kind] * 3
  _assert_close(
      type(out)(out.body_transforms[:, bodies], out.joint_origins[:, joints],
                out.markers[:, markers]),
      {"body_transforms": expected["body_transforms"][:, bodies],
       "joint_origins": expected["joint_origins"][:, joints],
       "markers": expected["markers"][:, markers]})


def test_mixed_tree_with_nested_offset_frames_matches_opensim(tmp_path):
  """Branches, every fixed-axis joint type, a joint on an offset frame of an offset frame,
  and a marker on an offset frame."""
  builder = _Builder("mixed_tree", seed=11)
  builder.joint("FreeJoint", "root", "ground", "pelvis")
  builder.offset_frame("hip_base", "pelvis")
  builder.offset_frame("hip_socket", "hip_base")
  builder.joint("BallJoint", "hip_r", "hip_socket", "thigh_r")
  builder.joint("GimbalJoint", "hip_l", "pelvis", "thigh_l")
  builder.joint("PinJoint", "knee_r", "thigh_r", "shank_r")
  builder.joint("UniversalJoint", "knee_l", "thigh_l", "shank_l")
  builder.joint("SliderJoint", "ankle_r", "shank_r", "foot_r")
  builder.joint("PlanarJoint", "ankle_l", "shank_l", "foot_l")
  builder.joint("WeldJoint", "toes_r", "foot_r", "toes_r")
  builder.offset_frame("heel", "foot_l")
  builder.model.addMarker(opensim.Marker("heel_marker", builder.frames["heel"],
                                         _vec(0.01, -0.02, 0.03)))
  path = builder.write(tmp_path / "mixed_tree.osim")
  model = load_osim(path)
  assert len(model.levels) == 5
  _assert_matches_opensim(path, _poses(model.num_coordinates, low=-2.0, high=2.0), model=model)


# ----------------------------------------------------------------------------------------
# 2. CustomJoint axes and functions.

def _custom_joint_model(path):
  """Three CustomJoints with oblique, non-unit axes and every supported function kind."""
  ys = 0.05 * np.sin(2 * KNOTS) + 0.01 * KNOTS**2
  builder = _Builder("custom_joints", seed=3)
  builder.custom_joint("j0", "ground", "b0", [
      ((1, 0.2, 0), "a", opensim.LinearFunction(1, 0)),
      ((0.3, 1, 0.1), "b", opensim.LinearFunction(0.7, 0.1)),
      ((0, 0.2, 1), None, opensim.Constant(0.3)),
      ((1, 0, 0), "c", opensim.LinearFunction(1, 0)),
      ((0.5, 1, 0), "a", _polynomial(0.02, -0.01, 0.03)),  # degree 2
      ((0, 0.3, 1), "b", _xy(opensim.SimmSpline, KNOTS, ys)),
  ])
  builder.custom_joint("j1", "b0", "b1", [
      ((0, 0, 1), "d", _multiplier(_xy(opensim.SimmSpline, KNOTS, 2 * ys + 0.3 * KNOTS), 1.7)),
      ((1, 0, 0.4), "d", _gcv(3, KNOTS, 3 * ys)),
      ((0, 2, 0), "e", _gcv(5, np.linspace(-1, 1, 9), np.cos(np.linspace(-1, 1, 9)))),
      ((1, 0, 0), "d", _xy(opensim.PiecewiseLinearFunction, KNOTS, ys)),
      ((0, 1, 0), "e", _polynomial(0.01, 0.02, -0.03, 0.04)),  # degree 3
      ((0, 0, 1), None, opensim.Constant(0.02)),
  ])
  builder.custom_joint("j2", "b1", "b2", [
      ((0, 0, 1), "f", None),  # a coordinate without a function: identity
      ((1, 0, 0), None, None),
      ((0, 1, 0), None, None),
      ((1, 0, 0), None, None),
      ((0, 1, 0), "f", _xy(opensim.SimmSpline, KNOTS, ys)),  # renamed NaturalCubicSpline
      ((0, 0, 1), "g", _multiplier(_gcv(5, np.linspace(-1, 1, 8),
                                        0.1 + 0.05 * np.linspace(-1, 1, 8)**3), -0.8)),
  ])
  builder.write(path)
  # "NaturalCubicSpline" is the legacy name OpenSim reads as a SimmSpline: rename j2's.
  text = path.read_text()
  start = text.index('<CustomJoint name="j2">')
  tail, count = re.subn(r"<SimmSpline( [^>]*)?>(.*?)</SimmSpline>",
                        r"<NaturalCubicSpline\1>\2</NaturalCubicSpline>", text[start:],
                        count=1, flags=re.S)
  assert count == 1
  path.write_text(text[:start] + tail)
  return path


def test_custom_joint_functions_match_opensim(tmp_path):
  path = _custom_joint_model(tmp_path / "custom_joints.osim")
  assert "<NaturalCubicSpline" in path.read_text()
  model = load_osim(path)
  assert model.coordinate_names == ("a", "b", "c", "d", "e", "f", "g")
  _assert_matches_opensim(path, _poses(model.num_coordinates), model=model)


# ----------------------------------------------------------------------------------------
# 3. Coordinate couplers.

def _coupler_model(path):
  """j1's angle follows j0's through one spline coupler; j2's translation follows j1's angle
  through another (a chain), listed first so the compiler must order them."""
  builder = _Builder("couplers", seed=5)
  builder.joint("PinJoint", "j0", "ground", "b0")
  builder.joint("PinJoint", "j1", "b0", "b1")
  builder.custom_joint("j2", "b1", "b2", [
      ((0, 0, 1), "j2_r", None), ((1, 0, 0), None, None), ((0, 1, 0), None, None),
      ((1, 0, 0), "j2_t", None),
      ((0, 1, 0), "j2_t", _xy(opensim.SimmSpline, KNOTS, 0.1 * np.cos(KNOTS))),
      ((0, 0, 1), None, None)])
  spline_x = np.linspace(-1, 1, 6)
  builder.coupler("c2", "j2_t", "j1_coord_0",
                  _xy(opensim.SimmSpline, spline_x, 0.5 * np.sin(2 * spline_x) + 0.1), -0.2)
  builder.coupler("c1", "j1_coord_0", "j0_coord_0",
                  _xy(opensim.SimmSpline, spline_x, 0.5 * np.sin(2 * spline_x)), 1.3)
  return builder.write(path)


def test_coupler_chain_matches_opensim(tmp_path):
  path = _coupler_model(tmp_path / "couplers.osim")
  model = load_osim(path)
  assert model.coordinate_names == ("j0_coord_0", "j1_coord_0", "j2_r", "j2_t")
  assert model.couplers == ((1, 0), (3, 1))  # (dependent, independent), inputs first
  coords = _poses(model.num_coordinates)
  _assert_matches_opensim(path, coords, model=model)

  # The dependent entries of coords are ignored and recomputed.
  moved = coords.copy()
  moved[:, [1, 3]] += np.random.default_rng(2).uniform(-3, 3, (len(coords), 2))
  a, b = forward_kinematics(model, coords), forward_kinematics(model, moved)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


def test_helper_coupled_coordinates_satisfy_opensim_constraints(tmp_path):
  """opensim_helpers computes dependents as function(independent) * scale_factor; OpenSim's
  own constraint errors vanish there (and not at the given values)."""
  opensim_model, state = load_model(_coupler_model(tmp_path / "couplers.osim"))
  q = np.array([0.3, 5.0, 0.2, 5.0])
  pose(opensim_model, state, q)
  assert np.abs(np.array(state.getQErr().to_numpy())).max() > 1
  pose(opensim_model, state, apply_couplers(opensim_model, q))
  assert np.abs(np.array(state.getQErr().to_numpy())).max() < 1e-12


# ----------------------------------------------------------------------------------------
# 4. Scaling.
#
# OpenSim's Model.scale (SpatialTransform::scale in 4.5+) multiplies the function of every
# CustomJoint translation axis by |axis| . s_parent, with the axis as written (not
# normalised) and s_parent the scale factors of the joint's parent body, except axes whose
# function is exactly LinearFunction(1, 0) (a translational coordinate) and joints on ground
# (not in a ScaleSet). Offset frames and markers scale with the body they are fixed to.

_KNEE_ANGLES = np.linspace(-2.0944, 0.1745, 7)


def _knee_model(path):
  """A leg: a knee whose translations are splines of the knee angle on a non-uniformly
  scaled femur, plus the corner cases of OpenSim's scaling rule."""
  builder = _Builder("leg", seed=7)
  builder.custom_joint("ground_pelvis", "ground", "pelvis", [
      ((0, 0, 1), "pelvis_tilt", opensim.LinearFunction(1, 0)),
      ((1, 0, 0), "pelvis_list", opensim.LinearFunction(1, 0)),
      ((0, 1, 0), "pelvis_rotation", opensim.LinearFunction(1, 0)),
      ((1, 0, 0), "pelvis_tx", opensim.LinearFunction(1, 0)),
      ((0, 1, 0), "pelvis_ty", opensim.LinearFunction(1, 0)),
      # Oblique and not a plain coordinate, but on ground: never scaled.
      ((0, 0.6, 0.8), "pelvis_tz", opensim.LinearFunction(0.9, 0.01)),
  ])
  builder.custom_joint("hip", "pelvis", "femur", [
      ((0, 0, 1), "hip_flexion", None),
      ((1, 0, 0), "hip_adduction", None),
      ((0, 1, 0), "hip_rotation", None),
      ((1, 0, 0), None, None),
      ((0, 1, 0), None, opensim.Constant(0.02)),  # constants are scaled too
      ((0, 0, 1), None, None),
  ])
  builder.custom_joint("knee", "femur", "tibia", [
      ((0, 0, 1), "knee_angle", opensim.LinearFunction(1, 0)),
      ((1, 0, 0), None, None),
      ((0, 1, 0), None, None),
      ((1, 0, 0), "knee_angle", _xy(opensim.SimmSpline, _KNEE_ANGLES,
                                    0.005 * np.sin(_KNEE_ANGLES) - 0.003)),
      ((0, 1, 0), "knee_angle", _xy(opensim.SimmSpline, _KNEE_ANGLES,
                                    -0.4 + 0.004 * _KNEE_ANGLES**2)),
      ((0, 0, 1), None, None),
  ])
  builder.custom_joint("ankle", "tibia", "foot", [
      ((0, 0, 1), "ankle_angle", None),
      ((1, 0, 0), None, None),
      ((0, 1, 0), None, None),
      ((0.6, 0, -0.8), "ankle_angle",  # oblique: |axis| . s = 0.6 s_x + 0.8 s_z
       _multiplier(_xy(opensim.SimmSpline, _KNEE_ANGLES, 0.02 * np.cos(_KNEE_ANGLES)), 1.5)),
      ((0, 1, 0), "ankle_slide", opensim.LinearFunction(1, 0)),  # a coordinate: not scaled
      ((0, 0, 2), "ankle_angle", opensim.LinearFunction(0.01, 0.02)),  # weight 2 s_z
  ])
  builder.custom_joint("mtp", "foot", "toes", [
      ((0, 0, 1), "mtp_angle", None),
      ((1, 0, 0), None, None),
      ((0, 1, 0), None, None),
      ((1, 0, 0), "toe_slide", _multiplier(opensim.LinearFunction(1, 0), 1.0)),  # scaled
      ((0, -1, 0), None, opensim.Constant(0.01)),  # negative axis: weight |axis|
      ((0, 0, 1), "toe_lift", opensim.LinearFunction(1, 0.001)),  # not exactly (1, 0): scaled
  ])
  builder.joint("SliderJoint", "tag_slide", "tibia", "tag")  # slider coordinates never scale
  return builder.write(path)


def _knee_poses(model, n=12, seed=4):
  coords = _poses(model.num_coordinates, n=n, low=-0.5, high=0.5, seed=seed)
  knee = model.coordinate_index("knee_angle")
  rng = np.random.default_rng(seed)
  # Knee angles across the whole spline, and beyond both ends.
  coords[:, knee] = np.concatenate([rng.uniform(-2.4, 0.5, n), [-2.0944, 0.1745, -2.3, 0.4,
                                                                 -1.0]])
  return coords


def test_scaled_translation_axes_follow_opensim_rule(tmp_path):
  model = load_osim(_knee_model(tmp_path / "leg.osim"))
  joint = model.joint_index
  got = {(model.joint_names[e[0]], e[1]): e[2:] for e in model.scaled_translation_axes}
  assert got == {
      ("hip", 3): (1.0, 0.0, 0.0), ("hip", 4): (0.0, 1.0, 0.0), ("hip", 5): (0.0, 0.0, 1.0),
      ("knee", 3): (1.0, 0.0, 0.0), ("knee", 4): (0.0, 1.0, 0.0), ("knee", 5): (0.0, 0.0, 1.0),
      ("ankle", 3): (0.6, 0.0, 0.8), ("ankle", 5): (0.0, 0.0, 2.0),
      ("mtp", 3): (1.0, 0.0, 0.0), ("mtp", 4): (0.0, 1.0, 0.0), ("mtp", 5): (0.0, 0.0, 1.0),
  }
  assert joint("ground_pelvis") not in {e[0] for e in model.scaled_translation_axes}


def test_scaled_model_matches_opensim_model_scale(tmp_path):
  """forward_kinematics(unscaled model, scales=s) against OpenSim's Model.scale(s), for
  random non-uniform factors and for all-one factors, in one batch (per-pose scales).

  With all-one factors OpenSim still multiplies oblique translation axes by |axis| . 1 (here
  the ankle's by 1.4 and 2), and so does forward_kinematics with scales=ones."""
  path = _knee_model(tmp_path / "leg.osim")
  model = load_osim(path)
  random = np.random.default_rng(6).uniform(0.75, 1.3, (model.num_bodies, 3))
  random[model.body_index("femur")] = [0.85, 1.25, 1.1]  # the knee's parent, non-uniform
  ones = np.ones((model.num_bodies, 3))
  coords = _knee_poses(model)
  expected = [opensim_fk(path, coords, scale_factors) for scale_factors in (random, ones)]
  expected = {k: np.concatenate([e[k] for e in expected])
              for k in ("body_transforms", "joint_origins", "markers")}
  scales = np.concatenate([np.broadcast_to(s, (len(coords),) + s.shape) for s in (random, ones)])
  out = forward_kinematics(model, np.concatenate([coords, coords]), scales=scales)
  _assert_close(out, expected)


def test_model_written_after_opensim_scale_matches_opensim(tmp_path):
  """The file OpenSim writes after Model.scale (translation functions wrapped in
  MultiplierFunctions, offsets and markers scaled) compiles to the same kinematics."""
  path = _knee_model(tmp_path / "leg.osim")
  scales = np.random.default_rng(8).uniform(0.75, 1.3, (load_osim(path).num_bodies, 3))
  scaled_path = write_scaled_model(path, scales, tmp_path / "leg_scaled.osim")
  scaled_model = load_osim(scaled_path)
  assert "MultiplierFunction" in scaled_path.read_text()
  _assert_matches_opensim(scaled_path, _knee_poses(scaled_model), model=scaled_model)


# ----------------------------------------------------------------------------------------
# 5. Unsupported constructs and malformed files.

def _assert_osim_error(path, *fragments):
  with pytest.raises(OsimError) as error:
    load_osim(path)
  message = str(error.value)
  assert str(path) in message
  for fragment in fragments:
    assert fragment in message, message
  return message


@pytest.mark.parametrize("kind", ["EllipsoidJoint", "ScapulothoracicJoint"])
def test_unsupported_joint_type_is_named(kind, tmp_path):
  builder = _Builder(kind)
  builder.joint("PinJoint", "root", "ground", "thorax")
  if kind == "EllipsoidJoint":
    extra = (_vec(0.07, 0.15, 0.07),)
  else:
    extra = (_vec(0.07, 0.15, 0.07), opensim.Vec2(0.1, -0.2), 0.3)
  builder.joint(kind, "scapula_joint", "thorax", "scapula", *extra)
  path = builder.write(tmp_path / f"{kind}.osim")
  _assert_osim_error(path, "'scapula_joint'", kind, "not supported")


def test_unsupported_axis_function_is_named(tmp_path):
  builder = _Builder("sine_axis")
  builder.custom_joint("hip", "ground", "femur", [
      ((0, 0, 1), "hip_flexion", None), ((1, 0, 0), None, None), ((0, 1, 0), None, None),
      ((1, 0, 0), "hip_flexion", opensim.Sine(0.1, 2.0, 0.3)),
      ((0, 1, 0), None, None), ((0, 0, 1), None, None)])
  path = builder.write(tmp_path / "sine_axis.osim")
  _assert_osim_error(path, "'hip'", "translation1", "Sine", "not supported")


def test_unsupported_coupler_function_is_named(tmp_path):
  builder = _Builder("sine_coupler")
  builder.joint("PinJoint", "j0", "ground", "b0")
  builder.joint("PinJoint", "j1", "b0", "b1")
  builder.coupler("wobble", "j1_coord_0", "j0_coord_0", opensim.Sine(0.5, 3.0, 0.0), 1.0)
  path = builder.write(tmp_path / "sine_coupler.osim")
  _assert_osim_error(path, "'wobble'", "CoordinateCouplerConstraint", "Sine", "not supported")


def test_not_xml_is_an_osim_error(tmp_path):
  path = tmp_path / "garbage.osim"
  path.write_text("this is not <xml")
  _assert_osim_error(path, "not a well-formed XML file")


def test_xml_that_is_not_a_model_is_an_osim_error(tmp_path):
  path = tmp_path / "other.osim"
  path.write_text('<?xml version="1.0"?>\n<OpenSimDocument Version="40000">'
                  "<Storage/></OpenSimDocument>\n")
  _assert_osim_error(path, "not an OpenSim model")
  path.write_text('<?xml version="1.0"?>\n<svg><g/></svg>\n')
  _assert_osim_error(path, "not an OpenSim model")


def test_model_opensim_cannot_build_is_an_osim_error(tmp_path):
  builder = _Builder("dangling")
  builder.joint("PinJoint", "j0", "ground", "b0")
  path = builder.write(tmp_path / "dangling.osim")
  text = path.read_text()
  assert "<socket_parent>/bodyset/b0</socket_parent>" in text
  path.write_text(text.replace("<socket_parent>/bodyset/b0</socket_parent>",
                               "<socket_parent>/bodyset/no_such_body</socket_parent>"))
  _assert_osim_error(path, "OpenSim could not build the model")


def test_missing_file_is_file_not_found(tmp_path):
  with pytest.raises(FileNotFoundError, match="no_such_model.osim"):
    load_osim(tmp_path / "no_such_model.osim")
