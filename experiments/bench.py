"""Benchmarks: ``python -m experiments.bench ik``, ``resnext [--batches 1 16] [--sizes 224
256]``; ``fk``, ``truth``, ``infer``, ``steer``, ``boxes`` and ``train`` in their own modules
(``experiments/bench_*.py``).

Each prints a table of throughput (median of repeated runs after warm-up) with the device
and batch size, beside a reference implementation (OpenSim's, torchvision's) measured in the
same run where one is installed.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import cli
from d3ke_jax.nets.resnext import ResNeXt, load_torchvision_state_dict
from d3ke_jax.skeleton import default_model_path, forward_kinematics, load_osim
from d3ke_jax.io import MarkerTrajectories, read_mot, write_trc
from d3ke_jax.skeleton.ik import (free_coordinates, inseparable_coordinates,
                                  unobserved_coordinates)
from d3ke_jax.skeleton.sampling import marker_trial
from d3ke_jax.skeleton.scaling import write_scaled_osim

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_MODEL = os.path.join(REPO, os.pardir, "shared", "reference", "models",
                               "full_body_wo_hands.osim")


def reference_missing(instead):
  """The note a benchmark prints when ``REFERENCE_MODEL`` (the paper's full-body model) is
  absent, saying what it measures ``instead``."""
  return (f"note: {os.path.normpath(REFERENCE_MODEL)} not found: the paper's full-body model "
          f"skipped; {instead}\n")


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


def bench_resnext(args):
  """Flax ResNeXt-50 32x4d against torchvision's resnext50_32x4d (when installed): eval
  mode, float32, the same weights and images."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
  except ImportError:
    torch = None
  device = jax.devices()[0]
  print(f"ResNeXt-50 32x4d inference, float32; Flax on {device.platform.upper()} "
        f"({device.device_kind})" + (f", torchvision {torchvision.__version__} on CPU with "
                                     f"{torch.get_num_threads()} threads" if torch else
                                     ", torchvision not installed") +
        f"; images/s, median of >= {args.repeats} runs after warm-up\n")
  print("| size | batch | Flax | torchvision | Flax / torchvision | max difference (relative) |")
  print("|---|---|---|---|---|---|", flush=True)
  network = ResNeXt(num_classes=1000)
  variables = network.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  if torch:
    reference = torchvision.models.resnext50_32x4d().eval()
    variables = load_torchvision_state_dict(reference.state_dict(), variables)
  # On the device once, as a trained run's parameters are (NumPy leaves would be copied
  # there on every call), and the images as torchvision's tensor, before the clock starts.
  variables = jax.device_put(variables)
  apply = jax.jit(network.apply)
  for size in args.sizes:
    for batch in args.batches:
      images = np.random.default_rng(0).uniform(-2, 2, (batch, size, size, 3)).astype(np.float32)
      on_device = jax.device_put(images)
      ours = batch / median_seconds(lambda: apply(variables, on_device), args.repeats)
      row = f"| {size} | {batch} | {ours:,.1f} |"
      if torch:
        nchw = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        with torch.inference_mode():
          theirs = batch / median_seconds(lambda: reference(nchw), args.repeats)
          expected = reference(nchw).numpy()
        difference = np.max(np.abs(apply(variables, images) - expected)) / np.max(
            np.abs(expected))
        row += f" {theirs:,.1f} | {ours / theirs:.2f}x | {difference:.1e} |"
      else:
        row += " - | - | - |"
      print(row, flush=True)


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
    start = time.perf_counter()
    run_opensim_ik(path, trc, mot, float(trajectories.time[0]),
                   float(trajectories.time[frames - 1]))
    seconds = time.perf_counter() - start
    return read_opensim_coordinates(load_osim(path), mot), seconds


def run_opensim_ik(model_path, trc, mot, start_time, end_time, log_level="error"):
  """OpenSim's InverseKinematicsTool, every model marker weighted 1, as a user runs it."""
  import opensim  # pylint: disable=g-import-not-at-top
  opensim.Logger.setLevelString(log_level)
  model = opensim.Model(model_path)  # the tool keeps a pointer: keep the model alive
  tool = opensim.InverseKinematicsTool()
  tool.setModel(model)
  tool.setMarkerDataFileName(trc)
  tool.setStartTime(start_time)
  tool.setEndTime(end_time)
  tool.setOutputMotionFileName(mot)
  tool.setResultsDir(os.path.dirname(os.path.abspath(mot)))
  tool.set_report_errors(False)
  tool.run()


def read_opensim_coordinates(model, mot):
  """(T, C) coordinates of a .mot in the model's CoordinateSet order, radians and metres."""
  table = read_mot(mot, rotational_names={n for n, t in zip(
      model.coordinate_names, model.coordinate_types) if t == "rotational"})
  return np.stack([table.column(n) for n in model.coordinate_names], 1)


# The trials of ``bench ik``: several kinds of motion, as (frames, rate, marker_trial options).
# name: (frames, rate, marker_trial options). limit=pi leaves every coordinate its whole
# range: each sweeps 30-50 % of it (``smooth_motion``), far from the default pose.
IK_TRIALS = {
    "gait": (120, 60.0, dict(limit=0.5, turn=np.radians(30), noise=0.003)),
    "turning": (600, 100.0, dict(limit=0.5, turn=np.pi, noise=0.005, scale_spread=0.15,
                                 gaps=30)),
    "wide": (300, 30.0, dict(limit=1.0, turn=np.radians(90), noise=0.003, gaps=10)),
    "exact": (240, 60.0, dict(limit=np.pi, turn=np.radians(90), noise=0.0,
                              scale_spread=0.1)),
    "ranges_25hz": (120, 25.0, dict(limit=np.pi, turn=np.radians(60), noise=0.005,
                                     scale_spread=0.1, gaps=10)),
    "ranges_120hz": (240, 120.0, dict(limit=np.pi, turn=np.radians(60), noise=0.002,
                                       gaps=10)),
}

_OPENSIM_COMMAND = ("import sys; from experiments.bench import run_opensim_ik; "
                    "run_opensim_ik(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), "
                    "float(sys.argv[5]), 'warn')")


def bench_ik(args):
  path = args.model or (REFERENCE_MODEL if os.path.exists(REFERENCE_MODEL)
                        else default_model_path())
  if not args.model and not os.path.exists(REFERENCE_MODEL):
    print(reference_missing("the project's model instead (--model PATH.osim measures another)"),
          flush=True)
  model = load_osim(path)
  rotational = [i for i in free_coordinates(model) if model.coordinate_types[i] == "rotational"]
  blind = set(unobserved_coordinates(model))
  inseparable = sorted(c for group in inseparable_coordinates(model) for c in group)
  # The root's rotations are scored by the orientation they give (an Euler triple and its
  # mirror, a + pi, pi - b, c + pi, are one pose, which either solver may take near the
  # middle angle's +-90 deg).
  root = {c for j, _, c in model.axis_inputs if j == model.root_joint}
  scored = [i for i in rotational if i not in blind | set(inseparable) | root]
  trials = {name: IK_TRIALS[name] for name in args.trials}
  if args.long:
    trials[f"long ({args.long} frames)"] = (args.long,) + IK_TRIALS["turning"][1:]
  print(f"inverse kinematics, {os.path.basename(path)}: {model.num_markers} markers, "
        f"{len(free_coordinates(model))} free coordinates; d3ke-jax on "
        f"{jax.devices()[0].platform.upper()} vs OpenSim {_opensim_version()} "
        f"InverseKinematicsTool (all markers weight 1), the same .trc, each a whole command "
        f"(process start to .mot written). Angle errors against the true motion over the "
        f"{len(scored)} rotational coordinates below the root that markers move"
        + (f" (not: {', '.join(model.coordinate_names[i] for i in sorted(blind))})"
           if blind else "") + " and tell apart"
        + (f" (not: {', '.join(model.coordinate_names[i] for i in inseparable)}, shown "
           "apart)" if inseparable else "") + "; the root's orientation apart.\n", flush=True)
  print("| trial | frames | solver | median (deg) | mean (deg) | p95 (deg) | root orientation "
        "(deg): median / max | whole command (s): cold cache / warm | frames/s (warm) |")
  print("|---|---|---|---|---|---|---|---|---|", flush=True)
  worst = []
  with tempfile.TemporaryDirectory() as tmp:
    runs = [(f"{name}, seed {seed}" if len(args.seeds) > 1 else name, frames, rate, options,
             seed) for name, (frames, rate, options) in trials.items() for seed in args.seeds]
    for k, (name, frames, rate, options, seed) in enumerate(runs):
      trial = marker_trial(model, frames, np.random.default_rng(seed), rate=rate, **options)
      files = _trial_files(tmp, f"trial{k}", path, model, trial)
      errors = {}
      solvers = {"d3ke-jax": lambda: _run_ours(model, files),
                 "OpenSim": lambda: _run_opensim(model, files, (frames - 1) / rate)}
      for solver, run in solvers.items():
        try:
          coords, seconds = run()
        except RuntimeError as e:  # OpenSim's tool gives up on some trials
          print(f"| {name} | {frames} | {solver} | failed: {e} |", flush=True)
          continue
        error = np.degrees(np.abs(coords - trial.coords))
        errors[solver] = (error[:, scored], error[:, inseparable])
        error = errors[solver][0]
        turn = _root_turn(model, coords, trial)
        shown = " / ".join(f"{t:.1f}" for t in seconds)
        print(f"| {name} | {frames} | {solver} | {np.median(error):.2f} | {np.mean(error):.2f} "
              f"| {np.percentile(error, 95):.2f} | {np.median(turn):.2f} / {np.max(turn):.2f} "
              f"| {shown} | {frames / seconds[-1]:,.1f} |", flush=True)
      worst.append((name, errors))
  print("\nworst five coordinates (mean error, deg), d3ke-jax | OpenSim; and the coordinate "
        "where d3ke-jax is furthest behind OpenSim:")
  for name, errors in worst:
    means = {s: np.mean(e, 0) for s, (e, _) in errors.items()}
    listed = {s: ", ".join(f"{model.coordinate_names[scored[i]]} {m[i]:.1f}"
                           for i in np.argsort(m)[::-1][:5]) for s, m in means.items()}
    if len(means) < 2:
      continue
    behind = means["d3ke-jax"] - means["OpenSim"]
    i = int(np.argmax(behind))
    apart = "; ".join(f"{solver}: " + ", ".join(
        f"{model.coordinate_names[c]} {m:.1f}" for c, m in zip(inseparable, np.mean(e, 0)))
        for solver, (_, e) in errors.items())
    print(f"- {name}: {listed['d3ke-jax']} | {listed['OpenSim']}; "
          f"{model.coordinate_names[scored[i]]} {behind[i]:+.2f}"
          + (f" (not told apart by the markers: {apart})" if inseparable else ""))


def _root_turn(model, coords, trial):
  """(T,) degrees between the root body's solved and true orientations."""
  orientation = lambda q: np.asarray(forward_kinematics(
      model, np.asarray(q, np.float32), scales=trial.scales).body_transforms)[
          :, model.root_body, :3, :3]
  cosine = (np.einsum("tab,tab->t", orientation(coords), orientation(trial.coords)) - 1) / 2
  return np.degrees(np.arccos(np.clip(cosine, -1, 1)))


def _opensim_version():
  import opensim  # pylint: disable=g-import-not-at-top
  return opensim.GetVersion()


def _trial_files(tmp, name, path, model, trial):
  """The trial's .trc, and for a scaled subject its scales (.npy) and OpenSim-scaled model."""
  files = {"trc": os.path.join(tmp, f"{name}.trc"), "model": path, "unscaled": path}
  write_trc(files["trc"], MarkerTrajectories(
      model.marker_names, np.arange(len(trial.markers)) / trial.rate, trial.markers,
      trial.rate))
  if trial.scales is not None:
    files["scales"] = os.path.join(tmp, f"{name}_scales.npy")
    np.save(files["scales"], trial.scales)
    files["model"] = write_scaled_osim(path, trial.scales, os.path.join(tmp, f"{name}.osim"))
  return files


def _run_ours(model, files):
  """``python -m experiments.ik`` twice: with an empty compilation cache, then with the one
  the first run left. Returns (coordinates, (cold seconds, warm seconds))."""
  out = files["trc"][:-4] + "_ours.mot"
  tmp = os.path.dirname(files["trc"])
  command = [sys.executable, "-m", "experiments.ik", "--trc", files["trc"], "--out", out,
             "--model", files["unscaled"]]
  if "scales" in files:
    command += ["--scales", files["scales"]]
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=tempfile.mkdtemp(dir=tmp))
  seconds = tuple(_timed(command, env) for _ in range(2))
  return read_opensim_coordinates(model, out), seconds


