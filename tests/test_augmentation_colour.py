"""Colour jitter: brightness, contrast about the image's mean and saturation about each
pixel's grey, applied on the device as one affine colour map; and the occluders."""

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax.data import augment


def _step_by_step(image, brightness, contrast, saturation):
  """The jitter as it is defined, one operation after the other, in float64."""
  x = image.astype(np.float64) * brightness
  mean = x.mean()
  x = (x - mean) * contrast + mean
  grey = x.mean(-1, keepdims=True)
  x = (x - grey) * saturation + grey
  return np.clip(x, 0, 255)


def test_colour_jitter_is_the_three_steps_in_one_map():
  image = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
  for seed in range(5):
    factors = np.random.default_rng(seed).uniform(0.8, 1.2, 3)
    out = np.asarray(augment.colour(jnp.asarray(image), *factors))
    assert out.dtype == np.float32 and out.shape == image.shape
    expected = _step_by_step(image, *factors)
    # Float32 levels, not rounded: float32 arithmetic (measured: 6e-5 levels at most).
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-4)
    assert np.abs(out.astype(float) - image).max() > 5  # it did change the image


def test_levels_clip_at_white_and_no_jitter_keeps_the_image():
  white = jnp.full((8, 8, 3), 250, jnp.uint8)
  # A uniform image has no contrast or saturation to change: only brightness, clipped.
  np.testing.assert_array_equal(augment.colour(white, 1.1, 0.9, 1.2), 255)
  image = jnp.asarray(np.random.default_rng(1).integers(0, 256, (8, 8, 3), np.uint8))
  np.testing.assert_allclose(augment.colour(image, 1.0, 1.0, 1.0), image, atol=1e-4)


def test_occluders_are_rectangles_of_one_colour_each():
  size = 64
  image = jnp.zeros((size, size, 3), jnp.uint8)
  counts = []
  for seed in range(12):
    out = np.asarray(augment.occlude(image, jax.random.PRNGKey(seed), 2))
    covered = out.any(-1)
    counts.append(len(np.unique(out[covered].view([("", np.uint8)] * 3))) if covered.any() else 0)
    rows, columns = np.flatnonzero(covered.any(1)), np.flatnonzero(covered.any(0))
    if counts[-1] == 1:  # one rectangle (or two of one colour): a filled box
      assert covered[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1].all()
      assert size // 10 <= rows[-1] + 1 - rows[0] and size // 10 <= columns[-1] + 1 - columns[0]
  assert set(counts) == {0, 1, 2}  # none, one or two drawn
  np.testing.assert_array_equal(augment.occlude(image, jax.random.PRNGKey(0), 0), image)
