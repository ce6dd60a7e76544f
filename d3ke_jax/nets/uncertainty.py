"""How sure the network is of each output: the scale b of a Laplace distribution of its
error, for every predicted coordinate, every body-scale group and axis, and the pelvis
rotation's angle (the paper's angle loss is an L1, the Laplace's log-likelihood).

A Laplace error of scale b has standard deviation sqrt(2) b and its central interval of
probability p is +- b ln(1 / (1 - p)). A head reads the network's features through a
stop-gradient and is trained by the negative log-likelihood of the kinematic head's errors
(also without gradient), so D3KE's own objective and gradients stay the paper's. One
temperature per output, fitted on the validation split (``temperatures``), calibrates the
scales.
"""

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

UNCERTAINTY = "uncertainty"  # the name the head's output is sown under ("intermediates")
INITIAL = (0.1, 0.03, 0.1)  # b at initialisation: coordinates (rad), scales, rotation (rad)
FLOOR = 1e-4  # the smallest b


class Uncertainty(NamedTuple):
  """Laplace scales (positive) of a frame's errors, in the outputs' units."""
  coords: jnp.ndarray  # (..., P) radians / metres
  scales: jnp.ndarray  # (..., G, 3) relative to the model
  rotation: jnp.ndarray  # (...,) radians: the angle between predicted and true rotations


class UncertaintyHead(nn.Module):
  """Features (..., D) -> ``Uncertainty`` of ``coordinates`` coordinates and ``groups``
  scale groups; zero weights give ``INITIAL``."""
  coordinates: int
  groups: int
  hidden: int = 128

  @nn.compact
  def __call__(self, features):
    h = nn.relu(nn.Dense(self.hidden, name="hidden")(features.astype(jnp.float32)))
    start = initial(self.coordinates, self.groups)
    bias = np.log(np.expm1(start - FLOOR))  # softplus(bias) + FLOOR = start
    raw = nn.Dense(len(start), kernel_init=nn.initializers.zeros,
                   bias_init=lambda *_: jnp.asarray(bias, jnp.float32), name="out")(h)
    b = nn.softplus(raw) + FLOOR
    p, g = self.coordinates, self.groups
    return Uncertainty(b[..., :p], b[..., p:p + 3 * g].reshape(b.shape[:-1] + (g, 3)),
                       b[..., -1])


def initial(coordinates, groups):
  """(P + 3 G + 1,) each output's ``INITIAL`` scale, in ``flatten``'s order."""
  return np.concatenate([np.full(coordinates, INITIAL[0]), np.full(3 * groups, INITIAL[1]),
                         [INITIAL[2]]])


def flatten(uncertainty: Uncertainty):
  """(..., P + 3 G + 1) the scales of an ``Uncertainty`` as one vector per frame."""
  scales = uncertainty.scales
  return jnp.concatenate([uncertainty.coords, scales.reshape(scales.shape[:-2] + (-1,)),
                          uncertainty.rotation[..., None]], -1)


def rotation_angle(predicted, true):
  """(...,) angle in radians of ``predicted`` @ ``true``^T (rotations (..., 3, 3))."""
  cosine = (jnp.trace(predicted @ jnp.swapaxes(true, -1, -2), axis1=-2, axis2=-1) - 1) / 2
  return jnp.arccos(jnp.clip(cosine, -1.0, 1.0 - 1e-7))


def errors(predicted, true):
  """``Uncertainty``-shaped absolute errors of predicted ``Kinematics`` against the truth."""
  return Uncertainty(jnp.abs(predicted.coords - true.coords),
                     jnp.abs(predicted.scales - true.scales),
                     rotation_angle(predicted.rotation, true.rotation))


def negative_log_likelihood(error, b, mask):
  """Mean over ``mask`` (broadcast to ``b``) of the Laplace negative log-likelihood of
  absolute errors ``error`` under scales ``b``: |e| / b + log(2 b)."""
  mask = jnp.broadcast_to(mask, b.shape)
  terms = error / b + jnp.log(2 * b)
  return jnp.sum(terms * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def standard_deviation(b):
  return math.sqrt(2.0) * b


def half_width(b, probability):
  """The half-width of the central interval of ``probability`` of a Laplace of scale b."""
  return -b * math.log1p(-probability)


def temperatures(error, b, valid):
  """The calibration factor t of each output: the maximum-likelihood multiplier of the
  scales ``b`` (N, ...) given absolute errors ``error`` (N, ...) where ``valid`` (N, ...):
  t = mean(|e| / b). Outputs without a valid frame keep 1."""
  ratio = np.asarray(error, np.float64) / np.asarray(b, np.float64)
  valid = np.broadcast_to(valid, ratio.shape)
  ratio = np.where(valid, ratio, 0.0)
  count = valid.sum(0)
  return np.where(count > 0, ratio.sum(0) / np.maximum(count, 1), 1.0)


def calibrated(uncertainty: Uncertainty, factors: Uncertainty):
  """Scales times their temperatures."""
  return jax.tree.map(lambda b, t: b * np.asarray(t, np.float32), uncertainty, factors)