def _run_opensim(model, files, end_time):
  out = files["trc"][:-4] + "_opensim.mot"
  seconds = _timed([sys.executable, "-c", _OPENSIM_COMMAND, files["model"], files["trc"], out,
                    "0", str(end_time)], dict(os.environ))
  return read_opensim_coordinates(model, out), (seconds,)


def _timed(command, env):
  start = time.perf_counter()
  done = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                        cwd=REPO)
  if done.returncode:
    said = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    raise RuntimeError(f"exit {done.returncode}; " + " / ".join(said[-3:]))
  return time.perf_counter() - start


def main(argv=None):
  count = cli.number(int, 0)
  parser = cli.ArgumentParser(prog="python -m experiments.bench", description=__doc__)
  sub = parser.add_subparsers(dest="benchmark", required=True)
  # Benchmarks kept in their own modules (they import helpers from this one).
  # pylint: disable-next=g-import-not-at-top
  from experiments import (bench_boxes, bench_fk, bench_infer, bench_steer, bench_train,
                           bench_truth)
  bench_fk.add_parser(sub)
  ik = sub.add_parser("ik", help="inverse kinematics vs OpenSim's InverseKinematicsTool")
  ik.add_argument("--model", help="OpenSim model (default: ../shared/reference's full-body "
                  "model where present, else the project's)")
  ik.add_argument("--trials", nargs="+", choices=sorted(IK_TRIALS), default=list(IK_TRIALS),
                  help="motions: gait (120 frames at 60 Hz, pelvis +-30 deg, 3 mm noise), "
                  "turning (600 at 100 Hz, turning round both ways, scaled subject, 5 mm, "
                  "gaps), wide (300 at 30 Hz, coordinates within +-1 rad, gaps); across "
                  "whole ranges: exact (240 at 60 Hz, scaled, no noise), ranges_25hz "
                  "(120, scaled, 5 mm, gaps), ranges_120hz (240, 2 mm, gaps)")
  ik.add_argument("--seeds", nargs="+", type=cli.number(int, 0, inclusive=True), default=[0],
                  help="random seeds of the trials (each trial once per seed)")
  ik.add_argument("--long", type=count, help="also a trial of this many frames like "
                  "'turning' (OpenSim takes about 1 s per 10 frames)")
  ik.set_defaults(run=bench_ik)
  resnext = sub.add_parser("resnext", help="Flax ResNeXt-50 vs torchvision's (if installed)")
  resnext.add_argument("--batches", nargs="+", type=count, default=[1, 16])
  resnext.add_argument("--sizes", nargs="+", type=count, default=[224, 256])
  resnext.add_argument("--repeats", type=count, default=3)
  resnext.set_defaults(run=bench_resnext, model=None)
  bench_truth.add_parser(sub)
  bench_infer.add_parser(sub)
  bench_steer.add_parser(sub)
  bench_boxes.add_parser(sub)
  bench_train.add_parser(sub)
  args = parser.parse_args(argv)
  models = args.models if args.benchmark == "fk" else [getattr(args, "model", None)]
  for path in filter(None, models or []):
    if not os.path.isfile(path):
      parser.error(f"{path}: no such OpenSim model file")
  args.run(args)


if __name__ == "__main__":
  cli.run(main)
