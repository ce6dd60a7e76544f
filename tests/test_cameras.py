"""MoVi's cameras and the perspective crop, against formulas written out here (OpenCV's
radial model, the pinhole projection) and against dots drawn through the distorted camera."""

import json

import numpy as np
import pytest

from d3ke_jax.data import cameras
from d3ke_jax.errors import UserError

# A person standing at the AMASS origin (z up, metres), arms spread along x (facing PG1):
# head, neck, shoulders, elbows, hands, pelvis, knees, ankles (each pair >= 0.2 m apart).
PERSON = np.array([
    [0.0, 0.0, 1.75], [0.0, 0.0, 1.5], [-0.2, 0.0, 1.45], [0.2, 0.0, 1.45], [-0.45, 0.0, 1.3],
    [0.45, 0.0, 1.3], [-0.7, 0.0, 1.1], [0.7, 0.0, 1.1], [0.0, 0.0, 0.95], [-0.12, 0.0, 0.5],
    [0.12, 0.0, 0.25], [-0.15, 0.0, 0.05], [0.3, 0.0, 0.02]])
HEAD, FEET = 0, [11, 12]


def _opencv_project(camera, points):
  """OpenCV's projectPoints with distortion (k1, k2, 0, 0, 0), written out."""
  x, y, z = (np.asarray(points, float) @ camera.rotation.T + camera.translation).T
  x, y = x / z, y / z
  r2 = x**2 + y**2
  k1, k2 = camera.distortion
  x, y = x * (1 + k1 * r2 + k2 * r2**2), y * (1 + k1 * r2 + k2 * r2**2)
  (fx, s, cx), (_, fy, cy) = camera.intrinsics[:2]
  return np.stack([fx * x + s * y + cx, fy * y + cy], -1)


def _pinhole(camera, points):
  """Pixels of K (R x + t) without distortion."""
  pixels = (np.asarray(points, float) @ camera.rotation.T + camera.translation) @ \
      np.asarray(camera.intrinsics).T
  return pixels[:, :2] / pixels[:, 2:]


def _points_on_rays(camera, ideal, depth):
  """World points at ``depth`` whose pixels without distortion are ``ideal``."""
  normalised = (ideal - camera.intrinsics[:2, 2]) / np.diag(camera.intrinsics)[:2]
  in_camera = np.concatenate([normalised, np.ones((len(ideal), 1))], -1) * depth
  return np.linalg.solve(camera.rotation, (in_camera - camera.translation).T).T


def _image_grid(camera, step=20):
  u, v = np.meshgrid(np.arange(0, camera.size[0] + 1, step), np.arange(0, camera.size[1] + 1,
                                                                        step))
  return np.stack([u.ravel(), v.ravel()], -1).astype(float)


@pytest.mark.float64  # 1e-6 px needs more digits than float32's 6e-8 x 800 px
@pytest.mark.parametrize("name", ["PG1", "PG2"])
def test_distortion_is_opencvs_and_undistortion_inverts_it_over_the_image(name):
  camera = cameras.MOVI_CAMERAS[name]
  # Points whose undistorted pixels cover the whole image (and a 20 px border), 5 m away.
  ideal = _image_grid(camera) + [-20, -20]
  points = _points_on_rays(camera, ideal, 5.0)
  np.testing.assert_allclose(_pinhole(camera, points), ideal, atol=1e-9)
  pixels, depth = cameras.project(camera, points)
  np.testing.assert_allclose(pixels, _opencv_project(camera, points), atol=1e-9)
  np.testing.assert_allclose(depth, 5.0, atol=1e-12)
  assert np.abs(np.asarray(pixels) - ideal).max() > 10  # distortion moves the corners
  np.testing.assert_allclose(cameras.undistort_pixels(camera, pixels), ideal, atol=1e-6)
  # And the other way round: every distorted pixel of the image undistorts to a ray that
  # OpenCV's formula takes back to it.
  distorted = _image_grid(camera)
  points = _points_on_rays(camera, np.asarray(cameras.undistort_pixels(camera, distorted)), 5.0)
  np.testing.assert_allclose(_opencv_project(camera, points), distorted, atol=1e-6)


@pytest.mark.parametrize("name", ["PG1", "PG2"])
def test_a_person_standing_at_the_amass_origin_is_in_view_and_upright(name):
  camera = cameras.MOVI_CAMERAS[name]
  assert camera.size == (800, 600)
  for offset in ([0, 0, 0], [0.8, 0.8, 0], [-0.8, -0.8, 0]):  # the middle of MoVi's stage
    pixels, depth = map(np.asarray, cameras.project(camera, PERSON + offset))
    assert np.all((depth > 2) & (depth < 7))  # the cameras stand 4 and 5 m from the origin
    assert np.all((pixels > 0) & (pixels < camera.size)), pixels
    feet = pixels[FEET].mean(0)
    height = feet[1] - pixels[HEAD, 1]  # about the pinhole's focal x 1.72 m / depth
    pinhole = camera.intrinsics[1, 1] * 1.72 / np.mean(depth[[HEAD] + FEET])
    assert 0.95 * pinhole < height < 1.02 * pinhole  # barrel distortion: 0.98-0.99 here
    assert abs(pixels[HEAD, 0] - feet[0]) < 0.1 * height  # the head straight above the feet
  centre = -camera.rotation.T @ camera.translation
  assert 1.0 < centre[2] < 2.0  # a camera at a person's height (1.34 and 1.38 m)


