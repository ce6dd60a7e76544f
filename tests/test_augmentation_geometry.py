"""Augmentation as a camera motion: the image rotates about the principal point (a camera
rotation about its optical axis) and zooms about it (a focal-length change), so the
augmented 2D labels are the projections of the augmented 3D labels with the augmented
intrinsics, and the pixels move with them even where the principal point is far from the
crop centre (people near the edge of a MoVi frame). The augmentation runs on the device
(JAX, float32), as in the train step."""

import jax
import numpy as np
import pytest

from d3ke_jax.data import augment, frames

FULL = augment.Augmentation(scale=0.15, rotation_degrees=30.0, translation=0.05, colour=0.0,
                            occluders=0)


def augmented(example, seed, config=FULL):
  """``augment.augment`` of a NumPy example (its image and 3D labels), as NumPy."""
  fields = {k: np.asarray(example[k], np.uint8 if k == "image" else np.float32)
            for k in ("image", "intrinsics", "pelvis_rotation", "joints", "markers")}
  out = jax.jit(augment.augment, static_argnums=2)(fields, jax.random.PRNGKey(seed), config)
  return jax.tree.map(np.asarray, out)


def _project(points, intrinsics):
  pixels = np.asarray(points, float) @ np.asarray(intrinsics, float).T
  return pixels[:, :2] / pixels[:, 2:]


def _assert_labels_consistent(example, atol):
  for name in ("joints", "markers"):
    np.testing.assert_allclose(_project(example[name], example["intrinsics"]),
                               example[f"{name}_2d"], atol=atol)


def test_augmented_2d_labels_are_projections_of_the_augmented_3d_labels():
  for t, example in enumerate(frames.generate([0], ["walking"], 2, 32)):
    _assert_labels_consistent(example, atol=2e-3)  # as stored (float32 pixels)
    out = augmented(example, t)
    _assert_labels_consistent(out, atol=2e-3)
    # A rotation about the optical axis: depths and distances kept, pelvis rotated alike.
    np.testing.assert_allclose(out["markers"][:, 2], example["markers"][:, 2], atol=1e-5)
    spin = out["pelvis_rotation"] @ example["pelvis_rotation"].T
    np.testing.assert_allclose(out["markers"], example["markers"] @ spin.T, atol=1e-5)
    np.testing.assert_allclose(spin[2], [0, 0, 1], atol=1e-6)


def _dots(size, pixels, radius=2.5):
  yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres, as the renderer's
  image = np.zeros((size, size, 3), np.uint8)
  for u, v in pixels:
    image[(xx - u) ** 2 + (yy - v) ** 2 < radius ** 2] = 255
  return image


def _centroid(image, near, radius=6.0):
  yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
  weight = image[..., 0] * (((xx - near[0]) ** 2 + (yy - near[1]) ** 2) < radius ** 2)
  return np.array([np.sum(weight * xx), np.sum(weight * yy)]) / np.sum(weight)


@pytest.mark.parametrize("seed", range(4))
def test_pixels_follow_the_labels_about_an_off_centre_principal_point(seed):
  size = 64
  intrinsics = np.array([[80.0, 0.0, 12.0], [0.0, 80.0, 50.0], [0.0, 0.0, 1.0]])
  points = np.array([[0.2, -0.05, 2.0], [0.6, -0.1, 2.5], [0.3, -0.5, 2.2]])  # 14+ px apart
  pixels = _project(points, intrinsics)
  assert np.all((pixels > 8) & (pixels < size - 8))
  example = {"image": _dots(size, pixels), "intrinsics": intrinsics, "joints": points,
             "markers": points, "joints_2d": pixels, "markers_2d": pixels,
             "pelvis_rotation": np.eye(3)}
  out = augmented(example, seed)
  _assert_labels_consistent(out, atol=1e-3)
  for label in out["markers_2d"]:
    if np.all((label > 6) & (label < size - 6)):  # dots the warp kept whole
      np.testing.assert_allclose(_centroid(out["image"], label), label, atol=0.25)
  # Rotation and zoom alone keep the principal point where it is.
  still = augmented(example, seed, augment.Augmentation(0.15, 30.0, 0.0, 0.0, 0))
  np.testing.assert_allclose(still["intrinsics"][:2, 2], intrinsics[:2, 2], atol=1e-5)
