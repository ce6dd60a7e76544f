"""Resampling images in JAX at continuous pixel positions, in the renderer's convention
(pixel centres at x + 0.5, y + 0.5): bilinear reads, warps and square crops."""

import jax.numpy as jnp


def sample(image, x, y, valid=True):
  """``image`` (H, W, C) read bilinearly at positions ``x``, ``y`` (any shape); black
  outside the image and where not ``valid``. Float32 levels, not rounded."""
  height, width = image.shape[:2]
  column, row = x - 0.5, y - 0.5
  left, top = jnp.floor(column), jnp.floor(row)
  right, bottom = column - left, row - top  # the weights of the next column and row
  flat = image.reshape(height * width, -1)
  total = 0.0
  for dx in (0, 1):
    for dy in (0, 1):
      weight = (right if dx else 1 - right) * (bottom if dy else 1 - bottom)
      u, v = (left + dx).astype(jnp.int32), (top + dy).astype(jnp.int32)
      inside = valid & (u >= 0) & (u < width) & (v >= 0) & (v < height)
      value = flat[jnp.clip(v, 0, height - 1) * width + jnp.clip(u, 0, width - 1)]
      total = total + jnp.where(inside, weight, 0.0)[..., None] * value.astype(jnp.float32)
  return total


def pixel_centres(height, width):
  """(height, width, 3) homogeneous pixel centres (x + 0.5, y + 0.5, 1)."""
  y, x = jnp.meshgrid(jnp.arange(height) + 0.5, jnp.arange(width) + 0.5, indexing="ij")
  return jnp.stack([x, y, jnp.ones_like(x)], -1)


def warp(image, to_old):
  """``image`` resampled at old = ``to_old`` @ new (homogeneous pixel positions)."""
  old = pixel_centres(*image.shape[:2]) @ to_old.T
  return sample(image, old[..., 0] / old[..., 2], old[..., 1] / old[..., 2])


def crop(image, box, size, supersample=2):
  """The square ``box`` (x0, y0, side) of ``image`` resampled to (size, size, C) float32:
  crop pixel (i, j) shows the image at (x0 + (j + 1/2) side / size, y0 + (i + 1/2) side /
  size), as ``render.crop_camera`` maps it, each the mean of ``supersample``^2 bilinear
  reads spread over its footprint (an antialiasing box filter); black outside the image."""
  fine = size * supersample
  offsets = (jnp.arange(fine) + 0.5) * box[2] / fine
  values = sample(image, box[0] + offsets[None, :], box[1] + offsets[:, None])
  return values.reshape(size, supersample, size, supersample, -1).mean((1, 3))
