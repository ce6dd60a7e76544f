"""Benchmarks: ``python -m experiments.bench fk [--batches 1 16 256 4096] [--models ...]``.

Prints a table of throughput (median of repeated runs after warm-up) with the device and
batch size, beside OpenSim's own implementation measured in the same run.
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax.skeleton import default_model_path, forward_kinematics, load_osim

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


def random_poses(model, batch, seed=0):
  low, high = np.asarray(model.coordinate_ranges).T
  low, high = np.maximum(low, -1.0), np.minimum(high, 1.0)
  return np.random.default_rng(seed).uniform(low, high, (batch, model.num_coordinates))


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
    opensim_rate = opensim_poses_per_second(path, random_poses(model, args.opensim_poses))
    forward = jax.jit(lambda q: forward_kinematics(model, q).markers)
    backward = jax.jit(jax.grad(lambda q: jnp.sum(forward_kinematics(model, q).markers ** 2)))
    for batch in args.batches:
      q = jnp.asarray(random_poses(model, batch), dtype)
      fwd = batch / median_seconds(lambda: forward(q), args.repeats)
      bwd = batch / median_seconds(lambda: backward(q), args.repeats)
      print(f"| {name:<22} | {batch:>6} | {fwd:>12,.0f} | {bwd:>12,.0f} | "
            f"{opensim_rate:>9,.0f} | {fwd / opensim_rate:>12.1f}x |", flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__)
  sub = parser.add_subparsers(dest="benchmark", required=True)
  fk = sub.add_parser("fk", help="forward kinematics vs OpenSim")
  fk.add_argument("--models", nargs="*", help="OpenSim model files (default: the project's "
                  "model and ../shared/reference's full-body model where present)")
  fk.add_argument("--batches", nargs="+", type=int, default=[1, 16, 256, 4096])
  fk.add_argument("--repeats", type=int, default=10)
  fk.add_argument("--opensim-poses", type=int, default=200)
  fk.add_argument("--float64", action="store_true")
  fk.set_defaults(run=bench_fk)
  args = parser.parse_args(argv)
  args.run(args)


if __name__ == "__main__":
  sys.exit(main())
