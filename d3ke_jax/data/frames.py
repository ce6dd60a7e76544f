"""Clips of rendered frames with their ground truth, as plain dicts of arrays."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import boxes
from d3ke_jax.data import hard as hard_cases
from d3ke_jax.data import render, synthetic
from d3ke_jax.skeleton import forward_kinematics, load_osim

VIEWS = {  # MoVi's two cameras: in front of the subject (facing +x) and at its right side
    "frontal": (4.0, 1.1, 0.0),
    "sagittal": (0.0, 1.1, 4.0),
}
FOCAL, CENTRE = 1000.0, (960.0, 540.0)  # a 1920 x 1080 camera
# The person box's margin around the projected points, relative, drawn once per clip
# (inference uses ``boxes.MARGIN``).
MARGIN_RANGE = (0.1, 0.25)


@functools.lru_cache(maxsize=1)
def default_model():
  return load_osim()


@functools.lru_cache(maxsize=1)
def _renderer():
  return jax.jit(jax.vmap(render.render, in_axes=(0, None, 0, None, 0, None, None)))


def camera(view):
  return render.look_at(VIEWS[view], (0.0, 0.9, 0.0), FOCAL, CENTRE)


def clip_id(subject, movement, view, movements):
  return (subject * len(movements) + list(movements).index(movement)) * len(VIEWS) + list(
      VIEWS).index(view)


# How bodies are coloured: "sided" (right red, left blue) or "clothing" (one outfit per
# subject and movement, seen by both views; left and right alike).
COLOURS = ("sided", "clothing")
OUTFIT_STREAM = 1  # tells the outfits' random streams from the subjects' and the clips'


def generate(subjects, movements, frames, size, seed=0, colours="sided", hard_fraction=0.0):
  """Yields one example dict per frame, clip by clip (subject, movement, view), in order;
  ``hard_fraction`` of each clip's frames are made hard (``d3ke_jax.data.hard``), the
  example's ``hard`` saying how (``"none"`` for a clean frame)."""
  if colours not in COLOURS:
    raise ValueError(f"colours={colours!r}: choose from {COLOURS}")
  model = default_model()
  shapes = render.body_shapes(model)
  for subject_index in subjects:
    subject = synthetic.make_subject(model, subject_index, seed)
    for movement in movements:
      coords = synthetic.movement(model, movement, subject, frames)
      out = forward_kinematics(model, coords, scales=subject.scales)
      if colours == "clothing":
        outfit = np.random.default_rng([seed, subject_index, sorted(synthetic.MOVEMENTS).index(
            movement), OUTFIT_STREAM])
        shapes = shapes._replace(colour=render.clothing_colours(model.body_names, outfit))
      for view in VIEWS:
        clip = clip_id(subject_index, movement, view, movements)
        yield from _clip(model, shapes, subject, movement, view, clip, coords, out, size, seed,
                         hard_fraction)


