"""Calibrated cameras with radial distortion (MoVi's PG1 and PG2), and the perspective crop.

A ``DistortedCamera`` is a ``render.Camera`` whose normalised coordinates (x, y) = x_cam[:2] / z
are distorted as OpenCV's radial model, x_d = x (1 + k1 r^2 + k2 r^4), before pixels =
K (x_d, y_d, 1). The crop the network sees is MeTRAbs's: a virtual pinhole camera at the same
optical centre, turned so that its optical axis passes through the person's box, upright
with respect to the world's up, zoomed so that the box's side fills it; ``crop_image``
resamples a real frame into it. Pixel (row i, column j) has its centre at (j + 0.5, i + 0.5),
as in render.py.
"""

import functools
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import boxes
from d3ke_jax.data import render, resample
from d3ke_jax.errors import UserError, did_you_mean
from d3ke_jax.io.atomic import atomic_write

WORLD_UP = (0.0, 0.0, 1.0)  # AMASS's world (z up, metres), which MoVi's extrinsics map from
UNDISTORT_ITERATIONS = 4  # Newton steps: 2 reach 1e-6 px over MoVi's 800 x 600 images, 3 1e-12


class DistortedCamera(NamedTuple):
  """World -> camera: x_cam = rotation @ x_world + translation (as ``render.Camera``); then
  radial distortion of x_cam[:2] / z and pixels = intrinsics @ (x_d, y_d, 1)."""
  intrinsics: np.ndarray  # (3, 3)
  rotation: np.ndarray  # (3, 3)
  translation: np.ndarray  # (3,)
  distortion: np.ndarray  # (2,) k1, k2
  size: tuple  # (width, height) px


def _movi_camera(extrinsic, intrinsics, distortion):
  extrinsic = np.array(extrinsic)
  return DistortedCamera(np.array(intrinsics), extrinsic[:, :3], extrinsic[:, 3],
                         np.array(distortion), (800, 600))


# The calibration the original hard-codes (BMLUtils.CAMERA_TABLE). Its camera maps a world
# point p to (p - c) R^T with c = -R^T t: that is R p + t, so the extrinsic [R | t] is
# (rotation, translation) here. K is taken as given, in this module's pixel convention (were
# it OpenCV's, centres at whole numbers, the frames would sit half a pixel off).
MOVI_CAMERAS = {
    "PG1": _movi_camera(
        [[0.99942183, -0.0305191, 0.01498661, -0.17723154],
         [0.01303452, -0.06318672, -0.9979166, 1.03055751],
         [0.03140247, 0.99753497, -0.06275239, 4.99931781]],
        [[979.17889011, 0, 408.0273103], [0, 978.10179305, 291.16967878], [0, 0, 1]],
        [-0.18236467, 0.18388686]),
    "PG2": _movi_camera(
        [[0.04569302, -0.9988672, -0.01328404, -0.24368025],
         [-0.17839144, 0.00492513, -0.98394727, 0.67257332],
         [0.98289808, 0.04732928, -0.17796432, 4.05087267]],
        [[980.04337094, 0, 392.27529092], [0, 980.69881345, 309.91125524], [0, 0, 1]],
        [-0.22932292, 0.35464834]),
}


def _distort(x, y, distortion):
  """Normalised coordinates -> distorted ones (OpenCV's radial model, k1 and k2)."""
  r2 = x * x + y * y
  factor = 1 + distortion[0] * r2 + distortion[1] * r2 * r2
  return x * factor, y * factor


@functools.partial(jax.jit, static_argnames="iterations")
def undistort(distorted, distortion, iterations=UNDISTORT_ITERATIONS):
  """The inverse of ``distort``, by Newton's method on the ratio s = r / r_d.

  Solves s (1 + k1 s^2 r_d^2 + k2 s^4 r_d^4) = 1 from s = 1, which converges where
  r (1 + k1 r^2 + k2 r^4) increases with r (``monotone_radius2``; everywhere for MoVi's
  cameras, over the image for any that ``load_cameras`` accepts).
  """
  k1, k2 = distortion[0], distortion[1]
  rd2 = jnp.sum(jnp.square(distorted), -1, keepdims=True)

  def newton_step(_, s):
    s2 = s * s * rd2
    return s - (s * (1 + k1 * s2 + k2 * s2**2) - 1) / (1 + 3 * k1 * s2 + 5 * k2 * s2**2)

  return distorted * jax.lax.fori_loop(0, iterations, newton_step, jnp.ones_like(rd2))


def monotone_radius2(distortion):
  """The squared normalised radius up to which r (1 + k1 r^2 + k2 r^4) increases (inf if it
  always does, as for MoVi's cameras): beyond it the model folds rays back towards the
  centre, and undistortion has no unique answer."""
  roots = np.roots([5 * distortion[1], 3 * distortion[0], 1])  # of the derivative, in r^2
  return min((r.real for r in roots if abs(r.imag) < 1e-12 and r.real > 0), default=np.inf)


