"""Map the subset of coordinates and body scales a network predicts to the model's vectors.

D3KE predicts some coordinates (the rest keep their defaults) and one scale triple per
body group (a body, or a left/right pair sharing scales); this module expands them to the
full ``coords`` and ``scales`` that ``forward_kinematics`` takes.
"""

from typing import Optional, Sequence, Tuple

import flax.struct
import jax.numpy as jnp
import numpy as np

from d3ke_jax.skeleton.model import SkeletalModel


@flax.struct.dataclass
class PredictionLayout:
  """Which model entries a prediction fills.

  Attributes:
    coordinates: model index of each predicted coordinate.
    body_groups: for each predicted scale triple, the model indices of the bodies it scales.
    group_names: a name per group (the right-side or unsided body name).
  """
  coordinates: Tuple[int, ...] = flax.struct.field(pytree_node=False)
  body_groups: Tuple[Tuple[int, ...], ...] = flax.struct.field(pytree_node=False)
  group_names: Tuple[str, ...] = flax.struct.field(pytree_node=False)

  @property
  def num_coordinates(self):
    return len(self.coordinates)

  @property
  def num_scale_groups(self):
    return len(self.body_groups)


def mirror_of(name, names):
  """The left-side twin of a body name (``x_r`` or ``x`` -> ``x_l``), if the model has one."""
  stem = name[:-2] if name.endswith("_r") else name
  twin = stem + "_l"
  return twin if twin != name and twin in names and not name.endswith("_l") else None


def make_layout(model: SkeletalModel, coordinates: Optional[Sequence[str]] = None,
                bodies: Optional[Sequence[str]] = None, share_mirrored: bool = True,
                include_root: bool = True):
  """A ``PredictionLayout`` for the named coordinates and bodies.

  Args:
    model: the skeletal model.
    coordinates: names of predicted coordinates; default: every independent, unlocked one
      (without the root joint's when ``include_root`` is False, as in D3KE, which predicts
      the pelvis rotation directly and ignores its translation).
    bodies: names of bodies with predicted scales; default: all bodies.
    share_mirrored: left bodies share the scales of their right twin (``femur_l`` uses
      ``femur_r``'s, ``humerus_l`` uses ``humerus``'s) when both are predicted.
  """
  if coordinates is None:
    locked = np.asarray(model.coordinate_locked)
    root = {c for j, _, c in model.axis_inputs if j == model.root_joint}
    coordinates = [model.coordinate_names[i] for i in model.independent_coordinates
                   if not locked[i] and (include_root or i not in root)]
  if bodies is None:
    bodies = model.body_names
  coordinate_index = tuple(model.coordinate_index(c) for c in coordinates)
  groups, names, taken = [], [], set()
  for body in bodies:
    if body in taken:
      continue
    twin = mirror_of(body, bodies) if share_mirrored else None
    members = (body,) if twin is None else (body, twin)
    taken.update(members)
    groups.append(tuple(model.body_index(b) for b in members))
    names.append(body)
  return PredictionLayout(coordinates=coordinate_index, body_groups=tuple(groups),
                          group_names=tuple(names))


def expand_coordinates(model: SkeletalModel, layout: PredictionLayout, predicted):
  """(..., n_predicted) coordinates -> (..., n_coordinates), defaults elsewhere."""
  predicted = jnp.asarray(predicted)
  full = jnp.broadcast_to(jnp.asarray(model.coordinate_defaults, predicted.dtype),
                          predicted.shape[:-1] + (model.num_coordinates,))
  return full.at[..., np.array(layout.coordinates, int)].set(predicted)


def expand_scales(model: SkeletalModel, layout: PredictionLayout, predicted):
  """(..., n_groups, 3) scale factors -> (..., n_bodies, 3), ones for bodies not predicted."""
  predicted = jnp.asarray(predicted)
  source = np.full(model.num_bodies, layout.num_scale_groups)  # last row: ones
  for g, members in enumerate(layout.body_groups):
    source[list(members)] = g
  ones = jnp.ones(predicted.shape[:-2] + (1, 3), predicted.dtype)
  return jnp.concatenate([predicted, ones], axis=-2)[..., source, :]