def _clip(model, shapes, subject, movement, view, clip, coords, out, size, seed,
          hard_fraction=0.0):
  rng = np.random.default_rng([seed, clip])
  # The hard frames draw from a stream of their own: clean frames stay as they were.
  hard_rng = np.random.default_rng([seed, clip, hard_cases.STREAM])
  kinds = hard_cases.choose(hard_rng, len(coords), hard_fraction)
  full = camera(view)
  markers_px, _ = render.project(full, out.markers)
  joints_px, _ = render.project(full, out.joint_origins)
  crops, person_boxes = [], []
  margin = rng.uniform(*MARGIN_RANGE)
  for t in range(len(coords)):
    box = np.asarray(boxes.square(np.asarray(markers_px[t]), margin), float)
    if kinds[t] == "outside":
      box = hard_cases.outside_box(box, np.asarray(joints_px[t]), hard_rng)
    person_boxes.append(box)
    crops.append(render.crop_camera(full, box, size))
  cameras = render.Camera(*(np.stack(parts) for parts in zip(*crops)))
  backgrounds = np.repeat(render.background(rng, size)[None], len(coords), 0)
  # Lighting varies by clip: from the camera's side, above, at random.
  light = jnp.asarray([rng.uniform(-0.6, 0.6), rng.uniform(0.2, 0.8), 1.0])
  images, _ = _renderer()(cameras, shapes, out.body_transforms, jnp.asarray(subject.scales),
                          jnp.asarray(backgrounds), light, rng.uniform(0.25, 0.45))
  images = np.array(images)
  for t, kind in enumerate(kinds):
    if kind == "occluded":
      joints_2d = np.asarray(render.project(_crop_at(cameras, t), out.joint_origins[t])[0])
      images[t] = hard_cases.occlude(images[t], joints_2d, hard_rng)[0]
    elif kind == "blurred":
      images[t] = hard_cases.blur(images[t], hard_rng)
  images = images + rng.normal(0, 0.02, np.shape(images))
  images = (np.clip(images, 0, 1) * 255).astype(np.uint8)
  rotation = np.asarray(full.rotation)
  to_camera = lambda p: np.asarray(p) @ rotation.T + full.translation
  for t in range(len(coords)):
    crop = _crop_at(cameras, t)
    yield {
        "image": images[t],
        "coordinates": coords[t].astype(np.float32),
        "scales": subject.scales.astype(np.float32),
        "pelvis_rotation": (rotation @ np.asarray(out.body_transforms[t, model.root_body, :3, :3])
                            ).astype(np.float32),
        "joints": to_camera(out.joint_origins[t]).astype(np.float32),
        "markers": to_camera(out.markers[t]).astype(np.float32),
        "joints_2d": np.asarray(render.project(crop, out.joint_origins[t])[0], np.float32),
        "markers_2d": np.asarray(render.project(crop, out.markers[t])[0], np.float32),
        "box": np.asarray(person_boxes[t], np.float32),
        "intrinsics": crop.intrinsics.astype(np.float32),
        "camera_rotation": rotation.astype(np.float32),
        "camera_translation": np.asarray(full.translation, np.float32),
        "subject": subject.index, "clip": clip, "frame": t,
        "movement": movement, "view": view, "frame_valid": True,
        "coordinate_valid": np.ones(model.num_coordinates, bool), "hard": kinds[t],
    }


def _crop_at(cameras, t):
  return render.Camera(cameras.intrinsics[t], cameras.rotation[t], cameras.translation[t])


def crossing_scene(subject_index, movement, frames, width, height, focal, distance, travel,
                   seed=0, colours="sided"):
  """A static camera, ``distance`` metres in front of the origin, watching a subject do
  ``movement`` while crossing its view (``travel`` metres either way): (images (T, height,
  width, 3) uint8, true boxes (T, 3) with ``boxes.MARGIN`` around the projected markers,
  coordinates (T, C), the empty backdrop uint8). The backdrop (and the outfit, for
  ``colours="clothing"``) come from ``seed``."""
  model = default_model()
  subject = synthetic.make_subject(model, subject_index)
  coords = synthetic.movement(model, movement, subject, frames)
  coords[:, model.coordinate_index("pelvis_tz")] += np.linspace(-travel, travel, frames)
  out = forward_kinematics(model, coords, scales=subject.scales)
  view = render.look_at((distance, 1.1, 0.0), (0.0, 0.9, 0.0), focal, (width / 2, height / 2))
  rng = np.random.default_rng(seed)
  backdrop = render.background(rng, width)[:height]
  shapes = render.body_shapes(model)
  if colours == "clothing":
    shapes = shapes._replace(colour=render.clothing_colours(model.body_names, rng))
  draw = jax.jit(jax.vmap(render.render, in_axes=(None, None, 0, None, None, None, None)))
  images, _ = draw(view, shapes, out.body_transforms, jnp.asarray(subject.scales),
                   jnp.asarray(backdrop), jnp.asarray((-0.3, 0.5, 1.0)), 0.35)
  pixels = np.asarray(render.project(view, out.markers)[0])
  truth = np.asarray(boxes.square(pixels, boxes.MARGIN), float)
  uint8 = lambda image: (np.asarray(image) * 255).astype(np.uint8)
  return uint8(images), truth, coords, uint8(backdrop)