def _to_pixels(intrinsics, distortion, x, y):
  """Normalised coordinates (x, y) -> pixels (u, v), each as arrays of one component (XLA's
  CPU code is several times slower on a trailing axis of 2 or 3)."""
  x, y = _distort(x, y, distortion)
  return (intrinsics[0, 0] * x + intrinsics[0, 1] * y + intrinsics[0, 2],
          intrinsics[1, 1] * y + intrinsics[1, 2])


@jax.jit
def _normalised(intrinsics, distortion, pixels):
  """(..., 2) pixels -> undistorted normalised coordinates (the rays' x / z, y / z)."""
  distorted = (pixels - intrinsics[:2, 2]) @ jnp.linalg.inv(intrinsics[:2, :2]).T
  return undistort(distorted, distortion)


def project(camera: DistortedCamera, points):
  """(..., 3) world points -> (..., 2) distorted pixels and (...,) depths."""
  cam = jnp.asarray(points) @ jnp.asarray(camera.rotation).T + jnp.asarray(camera.translation)
  u, v = _to_pixels(jnp.asarray(camera.intrinsics), camera.distortion, cam[..., 0] / cam[..., 2],
                    cam[..., 1] / cam[..., 2])
  return jnp.stack([u, v], -1), cam[..., 2]


def undistort_pixels(camera: DistortedCamera, pixels):
  """(..., 2) pixels of ``camera`` -> where the same rays meet its image without distortion."""
  intrinsics = jnp.asarray(camera.intrinsics)
  normalised = _normalised(intrinsics, camera.distortion, pixels)
  return normalised @ intrinsics[:2, :2].T + intrinsics[:2, 2]


def person_box(pixels, margin, image_size):
  """The square box (x0, y0, side) around the (K, 2) projected points, with a relative margin
  (``boxes.square``); None where fewer than two points are in the image.

  Points outside the image (width, height) and NaN rows are left out: the box holds what
  the camera sees of the person, as a detector's would.
  """
  pixels = np.asarray(pixels, float)
  inside = np.all((pixels >= 0) & (pixels < np.asarray(image_size, float)), axis=-1)
  if np.count_nonzero(inside) < 2:
    return None
  return boxes.square(pixels, margin, inside)


def crop_camera(camera: DistortedCamera, box, size, up=WORLD_UP):
  """The pinhole camera of the perspective crop of the square ``box`` (x0, y0, side) to
  ``size`` px (a ``render.Camera``).

  It sits at ``camera``'s optical centre, its optical axis through the box's centre, the
  world's ``up`` upwards in its image; its square pixels are zoomed so that the rays through
  the middles of the box's left and right sides are ``size`` px apart, and its principal
  point is the crop's centre (MeTRAbs's crop, digest 4.2).
  """
  side = box[2]
  pixels = boxes.centre(np.asarray(box)) + np.array([[0.0, 0.0], [-side / 2, 0.0], [side / 2, 0.0]])
  normalised = np.asarray(_normalised(camera.intrinsics, camera.distortion, pixels), float)
  rotation = np.asarray(camera.rotation, float)
  rays = np.concatenate([normalised, np.ones((3, 1))], -1) @ rotation  # world directions
  eye = -rotation.T @ np.asarray(camera.translation, float)
  turned = render.look_at(eye, eye + rays[0], 1.0, (0.0, 0.0), up).rotation
  sides = rays[1:] @ turned.T
  length = np.linalg.norm(sides[1, :2] / sides[1, 2] - sides[0, :2] / sides[0, 2])
  return render.look_at(eye, eye + rays[0], size / length, (size / 2, size / 2), up)


def crop_image(image, camera: DistortedCamera, crop: render.Camera, size):
  """The (size, size, 3) uint8 image of the ``crop`` camera, resampled from ``image``
  (H, W, 3) uint8 of the real ``camera``: each crop pixel's ray, distorted into the real
  image, is read there (bilinear); black where it falls outside."""
  to_real = np.asarray(camera.rotation, float) @ np.asarray(crop.rotation, float).T
  return np.asarray(_crop_image(image, camera.intrinsics, camera.distortion,
                                monotone_radius2(camera.distortion), crop.intrinsics, to_real,
                                size))


