"""Train-time augmentation, on the device inside the jitted train step (the host only decodes).

As in the paper: crop zoom, rotation, translation, colour jitter and synthetic occluders.
The crop's camera moves and every label moves with it: the image rotates about the
principal point, which equals rotating the camera about its optical axis (3D labels rotate
by the same angle about the camera's z axis), and zooms and shifts by changing the
intrinsics; the 2D labels are the new projections. Each example's draw depends only on
(seed, epoch, record), never on the batch or the devices it is in.
"""

import dataclasses

import jax
import jax.numpy as jnp

from d3ke_jax.data.resample import warp

LABELS_3D = ("joints", "markers")  # camera-frame points rotated with the image
STREAM = 0x61756700  # tells augmentation keys from the other keys drawn from a seed


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """How strong each part is; zeros switch a part off."""
  scale: float = 0.15  # crop zoom factor in 1 +- scale
  rotation_degrees: float = 20.0
  translation: float = 0.05  # fraction of the crop size
  colour: float = 0.2  # brightness, contrast and saturation in 1 +- colour
  occluders: int = 2  # up to this many random rectangles


def example_keys(seed, epoch, record):
  """One key per example (epoch, record: (N,) integers) of a run seeded ``seed``."""
  base = jax.random.fold_in(jax.random.PRNGKey(seed), STREAM)
  key_of = lambda e, r: jax.random.fold_in(jax.random.fold_in(base, e), r)
  return jax.vmap(key_of)(epoch, record)


def augment_batch(batch, seed, config: Augmentation):
  """``augment`` of every example of ``batch`` (fields ``epoch`` and ``record`` say which
  draw each gets)."""
  keys = example_keys(seed, batch["epoch"], batch["record"])
  fields = {k: batch[k] for k in ("image", "intrinsics", "pelvis_rotation") + LABELS_3D}
  augmented = jax.vmap(lambda example, key: augment(example, key, config))(fields, keys)
  return {**batch, **augmented}


def augment(example, key, config: Augmentation):
  """One example (image (S, S, 3) uint8, intrinsics, pelvis_rotation, joints, markers in
  the camera frame) augmented with the draws of ``key``: the image as float32 levels
  (0-255), ``joints_2d`` and ``markers_2d`` the augmented projections."""
  image = example["image"]
  size = image.shape[0]
  k_angle, k_zoom, k_shift, k_colour, k_occluders = jax.random.split(key, 5)
  angle = jnp.radians(jax.random.uniform(k_angle, (), minval=-1, maxval=1)
                      * config.rotation_degrees)
  zoom = 1 + jax.random.uniform(k_zoom, (), minval=-1, maxval=1) * config.scale
  shift = jax.random.uniform(k_shift, (2,), minval=-1, maxval=1) * config.translation * size
  spin = rotation_z(angle)
  k = example["intrinsics"].astype(jnp.float32)
  new_k = k.at[:2, :2].multiply(zoom).at[:2, 2].add(shift)
  out = {name: example[name] @ spin.T for name in LABELS_3D}
  out["pelvis_rotation"] = spin @ example["pelvis_rotation"]
  out["intrinsics"] = new_k
  for name in LABELS_3D:
    points = out[name] @ new_k.T
    out[f"{name}_2d"] = points[:, :2] / points[:, 2:]
  # New pixels p' = K' R K^-1 p, so each new pixel reads the old image at K R^T K'^-1 p'.
  warped = warp(image, k @ spin.T @ jnp.linalg.inv(new_k))
  factors = jax.random.uniform(k_colour, (3,), minval=1 - config.colour,
                               maxval=1 + config.colour)
  out["image"] = occlude(colour(warped, *factors), k_occluders, config.occluders)
  return out


def rotation_z(angle):
  c, s = jnp.cos(angle), jnp.sin(angle)
  return jnp.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def colour(image, brightness, contrast, saturation):
  """Brightness b, then contrast c about the image's mean m, then saturation s about each
  pixel's grey g (its channels' mean): one affine map of every pixel's colour x,
  s c b x + (1 - s) c b g + (1 - c) b m, clipped to 0-255 (float32 levels)."""
  x = image.astype(jnp.float32)
  gain = contrast * brightness
  grey = jnp.mean(x, -1, keepdims=True)
  y = saturation * gain * x + (1 - saturation) * gain * grey + (1 - contrast) * brightness * (
      jnp.mean(x))
  return jnp.clip(y, 0, 255)


def occlude(image, key, count):
  """Up to ``count`` rectangles of random colour (sides 1/10 to 1/4 of the image) drawn over
  ``image``, later ones over earlier ones."""
  if not count:
    return image
  size = image.shape[0]
  k_count, k_sides, k_corner, k_colour = jax.random.split(key, 4)
  drawn = jax.random.randint(k_count, (), 0, count + 1)
  sides = jax.random.randint(k_sides, (count, 2), size // 10, size // 4)
  corners = jax.random.randint(k_corner, (count, 2), 0, size - sides)
  colours = jax.random.randint(k_colour, (count, 3), 0, 256)
  row, column = jnp.arange(size)[:, None], jnp.arange(size)[None, :]
  inside = ((column >= corners[:, 0, None, None]) & (column < (corners + sides)[:, 0, None, None])
            & (row >= corners[:, 1, None, None]) & (row < (corners + sides)[:, 1, None, None])
            & (jnp.arange(count) < drawn)[:, None, None])
  top = jnp.max(jnp.where(inside, jnp.arange(count)[:, None, None], -1), 0)
  return jnp.where(top[..., None] >= 0, colours[top].astype(image.dtype), image)
