"""A vectorized ray-casting renderer for posed skeletal models (JAX).

Every body is drawn as an ellipsoid fitted to the points fixed to it (its origin, its
markers and its children's joints); a pixel shows the nearest ellipsoid its ray hits
(a z-buffer), shaded by a directional light. Bodies are coloured by side (``body_shapes``:
right red, left blue, a cue no real video has) or dressed (``clothing_colours``: skin, shirt,
trousers and shoes, the same on both sides). Cameras are pinhole (OpenCV convention: x right,
y down, z forward).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax.skeleton.model import SkeletalModel, body_points


class Camera(NamedTuple):
  """World -> camera: x_cam = rotation @ x_world + translation; pixels = K x_cam / z."""
  intrinsics: np.ndarray  # (3, 3)
  rotation: np.ndarray  # (3, 3)
  translation: np.ndarray  # (3,)


def look_at(eye, target, focal, centre, up=(0.0, 1.0, 0.0)):
  """A camera at ``eye`` looking at ``target`` with the world's ``up`` upwards in the image."""
  eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
  forward = (target - eye) / np.linalg.norm(target - eye)
  right = np.cross(forward, up)
  right /= np.linalg.norm(right)
  down = np.cross(forward, right)
  rotation = np.stack([right, down, forward])
  intrinsics = np.array([[focal, 0, centre[0]], [0, focal, centre[1]], [0, 0, 1.0]])
  return Camera(intrinsics, rotation, -rotation @ eye)


def project(camera: Camera, points):
  """(..., 3) world points -> (..., 2) pixels and (...,) depths."""
  cam = jnp.asarray(points) @ jnp.asarray(camera.rotation).T + jnp.asarray(camera.translation)
  pixels = cam @ jnp.asarray(camera.intrinsics).T
  return pixels[..., :2] / pixels[..., 2:], cam[..., 2]


def crop_camera(camera: Camera, box, size):
  """The camera whose image is the square ``box`` (x0, y0, side) resampled to ``size`` px."""
  x0, y0, side = box
  zoom = size / side
  shift = np.array([[zoom, 0, -zoom * x0], [0, zoom, -zoom * y0], [0, 0, 1.0]])
  return Camera(shift @ np.asarray(camera.intrinsics), camera.rotation, camera.translation)


class BodyShapes(NamedTuple):
  """One ellipsoid per body, in the body frame of the unscaled model."""
  centre: np.ndarray  # (B, 3)
  axes: np.ndarray  # (B, 3, 3) columns are the principal directions
  radii: np.ndarray  # (B, 3) semi-axes, metres
  colour: np.ndarray  # (B, 3) RGB in [0, 1]


def body_shapes(model: SkeletalModel, padding=0.03, min_radius=0.05):
  """Ellipsoids enclosing each body's points (origin, markers, child joints)."""
  centre, axes, radii, colour = [], [], [], []
  for p, name in zip(body_points(model), model.body_names):
    c = (p.max(0) + p.min(0)) / 2
    _, _, vt = np.linalg.svd(p - c) if len(p) > 1 else (None, None, np.eye(3))
    local = (p - c) @ vt.T
    r = np.maximum(np.abs(local).max(0) + padding, min_radius)
    centre.append(c)
    axes.append(vt.T)
    radii.append(r)
    side = 1 if name.endswith("_r") else -1 if name.endswith("_l") else 0
    colour.append({1: (0.85, 0.35, 0.3), -1: (0.3, 0.45, 0.85), 0: (0.8, 0.75, 0.65)}[side])
  return BodyShapes(*(np.array(v) for v in (centre, axes, radii, colour)))


# Plausible sRGB colours in [0, 1]; an outfit picks one of each and varies its shade.
SKIN = np.array([(0.96, 0.80, 0.69), (0.92, 0.72, 0.60), (0.84, 0.63, 0.49), (0.71, 0.51, 0.38),
                 (0.56, 0.39, 0.27), (0.40, 0.27, 0.19), (0.29, 0.20, 0.15)])
SHIRTS = np.array([(0.92, 0.92, 0.90), (0.13, 0.13, 0.14), (0.50, 0.50, 0.52), (0.16, 0.21, 0.40),
                   (0.70, 0.16, 0.16), (0.20, 0.45, 0.26), (0.90, 0.80, 0.32), (0.56, 0.70, 0.86),
                   (0.45, 0.30, 0.56), (0.90, 0.50, 0.20), (0.90, 0.62, 0.70), (0.15, 0.50, 0.50)])
TROUSERS = np.array([(0.26, 0.34, 0.50), (0.15, 0.18, 0.28), (0.12, 0.12, 0.13), (0.42, 0.42, 0.44),
                     (0.70, 0.62, 0.45), (0.40, 0.30, 0.21), (0.35, 0.36, 0.21)])
SHOES = np.array([(0.92, 0.92, 0.92), (0.10, 0.10, 0.10), (0.45, 0.45, 0.47), (0.38, 0.25, 0.15)])
# Body (without its side suffix) -> garment; "sleeve" and "leg" are the shirt or the trousers
# when long, skin when short. Other bodies (the trunk, shoulders, upper arms) wear the shirt.
GARMENTS = {"head": "skin", "hand": "skin", "ulna": "sleeve", "radius": "sleeve",
            "pelvis": "trousers", "femur": "trousers", "tibia": "leg", "talus": "shoes",
            "calcn": "shoes", "toes": "shoes"}


