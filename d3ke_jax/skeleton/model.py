"""``SkeletalModel``: an OpenSim model compiled into arrays.

Topology (names, parents, level order, which axis reads which coordinate) is static pytree
metadata; geometry (offsets, axes, function tables, ranges) is NumPy leaves, cast to the
dtype of the inputs inside forward kinematics, so one model serves float32 and float64.
"""

from typing import Tuple

import flax.struct
import numpy as np

from d3ke_jax.skeleton.functions import PiecewisePolynomial

GROUND = -1  # parent index of joints attached to ground


@flax.struct.dataclass
class SkeletalModel:
  """Bodies, joints, coordinates and markers of one OpenSim model.

  Joints are in OpenSim order; ``joint_child_body[j]`` is the body that joint j moves and
  ``joint_parent_body[j]`` its parent (``GROUND`` for ground). Every joint is a spatial
  transform: three rotation axes applied in sequence (body-fixed), then three translation
  axes in the parent frame, each axis value a function of one coordinate or a constant.
  """
  # Geometry and coordinate data (pytree leaves).
  coordinate_defaults: np.ndarray  # (C,)
  coordinate_ranges: np.ndarray  # (C, 2)
  coordinate_locked: np.ndarray  # (C,) bool
  coordinate_clamped: np.ndarray  # (C,) bool
  parent_rotation: np.ndarray  # (J, 3, 3) parent offset frame in the parent body
  parent_translation: np.ndarray  # (J, 3)
  child_rotation: np.ndarray  # (J, 3, 3) child offset frame in the child body
  child_translation: np.ndarray  # (J, 3)
  axes: np.ndarray  # (J, 6, 3) unit axes: rotation 1-3, translation 1-3
  axis_constants: np.ndarray  # (J, 6) value of axes that read no coordinate
  axis_functions: PiecewisePolynomial  # one row per axis that reads a coordinate
  coupler_functions: PiecewisePolynomial  # one row per enforced coordinate coupler
  marker_offsets: np.ndarray  # (M, 3) in the marker's body frame
  default_scales: np.ndarray  # (B, 3) the model's body scale factors (beta)

  # Topology (static).
  name: str = flax.struct.field(pytree_node=False)
  source: str = flax.struct.field(pytree_node=False)
  coordinate_names: Tuple[str, ...] = flax.struct.field(pytree_node=False)
  coordinate_types: Tuple[str, ...] = flax.struct.field(pytree_node=False)
  body_names: Tuple[str, ...] = flax.struct.field(pytree_node=False)
  joint_names: Tuple[str, ...] = flax.struct.field(pytree_node=False)
  joint_types: Tuple[str, ...] = flax.struct.field(pytree_node=False)
  marker_names: Tuple[str, ...] = flax.struct.field(pytree_node=False)
  joint_parent_body: Tuple[int, ...] = flax.struct.field(pytree_node=False)
  joint_child_body: Tuple[int, ...] = flax.struct.field(pytree_node=False)
  marker_body: Tuple[int, ...] = flax.struct.field(pytree_node=False)
  # levels[l] = joints whose parent body is moved by a joint in levels[l - 1].
  levels: Tuple[Tuple[int, ...], ...] = flax.struct.field(pytree_node=False)
  # (joint, axis 0..5, coordinate) for each row of axis_functions.
  axis_inputs: Tuple[Tuple[int, int, int], ...] = flax.struct.field(pytree_node=False)
  # Translation axes whose value OpenSim scales with the parent body, as (joint, axis 3..5,
  # wx, wy, wz): Model.scale multiplies the axis value by (wx, wy, wz) . s_parent.
  scaled_translation_axes: Tuple[Tuple[float, ...], ...] = flax.struct.field(pytree_node=False)
  # (dependent, independent) coordinate for each row of coupler_functions, in an order
  # where every independent coordinate is final before it is read.
  couplers: Tuple[Tuple[int, int], ...] = flax.struct.field(pytree_node=False)

  @property
  def num_coordinates(self):
    return len(self.coordinate_names)

  @property
  def num_bodies(self):
    return len(self.body_names)

  @property
  def num_joints(self):
    return len(self.joint_names)

  @property
  def num_markers(self):
    return len(self.marker_names)

  @property
  def root_joint(self):
    """The first joint attached to ground (ground_pelvis in the full-body models)."""
    return self.levels[0][0]

  @property
  def root_body(self):
    return self.joint_child_body[self.root_joint]

  @property
  def independent_coordinates(self):
    """Indices of coordinates not computed from others by an enforced coupler."""
    dependent = {d for d, _ in self.couplers}
    return tuple(i for i in range(self.num_coordinates) if i not in dependent)

  def coordinate_index(self, name):
    return _index(self.coordinate_names, name, "coordinate", self.source)

  def body_index(self, name):
    return _index(self.body_names, name, "body", self.source)

  def joint_index(self, name):
    return _index(self.joint_names, name, "joint", self.source)

  def marker_index(self, name):
    return _index(self.marker_names, name, "marker", self.source)


def _index(names, name, kind, source):
  try:
    return names.index(name)
  except ValueError:
    raise KeyError(f"{source}: the model has no {kind} named {name!r}") from None


def root_relative(points, joints, root_joint):
  """``points`` (..., K, 3) relative to the origin of joint ``root_joint`` of ``joints``
  (..., J, 3) (NumPy or JAX arrays): how positions are compared (losses, MPBLPE) and
  placed on another skeleton."""
  return points - joints[..., root_joint, None, :]


def body_points(model: SkeletalModel):
  """Points fixed to each body, in its frame: its origin, its markers and the joint centres
  of its children. A list of (n_b, 3) arrays, one per body."""
  points = [[np.zeros(3)] for _ in range(model.num_bodies)]
  for body, offset in zip(model.marker_body, np.asarray(model.marker_offsets)):
    points[body].append(offset)
  for parent, offset in zip(model.joint_parent_body, np.asarray(model.parent_translation)):
    if parent != GROUND:
      points[parent].append(offset)
  return [np.array(p) for p in points]
