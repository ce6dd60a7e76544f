"""``python -m experiments.bench boxes``: how well ``experiments.infer``'s person finder
(background subtraction, no ``--boxes``) holds the person on static-camera clips.

Each clip is rendered here (the synthetic renderer, a textured backdrop, camera noise,
H.264): a portrait view of a person walking, with known true boxes (the inference margin
around their projected markers, the form of the issue's full-body box). The clips:

- ``walk``: walking across the view;
- ``second``: the same, with a second, differently dressed person crossing the other way
  behind them;
- ``slow``: a slow walker (a fifth of the distance);
- ``stop``: walking, then standing still for the rest of the clip (more than half of it:
  the clip's median frame holds them);
- ``stop_second``: stopping, and a second person passing behind them while they stand;
- ``front``: a second person crossing the other way in front of them, hiding them for a
  while;
- ``legs``: walking in trousers of nearly the colour of the backdrop behind them (a fifth
  of the rendered contrast: background subtraction sees their legs only in parts).

The table gives, per clip, the median IoU of each frame's box with the truth, the
fraction of frames above 0.7 and of frames where the person counts as found. Given
``--workdir`` (a run with a box head), the same for the whole pipeline with the default
``--steer``.
"""

import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import boxes, cli
from d3ke_jax.data import render, synthetic
from d3ke_jax.data.frames import default_model
from d3ke_jax.infer import locate, pipeline
from d3ke_jax.io.video import FrameReader, write_video
from d3ke_jax.skeleton import forward_kinematics

CHUNK = 4  # frames rendered at once (memory)
CLIPS = ("walk", "second", "slow", "stop", "stop_second", "legs", "front")
LEGS = ("pelvis", "femur_r", "tibia_r", "femur_l", "tibia_l")  # the trousers
LOW_CONTRAST = 0.2  # their difference from the backdrop, of what the renderer draws
WIDTH, HEIGHT = 270, 480  # a quarter of a portrait 1080x1920 phone video
DISTANCE, FOCAL = 4.5, 520.0  # the person about 2/3 of the frame's height
NOISE = 3.0  # camera noise, levels (standard deviation per pixel and channel)


_DRAW = jax.jit(jax.vmap(render.render, in_axes=(None, None, 0, None, None)))


def _person(model, subject_index, frames, lateral, depth, stop=None):
  """Coordinates (T, C) and scales of a subject walking along the image's x axis
  (``lateral`` (T,) metres), ``depth`` metres behind the origin; from frame ``stop`` on
  they stand still (the pose and place of that frame)."""
  subject = synthetic.make_subject(model, subject_index)
  coords = synthetic.movement(model, "walking", subject, frames)
  coords[:, model.coordinate_index("pelvis_tz")] += lateral
  coords[:, model.coordinate_index("pelvis_tx")] -= depth
  if stop is not None:
    coords[stop:] = coords[stop]
  return coords, subject.scales