def _dots(camera, points, sigma=4.0):
  """An image of Gaussian dots at the points' pixels through the distorted camera."""
  width, height = camera.size
  yy, xx = np.mgrid[0:height, 0:width] + 0.5  # pixel centres, as the renderer's
  image = np.zeros((height, width))
  for u, v in _opencv_project(camera, points):
    near = (slice(max(int(v - 6 * sigma), 0), int(v + 6 * sigma)),
            slice(max(int(u - 6 * sigma), 0), int(u + 6 * sigma)))
    dot = np.exp(-((xx[near] - u)**2 + (yy[near] - v)**2) / (2 * sigma**2))
    image[near] = np.maximum(image[near], dot)
  return np.repeat((image * 255).round().astype(np.uint8)[..., None], 3, -1)


def _centroid(image, near, radius=6.0):
  yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
  weight = image[..., 0] * (((xx - near[0])**2 + (yy - near[1])**2) < radius**2)
  return np.array([np.sum(weight * xx), np.sum(weight * yy)]) / np.sum(weight)


def test_crop_shows_the_points_where_the_crop_camera_projects_them():
  camera, size, margin = cameras.MOVI_CAMERAS["PG1"], 256, 0.2
  person = PERSON + [1.3, 0.5, 0.0]  # at the right of PG1's image, where distortion is large
  pixels = _opencv_project(camera, person)
  assert np.abs(pixels - _pinhole(camera, person)).max() > 5
  box = cameras.person_box(pixels, margin, camera.size)
  crop = cameras.crop_camera(camera, box, size)
  dots = _dots(camera, person)
  image = cameras.crop_image(dots, camera, crop, size)
  assert image.shape == (size, size, 3) and image.dtype == np.uint8
  # 3D points in the crop camera's frame project with its K where the dots are.
  expected = _pinhole(crop, person)
  found = np.array([_centroid(image, p) for p in expected])
  np.testing.assert_allclose(found, expected, atol=0.1)  # measured 0.03 px
  # The crop holds all of them, inside the margin: the points span 256 / 1.4 = 183 px of it
  # (the perspective turn and the distortion change that by a few px).
  low, high = expected.min(0), expected.max(0)
  border = size * margin / (1 + 2 * margin)  # 36.6 px
  assert np.all(low > 0.9 * border) and np.all(high < size - 0.9 * border)
  assert abs(np.max(high - low) - size / (1 + 2 * margin)) < 0.05 * size
  # Ignoring the distortion puts the dots elsewhere (2.6 px away).
  flat = cameras.crop_image(dots, camera._replace(distortion=np.zeros(2)), crop, size)
  assert np.max([np.linalg.norm(_centroid(flat, p) - p) for p in expected]) > 1


def test_crop_is_black_outside_the_image_and_where_strong_distortion_folds_rays_back():
  # x_d = x (1 - 0.3 r^2) grows up to r^2 = 1 / 0.9, where it reaches 0.70 (690 px); rays
  # further out would come back in (r = 1.5: 0.49, 480 px from the centre).
  camera = cameras.MOVI_CAMERAS["PG1"]._replace(distortion=np.array([-0.3, 0.0]))
  fold = 1 / 0.9
  assert cameras.monotone_radius2(camera.distortion) == pytest.approx(fold)
  assert cameras.monotone_radius2(cameras.MOVI_CAMERAS["PG1"].distortion) == np.inf
  crop = cameras.crop_camera(camera, (300.0, 200.0, 200.0), 64)._replace(
      intrinsics=np.array([[16.0, 0, 32], [0, 16, 32], [0, 0, 1]]))  # 127 deg wide
  image = cameras.crop_image(np.full((600, 800, 3), 255, np.uint8), camera, crop, 64)
  v, u = np.mgrid[0:64, 0:64] + 0.5
  ray = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(crop.intrinsics).T @ \
      crop.rotation @ camera.rotation.T  # in the real camera's frame
  points = (ray.reshape(-1, 3) - camera.translation) @ camera.rotation  # R^T (x - t)
  pixels = _opencv_project(camera, points).reshape(64, 64, 2)
  r2 = (ray[..., 0]**2 + ray[..., 1]**2) / ray[..., 2]**2
  seen = (r2 < fold) & np.all((pixels > 1) & (pixels < np.array(camera.size) - 1), -1)
  unseen = (r2 > fold) | np.any((pixels < -1) | (pixels > np.array(camera.size) + 1), -1)
  assert np.all(image[seen] == 255) and np.all(image[unseen] == 0)
  folded = (r2 > fold) & np.all((pixels > 0) & (pixels < camera.size), -1)
  assert np.count_nonzero(folded) > 1000 and np.count_nonzero(seen) > 100  # 1197, 140


