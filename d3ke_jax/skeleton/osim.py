"""Compile an OpenSim ``.osim`` file into a ``SkeletalModel`` with the ``opensim`` package."""

import collections
import logging
import os
import xml.etree.ElementTree as ET

import numpy as np

from d3ke_jax.errors import UserError
from d3ke_jax.skeleton import functions
from d3ke_jax.skeleton.model import GROUND, SkeletalModel

_X, _Y, _Z = np.eye(3)
# Joints with fixed axes, as (rotation axes, translation axes, coordinate of each axis).
# Rotations are body-fixed in sequence; translations along the parent offset frame's axes.
_FIXED_AXIS_JOINTS = {
    "WeldJoint": ((_X, _Y, _Z), (_X, _Y, _Z), (None,) * 6),
    "PinJoint": ((_Z, _X, _Y), (_X, _Y, _Z), (0, None, None, None, None, None)),
    "SliderJoint": ((_X, _Y, _Z), (_X, _Y, _Z), (None, None, None, 0, None, None)),
    "UniversalJoint": ((_X, _Y, _Z), (_X, _Y, _Z), (0, 1, None, None, None, None)),
    "GimbalJoint": ((_X, _Y, _Z), (_X, _Y, _Z), (0, 1, 2, None, None, None)),
    "BallJoint": ((_X, _Y, _Z), (_X, _Y, _Z), (0, 1, 2, None, None, None)),
    "FreeJoint": ((_X, _Y, _Z), (_X, _Y, _Z), (0, 1, 2, 3, 4, 5)),
    "PlanarJoint": ((_Z, _X, _Y), (_X, _Y, _Z), (0, None, None, 1, 2, None)),
}
_FIT_TOLERANCE = 1e-8


class OsimError(UserError, ValueError):
  """A model file that cannot be read or holds a construct d3ke-jax does not support."""


def default_model_path():
  """The project's own full-body model (9-segment spine), the default everywhere."""
  return os.path.join(os.path.dirname(__file__), "models", "d3ke_full_body.osim")


def load_osim(path=None):
  """Reads an OpenSim model file and compiles it into a ``SkeletalModel``.

  Args:
    path: an ``.osim`` file; default: ``default_model_path()``.

  Raises:
    FileNotFoundError: the file does not exist.
    OsimError: the file is not a valid OpenSim model, or uses an unsupported construct
      (the message names the file, the component and the construct).
  """
  path = default_model_path() if path is None else os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such OpenSim model file")
  try:
    root = ET.parse(path).getroot()
  except ET.ParseError as e:
    raise OsimError(f"{path}: not a well-formed XML file ({e})") from None
  if root.tag != "OpenSimDocument" or root.find("Model") is None:
    raise OsimError(f"{path}: not an OpenSim model (expected <OpenSimDocument><Model>)")
  osim = _import_opensim()
  try:
    model = osim.Model(path)
    model.initSystem()  # connects sockets and makes CustomJoint axes independent
  except Exception as e:  # OpenSim raises RuntimeError with its own message
    raise OsimError(f"{path}: OpenSim could not build the model: {e}") from None
  return _Compiler(osim, model, path).compile()


def _import_opensim():
  try:
    import opensim  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("reading .osim files needs the `opensim` package "
                      "(pip install opensim)") from e
  opensim.Logger.setLevelString("error")
  return opensim


def _vec3(v):
  return np.array([v.get(i) for i in range(3)], float)


def _transform_in_base(osim, frame):
  """(rotation, translation, base frame name) of a frame in the body it is fixed to."""
  transform = frame.findTransformInBaseFrame()
  mat = transform.R().asMat33()
  rotation = np.array([[mat.get(i, j) for j in range(3)] for i in range(3)])
  return rotation, _vec3(transform.p()), frame.findBaseFrame().getName()


