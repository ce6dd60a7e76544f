"""Video in, OpenSim files out: ``python -m experiments.infer --video PATH --workdir RUN``.

For each video (``--video`` may be a folder: every video in it), writes into
``OUT/<video name>/``: ``<name>.mot`` (every model coordinate, degrees and metres; the
pelvis orientation in the camera's frame turned to OpenSim's axes: x right, y up, z towards
the viewer), ``<name>.trc`` (the model's markers, metres, root-relative, same frame),
``<name>_scaled.osim`` (the median body scales), ``frames.csv`` (the person box as
``frame,x0,y0,x1,y1``, the form ``--boxes`` reads back, then time, whether a person was
found, the box's source), ``<name>_overlay.mp4`` and ``angles.png``. The person's
boxes come from ``--boxes`` (CSV ``frame,x0,y0,x1,y1`` or JSON; or a folder holding
``<name>.csv`` or ``.json`` for each video) or, without it, from background subtraction
(a static camera) following one person (``locate.BackgroundTracker``, with OpenCV's HOG
people detector as a second opinion). A run trained with a box head then moves each
frame's crop onto the person as the network sees them, where its box agrees with the
finder's (``--steer`` times at most; ``steered`` in ``frames.csv`` counts the moves). A run
with a calibrated uncertainty head (its ``calibration.json``; with ``--stage sequence``, the
sequence run's, whose head gives the refined estimates' uncertainty) also gives
``<name>_sd.mot`` (each coordinate's standard deviation, the same columns and units as
``<name>.mot``) and ``confidence_sd_deg`` in ``frames.csv`` (the median standard deviation
of the frame's rotational coordinates, degrees), drawn as +-1 SD bands in ``angles.png``
and as each bone's colour in the overlay. A run trained on synthetic renders (its
``data.json``, or for older runs its config's dataset) gets a warning: on stderr, once, and
in the ``.mot``/``.trc`` headers, a ``warning`` column of ``frames.csv`` and the plot's
title.
"""

import contextlib
import os
import sys
import time

from absl import logging
import numpy as np

from d3ke_jax import cli, runs
from d3ke_jax.errors import UserError
from d3ke_jax.infer import locate
from d3ke_jax.infer.outputs import OverlayFrames, output_paths, write_outputs
from d3ke_jax.infer.pipeline import STAGES, STEER_STEPS, load_predictor, predict_video
from d3ke_jax.io.video import video_info

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def parse(argv):
  parser = cli.ArgumentParser(prog="python -m experiments.infer", description=__doc__)
  parser.add_argument("--video", required=True, help="a video file or a folder of videos")
  parser.add_argument("--workdir", required=True, help="the trained run")
  parser.add_argument("--out", default="infer", help="output folder (default: ./infer)")
  parser.add_argument("--stage", choices=STAGES, help="default: the run's own stage")
  parser.add_argument("--boxes", help="per-frame person boxes: a CSV (header frame,x0,y0,x1,y1, "
                      "other columns ignored: an earlier run's frames.csv reads) or JSON file "
                      "([{\"frame\": i, \"box\": [x0, y0, x1, y1]}, ...]) "
                      "of upright pixels, frames from 0; or a folder of <video name>.csv/.json")
  parser.add_argument("--steer", type=cli.number(int, 0, inclusive=True), default=STEER_STEPS,
                      help="re-crops of a frame on the network's box of the person (runs with "
                      f"a box head; 0: never; default {STEER_STEPS})")
  parser.add_argument("--batch_size", type=cli.number(int, 0), default=64)
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), help="default: the run's")
  parser.add_argument("--checkpoint", choices=("best", "latest"), default="best")
  parser.add_argument("--no_overlay", action="store_true", help="skip the overlay video")
  return parser.parse_args(argv)