@functools.partial(jax.jit, static_argnames=("size",))
def _crop_image(image, intrinsics, distortion, radius2, crop_intrinsics, to_real, size):
  """``to_real``: the rotation from the crop camera's frame to the real one's (the two share
  their optical centre, so rays need no translation); rays past ``radius2`` (where the
  distortion folds) are black."""
  v, u = jnp.meshgrid(jnp.arange(size) + 0.5, jnp.arange(size) + 0.5, indexing="ij")
  ray = to_real @ jnp.linalg.inv(crop_intrinsics)  # crop pixel (u, v, 1) -> real camera ray
  x, y, z = (ray[i, 0] * u + ray[i, 1] * v + ray[i, 2] for i in range(3))
  x, y = x / z, y / z
  u, v = _to_pixels(intrinsics, distortion, x, y)
  values = resample.sample(image, u, v, (z > 0) & (x * x + y * y < radius2))
  return jnp.clip(jnp.round(values), 0, 255).astype(jnp.uint8)


_FIELDS = {"intrinsics": (3, 3), "rotation": (3, 3), "translation": (3,), "distortion": (2,),
           "size": (2,)}


def save_cameras(path, cameras):
  """Writes ``{name: DistortedCamera}`` as the JSON file ``load_cameras`` reads."""
  data = {name: {key: np.asarray(getattr(camera, key)).tolist() for key in _FIELDS}
          for name, camera in cameras.items()}
  with atomic_write(path) as f:
    json.dump(data, f, indent=2)


def load_cameras(path, names=None):
  """``{name: DistortedCamera}`` from a JSON file {"PG1": {"intrinsics": 3x3, "rotation":
  3x3, "translation": 3, "distortion": [k1, k2], "size": [width, height]}, ...}, e.g. to
  override ``MOVI_CAMERAS``; camera names must be among ``names`` (default: any). A mistake
  raises ``UserError`` naming the file, camera and key."""
  try:
    with open(path, encoding="utf-8-sig") as f:
      data = json.load(f)
  except FileNotFoundError:
    raise UserError(f"{path}: no such camera file") from None
  except RecursionError:
    raise UserError(f"{path}: not a camera file (nested too deeply)") from None
  except (OSError, ValueError) as e:  # ValueError: JSON's errors, an integer of 4300 digits
    raise UserError(f"{path}: not a JSON camera file ({e})") from None
  if not isinstance(data, dict) or not data:
    raise UserError(f'{path}: expected cameras by name, e.g. {{"PG1": {{"intrinsics": ...}}}}')
  for name in data:
    if names is not None and name not in names:
      raise UserError(f"{path}: unknown camera {name!r}{did_you_mean(name, names)}")
  return {name: _camera(f"{path}: camera {name!r}", fields) for name, fields in data.items()}


def _camera(where, fields):
  if not isinstance(fields, dict):
    raise UserError(f"{where} is not an object of {', '.join(_FIELDS)}")
  for key in fields:
    if key not in _FIELDS:
      raise UserError(f"{where}: unknown key {key!r}{did_you_mean(key, _FIELDS)}")
  values = {}
  for key, shape in _FIELDS.items():
    if key not in fields:
      raise UserError(f"{where} has no {key!r}")
    values[key] = _numbers(fields[key])
    if values[key] is None or values[key].shape != shape or not np.isfinite(values[key]).all():
      raise UserError(f"{where}: {key!r} must be {' x '.join(map(str, shape))} numbers")
  k, r, size = values["intrinsics"], values["rotation"], values["size"]
  if np.any(k[2] != (0, 0, 1)) or k[1, 0] != 0 or k[0, 0] <= 0 or k[1, 1] <= 0:
    raise UserError(f"{where}: 'intrinsics' must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] "
                    "with fx, fy > 0")
  if np.abs(r @ r.T - np.eye(3)).max() > 1e-4 or np.linalg.det(r) < 0:
    raise UserError(f"{where}: 'rotation' is not a rotation matrix (orthonormal, determinant 1)")
  if np.any(size <= 0) or np.any(size != np.round(size)):
    raise UserError(f"{where}: 'size' must be [width, height], whole numbers of pixels")
  camera = DistortedCamera(k, r, values["translation"], values["distortion"],
                           (int(size[0]), int(size[1])))
  if _folds_inside_the_image(camera):
    raise UserError(f"{where}: 'distortion' folds inside the image (the distorted radius "
                    "must grow with the radius up to the image's corners)")
  return camera


def _numbers(value):
  """A float array of nested lists of JSON numbers, else None (text and booleans included)."""
  cells = np.array(value, dtype=object)
  if not all(type(cell) in (int, float) for cell in cells.flat):
    return None
  try:
    return cells.astype(float)
  except OverflowError:  # an integer beyond float
    return None


def _folds_inside_the_image(camera: DistortedCamera):
  fold = monotone_radius2(camera.distortion)
  if not np.isfinite(fold):
    return False
  k = camera.intrinsics
  corners = (np.array([[0, 0], [1, 0], [0, 1], [1, 1]]) * camera.size - k[:2, 2]) @ \
      np.linalg.inv(k[:2, :2]).T
  k1, k2 = camera.distortion
  return np.linalg.norm(corners, axis=-1).max() >= np.sqrt(fold) * (1 + k1 * fold + k2 * fold**2)