def test_crop_camera_is_at_the_real_one_looking_at_the_box_upright():
  camera = cameras.MOVI_CAMERAS["PG2"]
  box = (500.0, 40.0, 300.0)  # off-centre, towards a corner
  crop = cameras.crop_camera(camera, box, 128)
  np.testing.assert_allclose(-crop.rotation.T @ crop.translation,
                             -camera.rotation.T @ camera.translation, atol=1e-9)
  np.testing.assert_allclose(crop.rotation @ crop.rotation.T, np.eye(3), atol=1e-12)
  up = np.array(cameras.WORLD_UP)
  assert abs(crop.rotation[0] @ up) < 1e-9 and crop.rotation[1] @ up < 0  # no roll, z up
  np.testing.assert_allclose(crop.intrinsics[:2, 2], [64, 64])
  assert crop.intrinsics[0, 0] == crop.intrinsics[1, 1] and crop.intrinsics[0, 1] == 0
  # A point on the ray through the box's centre, and through the middles of its sides.
  targets = np.array([[650, 190], [500, 190], [800, 190]], float)
  points = _points_on_rays(camera, np.asarray(cameras.undistort_pixels(camera, targets)), 3.0)
  np.testing.assert_allclose(_opencv_project(camera, points), targets, atol=1e-3)
  in_crop = _pinhole(crop, points)
  np.testing.assert_allclose(in_crop[0], [64, 64], atol=1e-3)
  assert abs(in_crop[2, 0] - in_crop[1, 0] - 128) < 0.1 * 128  # the side's middles, tilted


def test_person_box_leaves_out_what_the_camera_does_not_see():
  pixels = np.array([[100.0, 200.0], [140.0, 300.0], [np.nan, np.nan], [900.0, 250.0],
                     [120.0, -5.0]])
  np.testing.assert_allclose(cameras.person_box(pixels, 0.1, (800, 600)),
                             (120 - 60, 250 - 60, 120))
  assert cameras.person_box(pixels[2:], 0.1, (800, 600)) is None


def test_cameras_file_round_trip(tmp_path):
  path = tmp_path / "cameras.json"
  moved = cameras.MOVI_CAMERAS["PG2"]._replace(translation=np.array([0.1, 0.2, 3.0]),
                                              size=(1920, 1080))
  cameras.save_cameras(path, {"PG1": cameras.MOVI_CAMERAS["PG1"], "PG2": moved})
  path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Windows editors save UTF-8
  loaded = cameras.load_cameras(path, names=("PG1", "PG2"))
  assert list(loaded) == ["PG1", "PG2"]
  for name, camera in [("PG1", cameras.MOVI_CAMERAS["PG1"]), ("PG2", moved)]:
    for key in ("intrinsics", "rotation", "translation", "distortion"):
      np.testing.assert_array_equal(getattr(loaded[name], key), getattr(camera, key))
    assert loaded[name].size == camera.size


def _fields(**change):
  fields = {key: np.asarray(getattr(cameras.MOVI_CAMERAS["PG1"], key)).tolist()
            for key in ("intrinsics", "rotation", "translation", "distortion", "size")}
  fields.update(change)
  return {key: value for key, value in fields.items() if value is not None}


@pytest.mark.parametrize("content, message", [
    (None, "no such camera file"),
    ("{not json", "not a JSON camera file"),
    ("[]", "expected cameras by name"),
    (json.dumps({"PG1": [1, 2]}), "camera 'PG1' is not an object"),
    (json.dumps({"PG1": _fields(distortion=None)}), "camera 'PG1' has no 'distortion'"),
    (json.dumps({"PG1": _fields(rotaton=1)}), "unknown key 'rotaton' (did you mean 'rotation'"),
    (json.dumps({"PG1": _fields(rotation=[[1, 0], [0, 1]])}), "'rotation' must be 3 x 3"),
    (json.dumps({"PG1": _fields(rotation=np.diag([1, 1, -1]).tolist())}), "not a rotation"),
    (json.dumps({"PG1": _fields(translation=["a", 0, 0])}), "'translation' must be 3 numbers"),
    (json.dumps({"PG1": _fields(intrinsics=[[979, 0, 408], [0, 978, 291], [0, 0, 0]])}),
     "'intrinsics' must be"),
    (json.dumps({"PG2": _fields(size=[800.5, 600])}), "camera 'PG2': 'size' must be"),
    (json.dumps({"PG1": _fields(distortion=[-1.8, 0.2])}), "'distortion' folds inside"),
])
def test_bad_cameras_file_names_the_file_and_the_key(tmp_path, content, message):
  path = tmp_path / "cameras.json"
  if content is not None:
    path.write_text(content)
  with pytest.raises(UserError) as error:
    cameras.load_cameras(path)
  assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
  assert "\n" not in str(error.value)