def videos_of(path):
  if os.path.isdir(path):
    found = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(VIDEO_EXTENSIONS))
    if not found:
      raise UserError(f"{path}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
    stems = {}
    for video in found:
      stem = os.path.splitext(os.path.basename(video))[0]
      if stem in stems:
        raise UserError(f"{stems[stem]} and {video}: both would write to the folder {stem}/ "
                        "(rename one, or give them one at a time with another --out)")
      stems[stem] = video
    return found
  if not os.path.exists(path):
    raise UserError(f"{path}: no such file (--video)")
  return [path]


def boxes_file(boxes, video):
  """The boxes file of ``video``: ``boxes``, or in the folder ``boxes`` the one named after
  the video (None: find the person)."""
  if boxes is None:
    return None
  if not os.path.isdir(boxes):
    if not os.path.isfile(boxes):
      raise UserError(f"{boxes}: no such file (--boxes)")
    return boxes
  name = os.path.splitext(os.path.basename(video))[0]
  found = [os.path.join(boxes, name + ext) for ext in (".csv", ".json")
           if os.path.isfile(os.path.join(boxes, name + ext))]
  if not found:
    raise UserError(f"{boxes}: no {name}.csv or {name}.json for {video} (--boxes)")
  if len(found) > 1:
    raise UserError(f"{boxes}: both {name}.csv and {name}.json for {video}; keep one (--boxes)")
  return found[0]


def check_outputs(out_dir, name, inputs):
  """Refuses an output folder that is a file or not UTF-8 text (OpenSim writes into it), or
  outputs that would overwrite an input."""
  try:
    out_dir.encode("utf-8")
  except UnicodeEncodeError:
    shown = os.fsencode(out_dir).decode("utf-8", "backslashreplace")
    raise UserError(f"{shown}: not UTF-8 text, which OpenSim needs (rename the video, or "
                    "choose another --out)") from None
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise UserError(f"{out_dir}: the output folder for {name} is a file (choose another --out)")
  inputs = {os.path.realpath(p) for p in inputs if p is not None}
  for path in output_paths(out_dir, name).values():
    if os.path.realpath(path) in inputs:
      raise UserError(f"{path}: an input would be overwritten by an output (choose another "
                      "--out)")


def check_prediction(prediction, video, file_boxes):
  """Warns of frames cut off and of boxes past the end of the video; refuses a video
  without a person found in any frame."""
  count = len(prediction.time)
  if prediction.cut:
    print(f"warning: {prediction.cut}; the frames before it are kept", file=sys.stderr)
  if file_boxes:
    file_boxes.check(count)
    late = np.count_nonzero(file_boxes.frames >= count)
    if late:
      print(f"warning: {file_boxes.path}: {late} box(es) past the video's {count} frames left "
            "out (frames count from 0)", file=sys.stderr)
  elif not prediction.found.any():
    raise UserError(f"{video}: no person found in any of its {count} frames (a static camera "
                    "is needed without --boxes)")


def main(argv=None):
  args = parse(argv)
  # orbax warns of a run copied without its checkpoints' metadata files at WARNING: nothing
  # to act on, and it would come before a user error's one line.
  logging.set_verbosity(logging.ERROR)
  videos = videos_of(args.video)
  cli.check_writable_directory(args.out, "--out")
  if any(os.path.abspath(args.out) == os.path.abspath(v) for v in videos):
    raise UserError(f"{args.out}: the output folder may not be an input (--out)")
  if args.boxes is not None and os.path.isdir(args.video) and not os.path.isdir(args.boxes):
    raise UserError(f"{args.boxes}: one boxes file for the folder {args.video}; give a folder "
                    "of <video name>.csv or .json (--boxes)")
  jobs = []  # every input is checked before the first video runs
  for video in videos:
    info = video_info(video)
    name = os.path.splitext(os.path.basename(video))[0]
    out_dir = os.path.join(args.out, name)
    boxes_path = boxes_file(args.boxes, video)
    check_outputs(out_dir, name, [video, boxes_path])
    file_boxes = locate.FileBoxes(boxes_path, info.width, info.height) if boxes_path else None
    if file_boxes and info.frames:
      file_boxes.check(info.frames)
    jobs.append((video, info, name, out_dir, file_boxes))
  predictor = load_predictor(args.workdir, args.stage, args.dtype, args.checkpoint)
  warning = runs.synthetic_warning(args.workdir)
  if warning:
    print(warning, file=sys.stderr)
  if predictor.uncertain and predictor.temperatures is None:
    print(f"warning: {args.workdir}: no calibration.json of its {args.checkpoint} checkpoint "
          f"(python -m experiments.evaluate --workdir {args.workdir} --checkpoint "
          f"{args.checkpoint} fits it): no standard deviations written", file=sys.stderr)
  for video, info, name, out_dir, file_boxes in jobs:
    start = time.perf_counter()
    new = [folder for folder in (out_dir, args.out) if not os.path.exists(folder)]
    overlay = None if args.no_overlay else OverlayFrames(
        output_paths(out_dir, name)["overlay"], info.fps or 30.0)
    try:
      prediction = predict_video(predictor, video,
                                 file_boxes or locate.BackgroundTracker.of_video(video),
                                 args.batch_size, steer_steps=args.steer, keep=overlay)
      check_prediction(prediction, video, file_boxes)
    except BaseException:
      if overlay is not None:
        overlay.discard()
      for folder in new:  # made for the overlay's frames, empty again
        with contextlib.suppress(OSError):
          os.rmdir(folder)
      raise
    paths = write_outputs(predictor.model, predictor.layout, prediction, out_dir, name,
                          overlay, info.fps or None, warning)
    seconds = time.perf_counter() - start
    steered = (f", {int(np.count_nonzero(prediction.steered))} crops steered"
               if predictor.steers else ", crops not steered: the run has no box head")
    print(f"{video}: {len(prediction.time)} frames ({info.width}x{info.height}, "
          f"{int(prediction.found.sum())} with a person{steered}) in {seconds:.1f} s "
          f"({len(prediction.time) / seconds:.1f} frames/s) -> {out_dir} ({len(paths)} files)")


if __name__ == "__main__":
  cli.run(main)
