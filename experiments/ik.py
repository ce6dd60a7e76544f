"""Inverse kinematics of a .trc marker file: ``python -m experiments.ik --trc T.trc --out R.mot``.

Uses the project's default model unless ``--model`` names another .osim. Markers present
in both the file and the model are fitted; the others are listed. Writes an OpenSim .mot
with a time column and every coordinate (rotations in degrees).
"""

import argparse
import sys

import jax
import numpy as np
import tqdm

from d3ke_jax.io import read_trc, write_mot
from d3ke_jax.skeleton import load_osim
from d3ke_jax.skeleton.ik import inverse_kinematics_chunks


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m experiments.ik", description=__doc__)
  parser.add_argument("--trc", required=True, help="marker trajectories (.trc)")
  parser.add_argument("--out", required=True, help="output coordinates (.mot)")
  parser.add_argument("--model", help="OpenSim model (default: the project's full-body model)")
  parser.add_argument("--scales", help="optional .npy of (bodies, 3) scale factors")
  parser.add_argument("--chunk", type=int, default=256, help="frames per solve")
  parser.add_argument("--float64", action="store_true", help="solve in double precision")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  if args.float64:
    jax.config.update("jax_enable_x64", True)
  model = load_osim(args.model)
  trajectories = read_trc(args.trc)
  used = [n for n in model.marker_names if n in trajectories.names]
  if len(used) < 3:
    sys.exit(f"{args.trc}: only {len(used)} of its markers are in the model {model.source} "
             f"(need at least 3); file markers: {', '.join(trajectories.names)}")
  ignored = [n for n in trajectories.names if n not in model.marker_names]
  unseen = [n for n in model.marker_names if n not in trajectories.names]
  print(f"{len(used)} markers used; ignored (not in the model): {', '.join(ignored) or 'none'}; "
        f"model markers missing from the file: {', '.join(unseen) or 'none'}")
  markers = trajectories.select(model.marker_names)
  check_units(model, markers, args.trc)
  scales = None if args.scales is None else np.load(args.scales)

  results = []
  with tqdm.tqdm(total=len(markers), unit="frame", desc="inverse kinematics") as bar:
    for result in inverse_kinematics_chunks(model, markers, chunk=args.chunk, scales=scales):
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
    print(f"{failed.size} frames did not converge or had < 3 markers: "
          f"{', '.join(map(str, failed[:20] + 1))}{' ...' if failed.size > 20 else ''}")
  print(f"wrote {args.out}")


def check_units(model, markers, path):
  """Stops with a clear message when marker distances do not look like metres."""
  from d3ke_jax.skeleton import forward_kinematics  # pylint: disable=g-import-not-at-top
  reference = np.asarray(forward_kinematics(model, np.asarray(model.coordinate_defaults)).markers)
  spread = np.nanmedian(np.linalg.norm(markers - np.nanmean(markers, axis=1, keepdims=True),
                                       axis=-1))
  expected = np.median(np.linalg.norm(reference - reference.mean(0), axis=-1))
  if not 0.2 < spread / expected < 5:
    sys.exit(f"{path}: markers spread {spread:.4g} m about their centre, the model "
             f"{expected:.3g} m; the file's Units header is probably wrong")


if __name__ == "__main__":
  main()
