"""Benchmarks: ``python -m experiments.bench fk [--batches 1 16 256 4096] [--models ...]``.

Prints a table of throughput (median of repeated runs after warm-up) with the device and
batch size, beside OpenSim's own implementation measured in the same run.
"""

import argparse
import math
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import cli
from d3ke_jax.skeleton import default_model_path, forward_kinematics, load_osim
from d3ke_jax.io import MarkerTrajectories, read_mot, write_trc
from d3ke_jax.skeleton.ik import free_coordinates, inverse_kinematics
from d3ke_jax.skeleton.kinematics import resolve_coordinates
from d3ke_jax.skeleton.sampling import random_poses, smooth_motion

REFERENCE_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               os.pardir, "shared", "reference", "models",
                               "full_body_wo_hands.osim")


def median_seconds(fn, repeats, min_seconds=0.2):
  """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up (compilation)."""
  jax.block_until_ready(fn())
  times = []
  start = time.perf_counter()
  while len(times) < repeats or time.perf_counter() - start < min_seconds:
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def opensim_poses_per_second(path, poses):
  """OpenSim 4 through its Python API: set coordinates, realize positions, read markers."""
  import opensim  # pylint: disable=g-import-not-at-top
  opensim.Logger.setLevelString("error")
  model = opensim.Model(path)
  state = model.initSystem()
  coordinates = [model.getCoordinateSet().get(i) for i in range(model.getNumCoordinates())]
  markers = [model.getMarkerSet().get(i) for i in range(model.getMarkerSet().getSize())]

  def run():
    for q in poses:
      for c, v in zip(coordinates, q):
        c.setValue(state, float(v), False)
      model.realizePosition(state)
      for m in markers:
        m.getLocationInGround(state)

  return len(poses) / median_seconds(run, repeats=3)


def bench_fk(args):
  models = args.models or [default_model_path()] + (
      [REFERENCE_MODEL] if os.path.exists(REFERENCE_MODEL) else [])
  dtype = jnp.float64 if args.float64 else jnp.float32
  if args.float64:
    jax.config.update("jax_enable_x64", True)
  device = jax.devices()[0]
  print(f"forward kinematics, {device.platform.upper()} ({device.device_kind}, "
        f"{jax.device_count()} device(s)), {jnp.dtype(dtype).name}; poses/s, median of "
        f">= {args.repeats} runs after warm-up\n")
  header = f"| {'model':<22} | {'batch':>6} | {'forward':>12} | {'fwd+bwd':>12} | " \
           f"{'OpenSim':>9} | {'fwd / OpenSim':>13} |"
  print(header)
  print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
  for path in models:
    model = load_osim(path)
    name = os.path.splitext(os.path.basename(path))[0]
    opensim_rate = opensim_poses_per_second(
        path, random_poses(model, args.opensim_poses, np.random.default_rng(0)))
    forward = jax.jit(lambda q: forward_kinematics(model, q).markers)
    backward = jax.jit(jax.grad(lambda q: jnp.sum(forward_kinematics(model, q).markers ** 2)))
    for batch in args.batches:
      q = jnp.asarray(random_poses(model, batch, np.random.default_rng(1)), dtype)
      fwd = batch / median_seconds(lambda: forward(q), args.repeats)
      bwd = batch / median_seconds(lambda: backward(q), args.repeats)
      print(f"| {name:<22} | {batch:>6} | {fwd:>12,.0f} | {bwd:>12,.0f} | "
            f"{opensim_rate:>9,.0f} | {fwd / opensim_rate:>12.1f}x |", flush=True)


def opensim_ik(path, trajectories, frames):
  """OpenSim's InverseKinematicsTool on the first ``frames`` frames.

  Returns (coordinates (T, C) in CoordinateSet order, radians and metres; seconds).
  """
  import opensim  # pylint: disable=g-import-not-at-top
  opensim.Logger.setLevelString("error")
  with tempfile.TemporaryDirectory() as tmp:
    trc = os.path.join(tmp, "markers.trc")
    mot = os.path.join(tmp, "ik.mot")
    write_trc(trc, trajectories)
    model = opensim.Model(path)  # the tool keeps a pointer: keep the model alive
    tool = opensim.InverseKinematicsTool()
    tool.setModel(model)
    tool.setMarkerDataFileName(trc)
    tool.setStartTime(float(trajectories.time[0]))
    tool.setEndTime(float(trajectories.time[frames - 1]))
    tool.setOutputMotionFileName(mot)
    tool.setResultsDir(tmp)
    tool.set_report_errors(False)
    start = time.perf_counter()
    tool.run()
    seconds = time.perf_counter() - start
    coordinates = [model.getCoordinateSet().get(i) for i in range(model.getNumCoordinates())]
    table = read_mot(mot, rotational_names={c.getName() for c in coordinates
                                            if c.getMotionType() == opensim.Coordinate.Rotational})
    return np.stack([table.column(c.getName()) for c in coordinates], 1), seconds


