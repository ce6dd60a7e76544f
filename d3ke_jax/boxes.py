"""Square person boxes (..., 3): x0, y0, side, in pixels or as fractions of a crop.

Every function takes NumPy or JAX arrays (or nested sequences, taken as NumPy) and gives
arrays of the same kind: NumPy in, NumPy out; JAX in, JAX out, traceable under ``jit``.
"""

import jax
import jax.numpy as jnp
import numpy as np

# The relative margin of a person box around the person at inference (and the box head's
# target); training crops draw theirs per clip from ``data.frames.MARGIN_RANGE``.
MARGIN = 0.15
# The gate a box passes to be taken for the person in another box: its centre within
# ``GATE`` sides of the other's centre, its side within a factor ``SIZE_RATIO`` of the other's.
GATE, SIZE_RATIO = 0.5, 1.5


def _namespace(*arrays):
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def square(points, margin, valid=None):
  """Square boxes (..., 3) around 2D ``points`` (..., K, 2), centred on their extent and
  ``1 + 2 margin`` times its longer side; the points not ``valid`` (..., K) are left out
  (default: those with a NaN)."""
  xp = _namespace(points, valid)
  points = xp.asarray(points)
  if valid is None:
    valid = ~xp.isnan(points).any(-1)
  valid = xp.asarray(valid)[..., None] > 0
  low = xp.min(xp.where(valid, points, xp.inf), -2)
  high = xp.max(xp.where(valid, points, -xp.inf), -2)
  side = xp.max(high - low, -1, keepdims=True) * (1 + 2 * margin)
  return from_centre((low + high) / 2, side)


def from_corners(corners, margin):
  """Square boxes (..., 3) around corner boxes (..., 4) x0, y0, x1, y1 (``square`` of the
  two corners)."""
  xp = _namespace(corners)
  corners = xp.asarray(corners)
  return square(xp.stack([corners[..., :2], corners[..., 2:]], -2), margin)


def corners(box):
  """(..., 4, 2) the corners of square boxes, clockwise from (x0, y0) (y down)."""
  xp = _namespace(box)
  box = xp.asarray(box)
  x0, y0, side = box[..., 0], box[..., 1], box[..., 2]
  x1, y1 = x0 + side, y0 + side
  return xp.stack([xp.stack(c, -1) for c in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], -2)


def centre(box):
  """(..., 2) the centres of square boxes."""
  box = _namespace(box).asarray(box)
  return box[..., :2] + box[..., 2:] / 2


def from_centre(middle, side):
  """Square boxes (..., 3) of centres ``middle`` (..., 2) and sides (..., 1)."""
  xp = _namespace(middle, side)
  return xp.concatenate([xp.asarray(middle) - side / 2, xp.asarray(side)], -1)


def in_frame(relative, crop):
  """Boxes (..., 3) given as fractions of their crops ``crop`` (..., 3) -> the crops'
  frame pixels."""
  xp = _namespace(relative, crop)
  relative, crop = xp.asarray(relative), xp.asarray(crop)
  side = crop[..., 2:]
  return xp.concatenate([crop[..., :2] + relative[..., :2] * side, relative[..., 2:] * side], -1)


def iou(a, b):
  """(...,) intersection over union of square boxes (..., 3)."""
  xp = _namespace(a, b)
  a, b = xp.asarray(a), xp.asarray(b)
  low = xp.maximum(a[..., :2], b[..., :2])
  high = xp.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:])
  inter = xp.prod(xp.clip(high - low, 0, None), -1)
  return inter / (a[..., 2] ** 2 + b[..., 2] ** 2 - inter)


def distance(a, b):
  """(...,) distance between the centres of square boxes (..., 3)."""
  xp = _namespace(a, b)
  offset = centre(a) - centre(b)
  return xp.hypot(offset[..., 0], offset[..., 1])


def passes_gate(box, reference, reach=GATE):
  """(...,) bool: ``box`` (..., 3) may be the person in ``reference`` (..., 3): its centre
  within ``reach`` sides of the reference's, its side within a factor ``SIZE_RATIO``."""
  xp = _namespace(box, reference)
  box, reference = xp.asarray(box), xp.asarray(reference)
  ratio = box[..., 2] / reference[..., 2]
  return ((distance(box, reference) <= reach * reference[..., 2])
          & (1 / SIZE_RATIO <= ratio) & (ratio <= SIZE_RATIO))