def clothing_colours(body_names, rng):
  """(B, 3) colours of one dressed person, equal on left and right: skin on the head and
  hands, a shirt on the trunk and arms (short sleeves one time in three), trousers on the
  pelvis and legs (shorts one time in five), shoes; each a palette colour, shaded by a
  random factor in [0.85, 1.1] and tinted by up to 0.04 per channel."""
  def pick(palette):
    colour = palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1)
    return np.clip(colour + rng.uniform(-0.04, 0.04, 3), 0.0, 1.0)
  outfit = {garment: pick(palette) for garment, palette in (
      ("skin", SKIN), ("shirt", SHIRTS), ("trousers", TROUSERS), ("shoes", SHOES))}
  outfit["sleeve"] = outfit["skin"] if rng.uniform() < 1 / 3 else outfit["shirt"]
  outfit["leg"] = outfit["skin"] if rng.uniform() < 1 / 5 else outfit["trousers"]
  stems = [name[:-2] if name.endswith(("_r", "_l")) else name for name in body_names]
  return np.array([outfit[GARMENTS.get(stem, "shirt")] for stem in stems])


def render(camera: Camera, shapes: BodyShapes, body_transforms, scales, background,
           light=(-0.3, 0.5, 1.0), ambient=0.35):
  """Renders one posed body over a background image.

  Args:
    camera: pinhole camera of the output image.
    shapes: ``body_shapes(model)``.
    body_transforms: (B, 4, 4) world frames of the bodies.
    scales: (B, 3) body scale factors (ellipsoids scale with their body).
    background: (H, W, 3) image in [0, 1].
    light: direction the light travels in camera coordinates.

  Returns:
    (image (H, W, 3) in [0, 1], body index per pixel (H, W), -1 for background).
  """
  height, width = background.shape[:2]
  rotation = jnp.asarray(camera.rotation) @ body_transforms[:, :3, :3]  # body -> camera
  origin = body_transforms[:, :3, 3] @ jnp.asarray(camera.rotation).T + camera.translation
  centre = jnp.einsum("bij,bj->bi", rotation, jnp.asarray(shapes.centre) * scales) + origin
  axes = rotation @ jnp.asarray(shapes.axes)  # (B, 3, 3) principal directions in camera
  radii = jnp.asarray(shapes.radii) * jnp.einsum("bij,bi->bj", jnp.abs(jnp.asarray(shapes.axes)),
                                                 scales)
  v, u = jnp.meshgrid(jnp.arange(height) + 0.5, jnp.arange(width) + 0.5, indexing="ij")
  rays = jnp.stack([u, v, jnp.ones_like(u)], -1) @ jnp.linalg.inv(
      jnp.asarray(camera.intrinsics)).T  # (H, W, 3), z = 1
  # Ray x = t d hits ellipsoid |diag(1/r) A^T (x - c)| = 1 where t^2 a.a - 2 t a.b + b.b = 1.
  a = jnp.einsum("hwi,bij->bhwj", rays, axes) / radii[:, None, None, :]
  b = jnp.einsum("bi,bij->bj", centre, axes) / radii
  aa = jnp.sum(a * a, -1)
  ab = jnp.einsum("bhwj,bj->bhw", a, b)
  disc = ab**2 - aa * (jnp.sum(b * b, -1)[:, None, None] - 1)
  depth = (ab - jnp.sqrt(jnp.maximum(disc, 0))) / aa
  depth = jnp.where((disc > 0) & (depth > 0), depth, jnp.inf)
  nearest = jnp.argmin(depth, axis=0)
  hit = jnp.isfinite(jnp.min(depth, axis=0))
  t = jnp.take_along_axis(depth, nearest[None], 0)[0]
  point = rays * jnp.where(hit, t, 0)[..., None]
  local = jnp.einsum("hwi,hwij->hwj", point - centre[nearest], axes[nearest]) / radii[nearest]**2
  normal = jnp.einsum("hwij,hwj->hwi", axes[nearest], local)
  normal = normal / jnp.maximum(jnp.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
  light = jnp.asarray(light) / jnp.linalg.norm(jnp.asarray(light))
  shade = ambient + (1 - ambient) * jnp.maximum(-jnp.sum(normal * light, -1), 0.0)
  body = jnp.asarray(shapes.colour)[nearest] * shade[..., None]
  image = jnp.where(hit[..., None], body, background)
  return jnp.clip(image, 0.0, 1.0), jnp.where(hit, nearest, -1)


def background(rng, size):
  """A random smooth background: a colour gradient with low-frequency texture."""
  corners = rng.uniform(0.1, 0.9, (2, 2, 3))
  y, x = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
  image = ((1 - y)[..., None] * ((1 - x)[..., None] * corners[0, 0] + x[..., None] * corners[0, 1])
           + y[..., None] * ((1 - x)[..., None] * corners[1, 0] + x[..., None] * corners[1, 1]))
  coarse = rng.normal(0, 0.1, (6, 6, 3))
  texture = np.asarray(jax.image.resize(coarse, (size, size, 3), "cubic"))
  return np.clip(image + texture, 0, 1)
