"""OpenSim's own forward kinematics, for comparing against ``forward_kinematics``.

Everything here runs the ``opensim`` package (4.6 in the test environment) directly and
reads poses in the ground frame, in OpenSim's component order (CoordinateSet, BodySet,
JointSet, MarkerSet), which is also the order ``load_osim`` compiles them in.
"""

import os

import numpy as np
import opensim

from d3ke_jax.skeleton.scaling import opensim_scale_set

opensim.Logger.setLevelString("error")


def _vec3(v):
  return np.array([v.get(i) for i in range(3)], float)


def _names(component_set):
  return [component_set.get(i).getName() for i in range(component_set.getSize())]


def body_names(model):
  return _names(model.getBodySet())


def scale_set(model, scale_factors):
  """An ``opensim.ScaleSet`` from (B, 3) factors in BodySet order or a {body: (3,)} dict.

  Bodies missing from a dict get no entry (OpenSim then leaves them and the components
  fixed to them unscaled).
  """
  if not isinstance(scale_factors, dict):
    factors = np.asarray(scale_factors, float).reshape(-1, 3)
    names = body_names(model)
    if len(factors) != len(names):
      raise ValueError(f"expected {len(names)} scale triples, got {len(factors)}")
    scale_factors = dict(zip(names, factors))
  return opensim_scale_set(scale_factors)


def load_model(osim_path, scale_factors=None):
  """(model, state) of an OpenSim model, scaled by ``Model.scale`` when factors are given.

  Scaling uses preserveMassDistribution=False, as the Scale tool does for geometry.
  """
  model = opensim.Model(os.fspath(osim_path))
  state = model.initSystem()
  if scale_factors is not None:
    if not model.scale(state, scale_set(model, scale_factors), False):
      raise RuntimeError(f"{osim_path}: Model.scale failed")
    state = model.initSystem()
  return model, state


def write_scaled_model(osim_path, scale_factors, out_path):
  """Scales a model file with ``Model.scale`` and writes the result to ``out_path``."""
  model, _ = load_model(osim_path, scale_factors)
  model.printToXML(os.fspath(out_path))
  return out_path


def enforced_couplers(model):
  """[(dependent, independent, opensim function, scale factor)] of enforced couplers.

  Ordered so that a coupler whose independent coordinate is itself coupled comes after
  the coupler that computes it.
  """
  found = []
  constraints = model.getConstraintSet()
  for i in range(constraints.getSize()):
    constraint = constraints.get(i)
    if constraint.getConcreteClassName() != "CoordinateCouplerConstraint":
      continue
    coupler = opensim.CoordinateCouplerConstraint.safeDownCast(constraint)
    if not coupler.get_isEnforced():
      continue
    independents = coupler.getIndependentCoordinateNames()
    assert independents.getSize() == 1, "couplers of one independent coordinate only"
    scale = opensim.PropertyHelper.getValueDouble(coupler.getPropertyByName("scale_factor"))
    found.append((coupler.getDependentCoordinateName(), independents.get(0),
                  coupler.getFunction(), scale))
  ordered, done = [], set()
  dependents = {d for d, _, _, _ in found}
  while len(ordered) < len(found):
    progress = False
    for entry in found:
      d, i = entry[0], entry[1]
      if d not in done and (i not in dependents or i in done):
        ordered.append(entry)
        done.add(d)
        progress = True
    if not progress:
      raise ValueError("coordinate couplers form a cycle")
  return ordered


def apply_couplers(model, coords):
  """Coordinates (C,) with every enforced coupler's dependent recomputed, as OpenSim's
  constraint would hold it: value = function(independent) * scale_factor."""
  coords = np.array(coords, float)
  names = _names(model.getCoordinateSet())
  for dependent, independent, function, scale in enforced_couplers(model):
    x = coords[names.index(independent)]
    coords[names.index(dependent)] = function.calcValue(opensim.Vector(1, float(x))) * scale
  return coords


def pose(model, state, coords):
  """Sets all coordinates (no constraint projection) and realizes positions."""
  coordinate_set = model.getCoordinateSet()
  for c in range(coordinate_set.getSize()):
    coordinate_set.get(c).setValue(state, float(coords[c]), False)
  model.realizePosition(state)


def ground_poses(model, state):
  """(body transforms (B, 4, 4), joint child-frame origins (J, 3), markers (M, 3))."""
  bodies = model.getBodySet()
  transforms = np.zeros((bodies.getSize(), 4, 4))
  for b in range(bodies.getSize()):
    transform = bodies.get(b).getTransformInGround(state)  # keep alive while reading
    rotation = transform.R().asMat33()
    transforms[b, :3, :3] = [[rotation.get(i, j) for j in range(3)] for i in range(3)]
    transforms[b, :3, 3] = _vec3(transform.p())
    transforms[b, 3, 3] = 1.0
  joints = model.getJointSet()
  origins = np.array([_vec3(joints.get(j).getChildFrame().getPositionInGround(state))
                      for j in range(joints.getSize())]).reshape(-1, 3)
  markers = model.getMarkerSet()
  points = np.array([_vec3(markers.get(m).getLocationInGround(state))
                     for m in range(markers.getSize())]).reshape(-1, 3)
  return transforms, origins, points


def opensim_fk(osim_path, coords, scale_factors=None, enforce_couplers=True):
  """OpenSim's forward kinematics of a model file at each pose.

  Args:
    osim_path: the model file.
    coords: (N, C) coordinate values in CoordinateSet order (radians, metres).
    scale_factors: optional (B, 3) per-body factors in BodySet order (or {body: (3,)});
      the model is then scaled once with ``Model.scale`` before posing. An array lists
      every body in the ScaleSet, as ``forward_kinematics(..., scales=...)`` assumes: OpenSim
      then multiplies each CustomJoint translation function (other than LinearFunction(1, 0))
      by |axis| . s_parent, which is not 1 for oblique axes even when s_parent is all ones.
    enforce_couplers: recompute coordinates driven by enforced CoordinateCouplerConstraints
      from their independent coordinates (``Coordinate.setValue`` with
      enforceConstraints=False does not), so the given dependent values are ignored.

  Returns:
    dict of body_transforms (N, B, 4, 4), joint_origins (N, J, 3), markers (N, M, 3),
    coordinates (N, C) as posed, and the coordinate/body/joint/marker names.
  """
  model, state = load_model(osim_path, scale_factors)
  coords = np.atleast_2d(np.asarray(coords, float))
  out = {"body_transforms": [], "joint_origins": [], "markers": [], "coordinates": []}
  for q in coords:
    if enforce_couplers:
      q = apply_couplers(model, q)
    pose(model, state, q)
    transforms, origins, markers = ground_poses(model, state)
    out["body_transforms"].append(transforms)
    out["joint_origins"].append(origins)
    out["markers"].append(markers)
    out["coordinates"].append(q)
  out = {k: np.array(v) for k, v in out.items()}
  out["markers"] = out["markers"].reshape(len(coords), -1, 3)
  out.update(coordinate_names=_names(model.getCoordinateSet()),
             body_names=_names(model.getBodySet()), joint_names=_names(model.getJointSet()),
             marker_names=_names(model.getMarkerSet()))
  return out
