"""``python -m experiments.bench steer --workdir RUN``: how well a trained run's box head
steers ``experiments.infer``'s crops onto the person, and what it does to the angles.

A subject the run never saw walks across a static camera's view (the synthetic renderer,
the run's dataset's colours); every frame's first box is the true one (the inference
margin around the projected markers) moved by up to ``--jitter`` of its side and scaled by
up to ``exp(+-jitter)``, as a rough detector or tracker would give it. The table gives, for
0, 1, 2... network re-crops (``--steer``), the boxes' IoU with the truth, the predicted
angles' error against the true motion (MAE_angle, deg) and frames/s of the whole
``predict_video``.
"""

import tempfile
import time

import jax
import numpy as np

from d3ke_jax import boxes, cli, runs
from d3ke_jax.errors import UserError
from d3ke_jax.data import frames as frames_lib
from d3ke_jax.data import synthetic
from d3ke_jax.infer import locate, pipeline
from d3ke_jax.io.video import write_video
from d3ke_jax.train import metrics

SUBJECT = 10_000  # far above every dataset config's subjects: never trained on
WIDTH, HEIGHT, FOCAL = 480, 360, 420.0


def add_parser(subparsers):
  """Registers the ``steer`` benchmark on ``experiments.bench``'s subcommands."""
  count = cli.number(int, 0)
  parser = subparsers.add_parser("steer", help="a run's box head steering the crops")
  parser.add_argument("--workdir", required=True, help="a trained per-frame run")
  parser.add_argument("--frames", type=count, default=60)
  parser.add_argument("--movement", choices=sorted(synthetic.MOVEMENTS), default="walking")
  parser.add_argument("--jitter", type=cli.number(float, 0, inclusive=True), default=0.2)
  parser.add_argument("--steps", nargs="+", type=cli.number(int, 0, inclusive=True),
                      default=[0, 1, 2])
  parser.add_argument("--batch_size", type=count, default=16)
  parser.set_defaults(run=bench_steer)
  return parser


def jittered(truth, amount, rng):
  """Boxes moved by up to ``amount`` of their side and scaled by up to exp(+-amount)."""
  side = truth[:, 2:] * np.exp(rng.uniform(-amount, amount, (len(truth), 1)))
  centre = boxes.centre(truth) + rng.uniform(-amount, amount, (len(truth), 2)) * truth[:, 2:]
  return boxes.from_centre(centre, side)


def bench_steer(args):
  config = runs.load_config(args.workdir)
  predictor = pipeline.load_predictor(args.workdir, "per_frame")
  if not predictor.steers:
    raise UserError(f"{args.workdir}: the run has no box head (model.box_head): nothing "
                    "steers its crops")
  colours = getattr(runs.dataset_config(config)[1], "colours", "sided")
  images, truth, coords, _ = frames_lib.crossing_scene(
      SUBJECT, args.movement, args.frames, WIDTH, HEIGHT, FOCAL, distance=6.0, travel=1.2,
      seed=SUBJECT, colours=colours)
  start = jittered(truth, args.jitter, np.random.default_rng(0))
  index = np.array(predictor.layout.coordinates)
  print(f"{args.workdir}: {args.frames} frames of {args.movement} ({WIDTH}x{HEIGHT}, subject "
        f"{SUBJECT}, {colours} colours), first boxes jittered by {args.jitter:g}; "
        f"{jax.devices()[0].platform.upper()}, batch {args.batch_size}\n")
  header = ("| re-crops | IoU with the truth: median | IoU > 0.7 | MAE_angle (deg) | "
            "frames/s |")
  print(header)
  print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|", flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    path = write_video(f"{tmp}/{args.movement}.mp4", images, synthetic.RATE)
    first_boxes = lambda chunk, first: (start[first:first + len(chunk)],
                                        np.full(len(chunk), locate.FILE))
    # Warm-up (compilation, first crops) with every step the table runs.
    pipeline.predict_video(predictor, path, first_boxes, args.batch_size,
                           steer_steps=max(args.steps))
    for steps in args.steps:
      begin = time.perf_counter()
      prediction = pipeline.predict_video(predictor, path, first_boxes, args.batch_size,
                                          steer_steps=steps)
      rate = len(prediction.time) / (time.perf_counter() - begin)
      overlap = boxes.iou(prediction.boxes, truth)
      error = metrics.mae_angle(prediction.coords, coords[:, index])
      print(f"| {steps:>8} | {np.median(overlap):>26.3f} | {np.mean(overlap > 0.7):>9.0%} | "
            f"{error:>15.2f} | {rate:>8.1f} |", flush=True)
