"""Colour jitter: brightness, contrast about the image's mean and saturation about each
pixel's grey, applied by Pillow as one affine colour map."""

import numpy as np

from d3ke_jax.data import pipeline


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
    out = pipeline._colour(image, np.random.default_rng(seed), 0.2)
    assert out.dtype == np.uint8 and out.shape == image.shape
    expected = _step_by_step(image, *factors)
    # Pillow rounds to the nearest level (measured: 0.5 at most, plus float32 rounding).
    np.testing.assert_allclose(out, expected, rtol=0, atol=0.51)
    assert np.abs(out.astype(float) - image).max() > 5  # it did change the image


def test_levels_clip_at_white_and_no_jitter_keeps_the_image():
  white = np.full((8, 8, 3), 250, np.uint8)
  seed = next(s for s in range(100) if np.random.default_rng(s).uniform(0.8, 1.2) > 1.05)
  # A uniform image has no contrast or saturation to change: only brightness, clipped.
  np.testing.assert_array_equal(pipeline._colour(white, np.random.default_rng(seed), 0.2), 255)
  np.testing.assert_array_equal(pipeline._colour(white, np.random.default_rng(0), 0.0), white)
