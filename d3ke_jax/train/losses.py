"""The D3KE objective: L = l1 L_joint + l2 L_marker + l3 L_body + l4 L_angle.

Root-relative L1 for joint and marker positions, L1 for body scales and coordinates, with
masks for frames, and for coordinates and marker labels without valid ground truth (e.g. a
bony landmark more than 2 cm from the fitted model).
Body scales, predicted and true, are relative to the skeletal model (1 = the model's size;
see ``d3ke_jax.nets.heads``).
"""

from typing import NamedTuple

import jax.numpy as jnp

from d3ke_jax import boxes
from d3ke_jax.skeleton.model import root_relative

PAPER_WEIGHTS = {"joint": 1.0, "marker": 2.0, "body": 0.1, "angle": 0.06}


def loss_weights(config):
  """{term: lambda} from ``config.loss`` (keys ``lambda_<term>``)."""
  return {k[len("lambda_"):]: v for k, v in config.loss.items()}


class Targets(NamedTuple):
  coords: jnp.ndarray  # (..., P)
  scales: jnp.ndarray  # (..., G, 3) relative to the model
  joints: jnp.ndarray  # (..., J, 3)
  markers: jnp.ndarray  # (..., M, 3)
  frame_mask: jnp.ndarray  # (...,) 1 where the frame's ground truth is valid
  coordinate_mask: jnp.ndarray  # (..., P) 1 where the coordinate's ground truth is valid
  marker_mask: jnp.ndarray  # (..., M) 1 where the marker's label is valid


def _masked_mean(values, mask):
  mask = jnp.broadcast_to(mask, values.shape)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def marker_loss(markers, true_markers, mask):
  """Mean L1 distance of root-relative markers (..., M, 3) over the valid labels (``mask``
  (..., M)): the marker term of ``d3ke_loss`` and the whole objective of the multi-step
  baseline."""
  return _masked_mean(jnp.abs(markers - true_markers), mask[..., None])


def box_loss(box, true_box, mask):
  """Mean L1 difference of square boxes (..., 3) (x0, y0, side, fractions of the crop) as
  centre and log side, over the frames where ``mask`` (...,) is 1."""
  def centre_and_log_side(b):
    return jnp.concatenate([boxes.centre(b), jnp.log(b[..., 2:])], -1)
  mask = jnp.broadcast_to(mask[..., None], box.shape) > 0
  difference = jnp.abs(centre_and_log_side(box) - centre_and_log_side(jnp.where(mask, true_box, 1)))
  return _masked_mean(jnp.where(mask, difference, 0), mask.astype(jnp.float32))


def d3ke_loss(kinematics, pose, targets: Targets, weights=None, root_joint=0):
  """(total loss, {term: value}) for predicted kinematics and their skeletal-layer pose.

  Positions are compared relative to the root joint (the pelvis origin); ``weights``
  overrides entries of ``PAPER_WEIGHTS`` (joint, marker, body, angle).
  """
  weights = dict(PAPER_WEIGHTS, **(weights or {}))
  unknown = set(weights) - set(PAPER_WEIGHTS)
  if unknown:
    raise KeyError(f"unknown loss weights {sorted(unknown)}; expected {sorted(PAPER_WEIGHTS)}")
  relative = lambda points, joints: root_relative(points, joints, root_joint)
  frames = targets.frame_mask[..., None, None]
  terms = {
      "joint": _masked_mean(jnp.abs(relative(pose.joints, pose.joints)
                                    - relative(targets.joints, targets.joints)), frames),
      "marker": marker_loss(relative(pose.markers, pose.joints),
                            relative(targets.markers, targets.joints),
                            targets.marker_mask * targets.frame_mask[..., None]),
      "body": _masked_mean(jnp.abs(kinematics.scales - targets.scales), frames),
      "angle": _masked_mean(jnp.abs(kinematics.coords - targets.coords),
                            targets.coordinate_mask * targets.frame_mask[..., None]),
  }
  total = sum(weights[name] * value for name, value in terms.items())
  return total, terms