def bench_ik(args):
  path = args.model or (REFERENCE_MODEL if os.path.exists(REFERENCE_MODEL)
                        else default_model_path())
  model = load_osim(path)
  rng = np.random.default_rng(0)
  truth = resolve(model, smooth_motion(model, args.frames, rng, rate=args.rate,
                                       limit=args.limit))
  markers = np.asarray(forward_kinematics(model, truth).markers)
  markers = markers + rng.normal(0, args.noise_mm / 1000 / np.sqrt(3), markers.shape)
  rotational = [i for i in free_coordinates(model) if model.coordinate_types[i] == "rotational"]

  def angle_error(coords, n):
    return float(np.median(np.degrees(np.abs(coords[:n, rotational] - truth[:n, rotational]))))

  def rms_error(coords, n):
    fitted = np.asarray(forward_kinematics(model, coords[:n]).markers)
    return 1000 * float(np.median(np.sqrt(np.mean(np.sum((fitted - markers[:n])**2, -1), -1))))

  solve = lambda: inverse_kinematics(model, markers).coords
  seconds = median_seconds(solve, args.repeats, min_seconds=0)
  ours = np.asarray(solve())
  trajectories = MarkerTrajectories(names=model.marker_names, time=np.arange(args.frames) /
                                    args.rate, positions=markers, rate=args.rate)
  n = min(args.opensim_frames, args.frames)
  theirs, opensim_seconds = opensim_ik(path, trajectories, n)
  device = jax.devices()[0]
  print(f"inverse kinematics, {os.path.basename(path)}: {model.num_markers} markers, "
        f"{len(free_coordinates(model))} free coordinates, smooth motion within "
        f"+-{args.limit:g} at {args.rate:g} fps "
        f"with {args.noise_mm:g} mm marker noise; d3ke-jax on {device.platform.upper()} "
        f"({args.frames} frames), OpenSim "
        f"InverseKinematicsTool ({n} frames)\n")
  print("| solver | frames/s | median RMS marker error (mm) | median joint-angle error (deg) |")
  print("|---|---|---|---|")
  print(f"| d3ke-jax, all {args.frames} frames | {args.frames / seconds:,.1f} | "
        f"{rms_error(ours, args.frames):.2f} | {angle_error(ours, args.frames):.3f} |")
  print(f"| d3ke-jax, first {n} frames | | {rms_error(ours, n):.2f} | {angle_error(ours, n):.3f} |")
  print(f"| OpenSim 4, first {n} frames | {n / opensim_seconds:,.1f} | {rms_error(theirs, n):.2f} | "
        f"{angle_error(theirs, n):.3f} |")
  print(f"\nspeed-up: {(args.frames / seconds) / (n / opensim_seconds):.0f}x")


def resolve(model, coords):
  """Coordinates as forward kinematics poses them (locked at defaults, couplers applied)."""
  return np.asarray(resolve_coordinates(model, jnp.asarray(coords).T).T)


def number(kind, low, inclusive=False):
  """An argparse type: a ``kind`` (int or float) above ``low`` (or equal, if inclusive)."""
  def parse(text):
    try:
      value = kind(text)
    except ValueError:
      value = None
    if (value is None or not math.isfinite(value)
        or not (value >= low if inclusive else value > low)):
      raise argparse.ArgumentTypeError(
          f"{text!r} is not {'an integer' if kind is int else 'a number'} "
          f"{'>=' if inclusive else '>'} {low:g}")
    return value
  return parse


def main(argv=None):
  count, positive = number(int, 0), number(float, 0)
  parser = cli.ArgumentParser(prog="python -m experiments.bench", description=__doc__)
  sub = parser.add_subparsers(dest="benchmark", required=True)
  fk = sub.add_parser("fk", help="forward kinematics vs OpenSim")
  fk.add_argument("--models", nargs="*", help="OpenSim model files (default: the project's "
                  "model and ../shared/reference's full-body model where present)")
  fk.add_argument("--batches", nargs="+", type=count, default=[1, 16, 256, 4096])
  fk.add_argument("--repeats", type=count, default=10)
  fk.add_argument("--opensim-poses", type=count, default=200)
  fk.add_argument("--float64", action="store_true")
  fk.set_defaults(run=bench_fk)
  ik = sub.add_parser("ik", help="inverse kinematics vs OpenSim's InverseKinematicsTool")
  ik.add_argument("--model", help="OpenSim model (default: ../shared/reference's full-body "
                  "model where present, else the project's)")
  ik.add_argument("--frames", type=count, default=512)
  ik.add_argument("--rate", type=positive, default=30.0)
  ik.add_argument("--noise-mm", type=number(float, 0, inclusive=True), default=3.0)
  ik.add_argument("--limit", type=positive, default=0.5,
                  help="coordinates move within [-limit, limit] (radians, metres)")
  ik.add_argument("--repeats", type=count, default=3)
  ik.add_argument("--opensim-frames", type=count, default=120)
  ik.set_defaults(run=bench_ik)
  args = parser.parse_args(argv)
  models = args.models if args.benchmark == "fk" else [args.model]
  for path in filter(None, models or []):
    if not os.path.isfile(path):
      parser.error(f"{path}: no such OpenSim model file")
  args.run(args)


if __name__ == "__main__":
  cli.run(main)
