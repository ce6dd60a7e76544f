"""Inverse kinematics of a .trc marker file: ``python -m experiments.ik --trc T.trc --out R.mot``.

Uses the project's default model unless ``--model`` names another .osim. Markers present
in both the file and the model are fitted; the others are listed. The frames are solved as
a sequence with the temporal prior of ``d3ke_jax.skeleton.ik``, weighed by the marker noise
the solver estimates from the trial (``--smoothing 0`` turns it off). Prints which
coordinates the markers leave undetermined and which frames did not converge. Writes an
OpenSim .mot with a time column and every coordinate (rotations in degrees).
"""

import os
import warnings

import jax
import numpy as np
import tqdm

from d3ke_jax import cli
from d3ke_jax.errors import UserError
from d3ke_jax.io import read_trc, write_mot
from d3ke_jax.skeleton import forward_kinematics, load_osim
from d3ke_jax.skeleton.ik import (SMOOTHING_WEIGHT, inseparable_coordinates,
                                  inverse_kinematics_chunks, unobserved_coordinates)


def parse_args(argv):
  parser = cli.ArgumentParser(prog="python -m experiments.ik", description=__doc__)
  parser.add_argument("--trc", required=True, help="marker trajectories (.trc)")
  parser.add_argument("--out", required=True, help="output coordinates (.mot)")
  parser.add_argument("--model", help="OpenSim model (default: the project's full-body model)")
  parser.add_argument("--scales", help="optional .npy of (bodies, 3) scale factors relative "
                      "to the model")
  parser.add_argument("--chunk", type=cli.number(int, 0), default=256,
                      help="frames per solve (each chunk continues from the one before)")
  parser.add_argument("--smoothing", type=cli.number(float, 0, inclusive=True),
                      default=SMOOTHING_WEIGHT, help="weight of the temporal prior per "
                      "squared radian per second of each coordinate's velocity at 5 mm of "
                      "marker noise, scaled by the trial's estimated noise squared (0: none)")
  parser.add_argument("--float64", action="store_true", help="solve in double precision")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  check_output(args.out, [args.trc, args.model, args.scales])
  with jax.enable_x64(args.float64):  # 64-bit arrays for this command only
    solve(args)


def solve(args):
  """Reads the inputs, solves, writes the .mot and reports."""
  model = load_osim(args.model)
  scales = None if args.scales is None else load_scales(args.scales, model)
  trajectories = read_trc(args.trc)
  used = [n for n in model.marker_names if n in trajectories.names]
  if len(used) < 3:
    raise UserError(f"{args.trc}: only {len(used)} of its markers are in the model "
                    f"{model.source} (need at least 3); file markers: "
                    f"{', '.join(trajectories.names)}")
  ignored = [n for n in trajectories.names if n not in model.marker_names]
  unseen = [n for n in model.marker_names if n not in trajectories.names]
  print(f"{len(used)} markers used; ignored (not in the model): {', '.join(ignored) or 'none'}; "
        f"model markers missing from the file: {', '.join(unseen) or 'none'}")
  markers = trajectories.select(model.marker_names)
  if args.smoothing and not (np.isfinite(trajectories.rate) and trajectories.rate > 0):
    raise UserError(f"{args.trc}: DataRate {trajectories.rate:g} is not a positive number of "
                    "frames per second (the temporal prior needs it; --smoothing 0 solves "
                    "without it)")
  check_units(model, markers, args.trc)
  report_undetermined(model, used)

  results = []
  with tqdm.tqdm(total=len(markers), unit="frame", desc="inverse kinematics") as bar:
    for result in inverse_kinematics_chunks(model, markers, chunk=args.chunk, scales=scales,
                                            rate=trajectories.rate,
                                            smoothing_weight=args.smoothing):
      results.append(jax.device_get(result))
      bar.update(len(result.coords))
  coords = np.concatenate([r.coords for r in results])
  rms = np.concatenate([r.rms_error for r in results])
  worst = np.concatenate([r.max_error for r in results])
  converged = np.concatenate([r.converged for r in results])
  write_mot(args.out, trajectories.time, coords, model.coordinate_names,
            [t == "rotational" for t in model.coordinate_types])
  print(f"marker error: RMS median {1000 * np.nanmedian(rms):.2f} mm, worst frame "
        f"{1000 * np.nanmax(rms):.2f} mm; max {1000 * np.nanmax(worst):.2f} mm")
  failed = np.nonzero(~converged)[0]
  if failed.size:
    print(f"{failed.size} frames did not converge (step or gradient still large) or had "
          f"< 3 markers: "
          f"{', '.join(map(str, failed[:20] + 1))}{' ...' if failed.size > 20 else ''}")
  print(f"wrote {args.out}")