def render_clip(name, frames=72, width=WIDTH, height=HEIGHT, seed=0):
  """(frames (T, H, W, 3) uint8, true boxes (T, 3) of the main person) of clip ``name``."""
  if name not in CLIPS:
    raise KeyError(f"unknown clip {name!r}; choose from {', '.join(CLIPS)}")
  model = default_model()
  rng = np.random.default_rng(seed)
  scale = height / HEIGHT
  view = render.look_at((DISTANCE, 1.0, 0.0), (0.0, 0.9, 0.0), FOCAL * scale,
                        (width / 2, height / 2))
  backdrop = render.background(rng, max(width, height))[:height, :width]
  time = np.linspace(0, 1, frames)
  travel = 0.12 if name == "slow" else 0.6
  stop = int(0.4 * frames) if name.startswith("stop") else None
  people = [_person(model, 7, frames, travel * (2 * time - 1), 0.0, stop)]
  depths = [0.0]
  if name in ("second", "stop_second"):  # further back, crossing the other way
    people.append(_person(model, 8, frames, 1.4 * (1 - 2 * time), 1.5))
    depths.append(1.5)
  if name == "front":  # nearer, crossing the other way in front of them
    people.append(_person(model, 8, frames, 1.0 * (1 - 2 * time), -1.0))
    depths.append(-1.0)
  shapes = render.body_shapes(model)
  layers, truth = [], None
  for k, (coords, body_scales) in enumerate(people):
    outfit = shapes._replace(colour=render.clothing_colours(
        model.body_names, np.random.default_rng([seed, k])))
    out = forward_kinematics(model, coords, scales=body_scales)
    parts = [_DRAW(view, outfit, out.body_transforms[t:t + CHUNK], jnp.asarray(body_scales),
                  jnp.asarray(backdrop)) for t in range(0, frames, CHUNK)]
    image = np.concatenate([np.asarray(image) for image, _ in parts])
    body = np.concatenate([np.asarray(body) for _, body in parts])
    if name == "legs" and k == 0:  # trousers of nearly the backdrop's colour
      faint = np.isin(body, [model.body_index(b) for b in LEGS])
      image[faint] = backdrop[np.nonzero(faint)[1:]] + LOW_CONTRAST * (
          image[faint] - backdrop[np.nonzero(faint)[1:]])
    layers.append((image, body >= 0))
    if k == 0:
      pixels = np.asarray(render.project(view, out.markers)[0])
      truth = np.asarray(boxes.square(pixels, boxes.MARGIN), float)
  images = np.broadcast_to(backdrop, (frames, height, width, 3)).copy()
  for k in np.argsort(depths)[::-1]:  # the nearest person drawn last
    images[layers[k][1]] = layers[k][0][layers[k][1]]
  images = images * 255 * rng.uniform(0.98, 1.02, (frames, 1, 1, 1))  # flicker
  images += rng.normal(0, NOISE, images.shape)
  return np.clip(np.round(images), 0, 255).astype(np.uint8), truth


def write_clip(path, name, **kwargs):
  """Writes ``render_clip`` as an H.264 .mp4; returns (path, true boxes)."""
  images, truth = render_clip(name, **kwargs)
  return write_video(path, images, synthetic.RATE), truth


def find(path):
  """(boxes (T, 3), sources (T,)) of the default finder on the video ``path``."""
  tracker = locate.BackgroundTracker.of_video(path)
  found, sources = zip(*(tracker(frames, 0) for frames, _ in FrameReader(path, 32)))
  return np.concatenate(found), np.concatenate(sources)


def scores(found, truth, sources):
  """(median IoU, fraction of frames over 0.7, fraction found)."""
  overlap = boxes.iou(found, truth)
  return float(np.median(overlap)), float(np.mean(overlap > 0.7)), float(
      np.mean(np.isin(sources, locate.FOUND)))


def add_parser(subparsers):
  """Registers the ``boxes`` benchmark on ``experiments.bench``'s subcommands."""
  parser = subparsers.add_parser("boxes", help="the person finder's boxes on rendered clips")
  parser.add_argument("--clips", nargs="+", choices=CLIPS, default=list(CLIPS))
  parser.add_argument("--frames", type=cli.number(int, 0), default=72)
  parser.add_argument("--workdir", help="also the whole pipeline of this run (box head "
                      "steering, the default --steer)")
  parser.set_defaults(run=bench_boxes)
  return parser


def bench_boxes(args):
  predictor = pipeline.load_predictor(args.workdir, "per_frame") if args.workdir else None
  print(f"{args.frames} frames per clip, {WIDTH}x{HEIGHT} portrait, 30 fps, camera noise "
        f"{NOISE:g} levels, H.264\n")
  header = "| clip | finder: median IoU | IoU > 0.7 | found |" + (
      " steered: median IoU | IoU > 0.7 |" if predictor else "")
  print(header)
  print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|", flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.clips:
      path, truth = write_clip(f"{tmp}/{name}.mp4", name, frames=args.frames)
      found, sources = find(path)
      median, above, share = scores(found, truth, sources)
      row = f"| {name} | {median:.3f} | {above:.0%} | {share:.0%} |"
      if predictor:
        prediction = pipeline.predict_video(predictor, path,
                                            locate.BackgroundTracker.of_video(path), 16)
        median, above, _ = scores(prediction.boxes, truth, prediction.source)
        row += f" {median:.3f} | {above:.0%} |"
      print(row, flush=True)
