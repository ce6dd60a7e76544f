"""Heads on backbone features. The kinematic head (D3KE): bounded coordinates, body scales,
pelvis rotation. The marker head (the multi-step baseline): root-relative 3D markers. The
box head: where the person is in the crop (what lets inference steer its crops).

Every output is valid by construction for any input: coordinates inside their ranges
(range-scaled sigmoid, centred so that zero logits give the model's default pose), scales
positive and within a band around their centre (tanh), the rotation proper and orthonormal
(6D -> Gram-Schmidt, Zhou et al. 2019).

Body scales are relative to the skeletal model everywhere (head, loss, metrics, dataset
records): 1 is the model's own body size, as ``forward_kinematics`` takes them (OpenSim
ScaleSet semantics), whatever scale factors the model file itself was made with.
"""

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from d3ke_jax import boxes
from d3ke_jax.skeleton.kinematics import forward_kinematics
from d3ke_jax.skeleton.model import root_relative
from d3ke_jax.skeleton.rotations import sixd_to_matrix

IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# Pelvis -> camera rotation of a body upright and facing the camera: the pelvis's forward
# (x), up (y) and right (z) axes along the camera's -z, -y and -x (x right, y down, z ahead).
FACING_CAMERA = ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0), (-1.0, 0.0, 0.0))


class Kinematics(NamedTuple):
  """Predicted (or ground-truth) kinematics of a batch of frames."""
  coords: jnp.ndarray  # (..., P) predicted coordinates, radians / metres
  scales: jnp.ndarray  # (..., G, 3) body-group scale factors relative to the model
  rotation: jnp.ndarray  # (..., 3, 3) pelvis -> camera rotation


class Bounds(NamedTuple):
  """What the head needs to know of the skeleton (static, hashable)."""
  coordinate_low: Sequence[float]
  coordinate_high: Sequence[float]
  coordinate_centre: Sequence[float]  # what zero logits decode to: the default pose
  scale_centre: Sequence[Sequence[float]]  # (G, 3)
  scale_band: float = 0.3  # scales stay within centre * (1 +- band)
  rotation_centre: Sequence[Sequence[float]] = FACING_CAMERA  # what zero 6D logits give


def bounds_for(model, layout, scale_centre=None, scale_band=0.3):
  """``Bounds`` of a prediction layout: coordinate ranges centred on the model's default
  pose; scales around 1, the model's own size (or a dataset-mean ``scale_centre``)."""
  index = np.array(layout.coordinates)
  ranges = np.asarray(model.coordinate_ranges)[index]
  # Kept off the range ends, where the sigmoid's logit would be infinite.
  margin = 0.02 * (ranges[:, 1] - ranges[:, 0])
  centre = np.clip(np.asarray(model.coordinate_defaults)[index], ranges[:, 0] + margin,
                   ranges[:, 1] - margin)
  if scale_centre is None:
    scale_centre = np.ones((layout.num_scale_groups, 3))
  return Bounds(tuple(map(float, ranges[:, 0])), tuple(map(float, ranges[:, 1])),
                tuple(map(float, centre)),
                tuple(tuple(map(float, s)) for s in np.asarray(scale_centre)), scale_band)


def _centre_logits(bounds: Bounds):
  low, high = np.asarray(bounds.coordinate_low), np.asarray(bounds.coordinate_high)
  unit = (np.asarray(bounds.coordinate_centre) - low) / (high - low)
  return jnp.asarray(np.log(unit) - np.log1p(-unit), jnp.float32)


def decode(bounds: Bounds, coordinate_logits, scale_logits, sixd):
  """Unconstrained outputs -> ``Kinematics`` inside the bounds."""
  low, high = jnp.asarray(bounds.coordinate_low), jnp.asarray(bounds.coordinate_high)
  unit = nn.sigmoid(coordinate_logits + _centre_logits(bounds))
  coords = jnp.clip(low + (high - low) * unit, low, high)
  centre = jnp.asarray(bounds.scale_centre)
  scales = centre * (1.0 + bounds.scale_band * jnp.tanh(scale_logits))
  rotation = jnp.asarray(bounds.rotation_centre) @ sixd_to_matrix(sixd + jnp.asarray(IDENTITY_6D))
  return Kinematics(coords, scales, rotation)