def report_undetermined(model, used):
  """Prints the coordinates that the markers ``used`` leave undetermined: those no marker
  moves, and groups of which only a combination moves the markers."""
  names = model.coordinate_names
  blind = unobserved_coordinates(model, used)
  if blind:
    print(f"no marker moves {', '.join(names[c] for c in blind)}: left at their default "
          "values")
  for group in inseparable_coordinates(model, used):
    print(f"the markers do not tell apart how {', '.join(names[c] for c in group)} share "
          "their motion (one combination of them moves no marker): that share is left "
          "where tracking put it")


def check_output(path, inputs):
  """Refuses an output path that is a directory, an input file, or cannot be written."""
  if not os.path.basename(path):
    raise UserError(f"--out {path!r}: give a file name (.mot)")
  if os.path.isdir(path):
    raise UserError(f"--out {path}: a directory, not a .mot file name")
  for given in filter(None, inputs):
    if os.path.exists(path) and os.path.exists(given) and os.path.samefile(path, given):
      raise UserError(f"--out {path}: is the input {given}; choose another file name")
  cli.check_writable_directory(os.path.dirname(path) or os.curdir, "--out")


SCALE_LIMITS = (0.01, 100.0)  # scale factors outside these fit no body (wrong units, typos)


def load_scales(path, model):
  """(bodies, 3) scale factors from a .npy file, checked: real numbers within
  ``SCALE_LIMITS``."""
  try:
    scales = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise UserError(f"{path}: no such file (--scales)") from None
  except (ValueError, OSError, EOFError):
    raise UserError(f"{path}: not a NumPy .npy array file (--scales)") from None
  if scales.shape != (model.num_bodies, 3) or not np.issubdtype(scales.dtype, np.number):
    raise UserError(f"{path}: scales must be numbers of shape ({model.num_bodies}, 3), one "
                    f"row per body of {model.source}; got {scales.dtype} {scales.shape}")
  low, high = SCALE_LIMITS
  if np.iscomplexobj(scales):
    bad = np.ones(scales.shape, bool)
  else:
    bad = ~(np.isfinite(scales) & (scales >= low) & (scales <= high))
  if bad.any():
    body, axis = np.argwhere(bad)[0]
    raise UserError(f"{path}: scale factors must be real numbers from {low:g} to {high:g}; "
                    f"{model.body_names[body]} {'xyz'[axis]} is {scales[body, axis]} "
                    f"({int(bad.sum())} bad values)")
  return scales


def check_units(model, markers, path):
  """Stops with a clear message when marker distances do not look like metres."""
  reference = np.asarray(forward_kinematics(model, np.asarray(model.coordinate_defaults)).markers)
  with warnings.catch_warnings():  # frames without markers
    warnings.simplefilter("ignore", RuntimeWarning)
    spread = np.nanmedian(np.linalg.norm(
        markers - np.nanmean(markers, axis=1, keepdims=True), axis=-1))
  expected = np.median(np.linalg.norm(reference - reference.mean(0), axis=-1))
  if not 0.2 < spread / expected < 5:
    raise UserError(f"{path}: markers spread {spread:.4g} m about their centre, the model "
                    f"{expected:.3g} m; the file's Units header is probably wrong")


if __name__ == "__main__":
  cli.run(main)