class _Compiler:
  """One pass over an initialised ``opensim.Model``."""

  def __init__(self, osim, model, path):
    self.osim, self.model, self.path = osim, model, path
    self.coordinate_names = _names(model.getCoordinateSet())
    self.body_names = _names(model.getBodySet())

  def error(self, component, problem):
    return OsimError(f"{self.path}: {component}: {problem}")

  def compile(self):
    joints = [self.model.getJointSet().get(i) for i in range(self.model.getJointSet().getSize())]
    if not joints:
      raise self.error("model", "has no joints")
    parsed = [self._joint(j) for j in joints]
    parent = tuple(p["parent"] for p in parsed)
    child = tuple(p["child"] for p in parsed)
    axis_rows, axis_inputs, scaled_axes = [], [], []
    for j, p in enumerate(parsed):
      for a, (coordinate, poly) in enumerate(p["axis_functions"]):
        if coordinate is not None:
          axis_rows.append(poly)
          axis_inputs.append((j, a, coordinate))
        weights = p["scale_weights"][a]
        if weights is not None and p["parent"] != GROUND:  # ground has no scale factors
          scaled_axes.append((j, a) + tuple(float(w) for w in weights))
    couplers, coupler_rows = self._couplers()
    markers = self._markers()
    coords = self.model.getCoordinateSet()
    coordinate_list = [coords.get(i) for i in range(coords.getSize())]
    return SkeletalModel(
        coordinate_defaults=np.array([c.getDefaultValue() for c in coordinate_list]),
        coordinate_ranges=np.array([[c.getRangeMin(), c.getRangeMax()]
                                    for c in coordinate_list]).reshape(-1, 2),
        coordinate_locked=np.array([c.getDefaultLocked() for c in coordinate_list], bool),
        coordinate_clamped=np.array([c.getDefaultClamped() for c in coordinate_list], bool),
        parent_rotation=np.stack([p["parent_rotation"] for p in parsed]),
        parent_translation=np.stack([p["parent_translation"] for p in parsed]),
        child_rotation=np.stack([p["child_rotation"] for p in parsed]),
        child_translation=np.stack([p["child_translation"] for p in parsed]),
        axes=np.stack([p["axes"] for p in parsed]),
        axis_constants=np.array([[0.0 if c is not None else float(poly(0.0))
                                  for c, poly in p["axis_functions"]] for p in parsed]),
        axis_functions=functions.pad_table(axis_rows),
        coupler_functions=functions.pad_table(coupler_rows),
        marker_offsets=np.array([m[1] for m in markers]).reshape(-1, 3),
        default_scales=self._default_scales(),
        name=self.model.getName(),
        source=self.path,
        coordinate_names=tuple(self.coordinate_names),
        coordinate_types=tuple(_motion_type(self.osim, c) for c in coordinate_list),
        body_names=tuple(self.body_names),
        joint_names=tuple(j.getName() for j in joints),
        joint_types=tuple(p["type"] for p in parsed),
        marker_names=tuple(m[2] for m in markers),
        joint_parent_body=parent,
        joint_child_body=child,
        marker_body=tuple(m[0] for m in markers),
        levels=self._levels(parent, child, [j.getName() for j in joints]),
        axis_inputs=tuple(axis_inputs),
        scaled_translation_axes=tuple(scaled_axes),
        couplers=couplers,
    )

  def _body_index(self, frame_name, component):
    if frame_name == "ground":
      return GROUND
    if frame_name not in self.body_names:
      raise self.error(component, f"is attached to {frame_name!r}, which is not a body")
    return self.body_names.index(frame_name)

  def _joint(self, joint):
    name, kind = joint.getName(), joint.getConcreteClassName()
    where = f"joint {name!r} ({kind})"
    if kind != "CustomJoint" and kind not in _FIXED_AXIS_JOINTS:
      raise self.error(where, f"joint type {kind} is not supported (supported: CustomJoint, "
                       f"{', '.join(sorted(_FIXED_AXIS_JOINTS))})")
    parent_rotation, parent_translation, parent_base = _transform_in_base(
        self.osim, joint.getParentFrame())
    child_rotation, child_translation, child_base = _transform_in_base(
        self.osim, joint.getChildFrame())
    out = dict(type=kind, parent=self._body_index(parent_base, where),
               child=self._body_index(child_base, where),
               parent_rotation=parent_rotation, parent_translation=parent_translation,
               child_rotation=child_rotation, child_translation=child_translation)
    if out["child"] == GROUND:
      raise self.error(where, "moves ground; the child frame must belong to a body")
    joint_coordinates = [joint.get_coordinates(i).getName()
                         for i in range(joint.numCoordinates())]
    if kind == "CustomJoint":
      transform = self.osim.CustomJoint.safeDownCast(joint).getSpatialTransform()
      axes, axis_functions, scale_weights = [], [], [None] * 6
      for i in range(6):
        axis = transform.getTransformAxis(i)
        axes.append(_vec3(axis.getAxis()))
        axis_functions.append(self._axis_function(axis, f"{where} axis {axis.getName()}"))
        if i >= 3 and self._scaled_by_opensim(axis):
          # OpenSim's SpatialTransform::scale multiplies the function by |axis| . s_parent,
          # with the axis as written (not normalised).
          scale_weights[i] = np.abs(axes[-1])
      out["scale_weights"] = scale_weights
    else:
      out["scale_weights"] = [None] * 6  # coordinates of fixed-axis joints are not scaled
      rotations, translations, uses = _FIXED_AXIS_JOINTS[kind]
      axes = list(rotations) + list(translations)
      axis_functions = [
          (None, functions.Polynomial.constant(0.0)) if u is None else
          (self.coordinate_names.index(joint_coordinates[u]), functions.Polynomial.linear(1, 0))
          for u in uses]
    axes = np.array(axes)
    norms = np.linalg.norm(axes, axis=1, keepdims=True)
    if np.any(norms < 1e-12):
      raise self.error(where, "has an axis of zero length")
    out["axes"] = axes / norms
    out["axis_functions"] = axis_functions
    return out

  def _scaled_by_opensim(self, axis):
    """Whether ``Model.scale`` scales a translation axis's function: OpenSim skips axes
    without one and those whose function is exactly LinearFunction(slope 1, intercept 0)
    (the axis is a coordinate); a MultiplierFunction of that is scaled."""
    if not axis.hasFunction():
      return False
    function = axis.getFunction()
    if function.getConcreteClassName() != "LinearFunction":
      return True
    linear = self.osim.LinearFunction.safeDownCast(function)
    return not (linear.getSlope() == 1.0 and linear.getIntercept() == 0.0)

  def _axis_function(self, axis, where):
    names = axis.getCoordinateNamesInArray()
    if names.getSize() > 1:
      raise self.error(where, "functions of several coordinates are not supported")
    coordinate = None
    if names.getSize() == 1:
      if names.get(0) not in self.coordinate_names:
        raise self.error(where, f"reads unknown coordinate {names.get(0)!r}")
      coordinate = self.coordinate_names.index(names.get(0))
    if not axis.hasFunction():
      poly = functions.Polynomial.linear(1, 0) if coordinate is not None else (
          functions.Polynomial.constant(0.0))
    else:
      poly = self._polynomial(axis.getFunction(), where)
    return coordinate, poly

  def _polynomial(self, function, where):
    """The piecewise polynomial equal to an OpenSim function, checked against OpenSim."""
    osim = self.osim
    kind = function.getConcreteClassName()
    if kind == "Constant":
      return functions.Polynomial.constant(osim.Constant.safeDownCast(function).getValue())
    if kind == "LinearFunction":
      linear = osim.LinearFunction.safeDownCast(function)
      return functions.Polynomial.linear(linear.getSlope(), linear.getIntercept())
    if kind == "MultiplierFunction":
      multiplier = osim.MultiplierFunction.safeDownCast(function)
      return self._polynomial(multiplier.getFunction(), where).scaled(multiplier.getScale())
    if function.getArgumentSize() != 1:
      raise self.error(where, f"{kind} of {function.getArgumentSize()} arguments is not supported")
    knots = []
    if osim.XYFunctionInterface.isXYFunction(function):
      xy = osim.XYFunctionInterface(function)
      knots = [xy.getX(i) for i in range(xy.getNumberOfPoints())]

    def evaluate(x):
      return function.calcValue(osim.Vector(1, float(x)))

    poly = functions.fit_piecewise(evaluate, knots)
    probe = np.concatenate([np.asarray(knots, float), np.linspace(-7.0, 7.0, 29)])
    if len(knots) > 1:
      probe = np.concatenate([probe, 0.5 * (np.asarray(knots[1:]) + knots[:-1]),
                              np.linspace(knots[0] - 2, knots[-1] + 2, 57)])
    expected = np.array([evaluate(x) for x in probe])
    error = np.max(np.abs(poly(probe) - expected))
    if not error <= _FIT_TOLERANCE * (1 + np.max(np.abs(expected))):
      raise self.error(where, f"function {kind} is not a piecewise polynomial of degree <= "
                       f"{functions.MAX_DEGREE} between its knots (fit error {error:.3g}); "
                       "it is not supported")
    return poly

  def _couplers(self):
    """Enforced CoordinateCouplerConstraints, ordered so inputs are computed first."""
    osim, found, others = self.osim, {}, []
    constraints = self.model.getConstraintSet()
    for i in range(constraints.getSize()):
      constraint = constraints.get(i)
      kind, name = constraint.getConcreteClassName(), constraint.getName()
      if kind != "CoordinateCouplerConstraint":
        others.append(f"{name} ({kind})")
        continue
      coupler = osim.CoordinateCouplerConstraint.safeDownCast(constraint)
      if not coupler.get_isEnforced():
        continue
      where = f"constraint {name!r} (CoordinateCouplerConstraint)"
      independents = coupler.getIndependentCoordinateNames()
      if independents.getSize() != 1:
        raise self.error(where, "couplers of several independent coordinates are not supported")
      dependent = self._coordinate(coupler.getDependentCoordinateName(), where)
      independent = self._coordinate(independents.get(0), where)
      scale = osim.PropertyHelper.getValueDouble(coupler.getPropertyByName("scale_factor"))
      poly = self._polynomial(coupler.getFunction(), where).scaled(scale)
      if dependent in found:
        raise self.error(where, f"coordinate {self.coordinate_names[dependent]!r} is "
                         "driven by two enforced couplers")
      found[dependent] = (independent, poly, where)
    if others:
      logging.warning("%s: ignoring constraints forward kinematics does not use: %s",
                      self.path, ", ".join(others))
    order, done = [], set()
    while len(order) < len(found):
      ready = [d for d, (i, _, _) in found.items()
               if d not in done and (i not in found or i in done)]
      if not ready:
        cycle = [found[d][2] for d in found if d not in done]
        raise self.error(cycle[0], "coordinate couplers form a cycle")
      for d in sorted(ready):
        order.append(d)
        done.add(d)
    return (tuple((d, found[d][0]) for d in order), [found[d][1] for d in order])

  def _coordinate(self, name, where):
    if name not in self.coordinate_names:
      raise self.error(where, f"names unknown coordinate {name!r}")
    return self.coordinate_names.index(name)

  def _markers(self):
    """(body, offset in body, name) of every marker, in model order."""
    out, markers = [], self.model.getMarkerSet()
    for i in range(markers.getSize()):
      marker = markers.get(i)
      where = f"marker {marker.getName()!r}"
      rotation, translation, base = _transform_in_base(self.osim, marker.getParentFrame())
      body = self._body_index(base, where)
      if body == GROUND:
        raise self.error(where, "is fixed to ground; only markers on bodies are supported")
      out.append((body, translation + rotation @ _vec3(marker.get_location()), marker.getName()))
    return out

  def _default_scales(self):
    """Per-body scale factors: those of the body's first attached geometry, else ones."""
    scales = np.ones((len(self.body_names), 3))
    bodies = self.model.getBodySet()
    for b in range(bodies.getSize()):
      body = bodies.get(b)
      if body.getPropertyByName("attached_geometry").size() > 0:
        scales[b] = _vec3(body.get_attached_geometry(0).get_scale_factors())
    return scales

  def _levels(self, parent, child, names):
    """Joints grouped by depth: level 0 hangs from ground, level l from level l - 1."""
    mover = {}
    for j, body in enumerate(child):
      if body in mover:
        raise self.error(f"joint {names[j]!r}", f"moves body {self.body_names[body]!r}, which "
                         f"joint {names[mover[body]]!r} already moves (kinematic loop)")
      mover[body] = j
    unmoved = set(range(len(self.body_names))) - set(mover)
    if unmoved:
      raise self.error(f"body {self.body_names[min(unmoved)]!r}", "is not moved by any joint")
    depth = {}
    for j in range(len(parent)):
      chain, k = [], j
      while k not in depth:
        if k in chain:
          raise self.error(f"joint {names[k]!r}", "is part of a kinematic loop")
        chain.append(k)
        if parent[k] == GROUND:
          depth[k] = 0
          break
        k = mover[parent[k]]
      for c in reversed(chain):
        depth.setdefault(c, depth.get(mover.get(parent[c]), -1) + 1)
    levels = collections.defaultdict(list)
    for j in range(len(parent)):
      levels[depth[j]].append(j)
    return tuple(tuple(levels[d]) for d in range(len(levels)))


def _names(component_set):
  return [component_set.get(i).getName() for i in range(component_set.getSize())]


def _motion_type(osim, coordinate):
  return {osim.Coordinate.Rotational: "rotational", osim.Coordinate.Translational:
          "translational"}.get(coordinate.getMotionType(), "coupled")