def encode(bounds: Bounds, kinematics: Kinematics, eps=1e-4):
  """The inverse of ``decode`` (clipped away from the bounds): features for sequence nets."""
  low, high = jnp.asarray(bounds.coordinate_low), jnp.asarray(bounds.coordinate_high)
  unit = jnp.clip((kinematics.coords - low) / (high - low), eps, 1 - eps)
  relative = jnp.clip((kinematics.scales / jnp.asarray(bounds.scale_centre) - 1.0)
                      / bounds.scale_band, -1 + eps, 1 - eps)
  relative_rotation = jnp.asarray(bounds.rotation_centre).T @ kinematics.rotation
  sixd = jnp.concatenate([relative_rotation[..., :, 0], relative_rotation[..., :, 1]], -1)
  return (jnp.log(unit) - jnp.log1p(-unit) - _centre_logits(bounds), jnp.arctanh(relative),
          sixd - jnp.asarray(IDENTITY_6D))


def flatten(coordinate_logits, scale_logits, sixd):
  """Concatenates the three unconstrained parts into one feature vector per frame."""
  return jnp.concatenate([coordinate_logits, scale_logits.reshape(scale_logits.shape[:-2] + (-1,)),
                          sixd], -1)


def unflatten(bounds: Bounds, features):
  p, g = len(bounds.coordinate_low), len(bounds.scale_centre)
  return (features[..., :p], features[..., p:p + 3 * g].reshape(features.shape[:-1] + (g, 3)),
          features[..., p + 3 * g:p + 3 * g + 6])


def feature_size(bounds: Bounds):
  return len(bounds.coordinate_low) + 3 * len(bounds.scale_centre) + 6


class KinematicHead(nn.Module):
  """Features (..., D) -> ``Kinematics``; the near-zero initial output layer predicts the
  default pose, centre scales and the centre rotation."""
  bounds: Bounds
  hidden: int = 0

  @nn.compact
  def __call__(self, features):
    if self.hidden:
      features = nn.relu(nn.Dense(self.hidden, name="hidden")(features))
    raw = nn.Dense(feature_size(self.bounds), kernel_init=nn.initializers.normal(1e-3),
                   name="out")(features)
    return decode(self.bounds, *unflatten(self.bounds, raw))


def marker_template(model):
  """(M, 3) markers of the model's default pose facing the camera (``FACING_CAMERA``),
  relative to the root joint: what the marker head predicts from zero outputs."""
  pose = forward_kinematics(model, np.asarray(model.coordinate_defaults),
                            root_rotation=np.asarray(FACING_CAMERA))
  markers = root_relative(np.asarray(pose.markers), np.asarray(pose.joint_origins),
                          model.root_joint)
  return tuple(tuple(map(float, m)) for m in markers)


class MarkerHead(nn.Module):
  """Features (..., D) -> root-relative markers (..., M, 3) in metres, in the camera's
  orientation; the near-zero initial output layer predicts ``template``."""
  template: Sequence[Sequence[float]]  # (M, 3), see ``marker_template``
  hidden: int = 0

  @nn.compact
  def __call__(self, features):
    if self.hidden:
      features = nn.relu(nn.Dense(self.hidden, name="hidden")(features))
    template = jnp.asarray(self.template, jnp.float32)
    raw = nn.Dense(template.size, kernel_init=nn.initializers.normal(1e-3), name="out")(features)
    return template + raw.reshape(raw.shape[:-1] + template.shape)


class BoxHead(nn.Module):
  """A feature map (N, h, w, C) -> the person's square box in the crop (N, 3): x0, y0, side
  as fractions of the crop's side; zero outputs give the whole crop. The map's channels
  are reduced (1x1 convolution) and its cells kept apart (flattened), so where features
  are tells where the person is."""
  channels: int = 32
  hidden: int = 128

  @nn.compact
  def __call__(self, feature_map):
    reduced = nn.relu(nn.Conv(self.channels, (1, 1), name="reduce")(
        feature_map.astype(jnp.float32)))
    features = reduced.reshape(reduced.shape[0], -1)
    features = nn.relu(nn.Dense(self.hidden, name="hidden")(features))
    raw = nn.Dense(3, kernel_init=nn.initializers.normal(1e-3), name="out")(features)
    return boxes.from_centre(0.5 + raw[..., :2], jnp.exp(raw[..., 2:]))

