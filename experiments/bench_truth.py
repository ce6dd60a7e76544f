"""``python -m experiments.bench truth [--frames 1200] [--model M.osim]``: MoVi ground truth.

A synthetic subject (known body scales, markers moved by 2 mm as another anatomy places
them, the original's arms-horizontal static trial, a smooth motion at 120 Hz seen in a z-up
world with 2 mm noise) goes through ``movi_truth.subject_truth`` (scaling, marker placement,
IK of every frame); OpenSim's InverseKinematicsTool solves the same motion markers with the
same weights on the same scaled, placed model. Prints mocap frames per second and both
solvers' angle errors against the true motion.
"""

import contextlib
import os
import sys
import tempfile
import time

import jax
import numpy as np

from d3ke_jax import cli
from d3ke_jax.data import movi_truth
from d3ke_jax.io import MarkerTrajectories, write_trc
from d3ke_jax.skeleton import default_model_path, forward_kinematics, load_osim
from d3ke_jax.skeleton.ik import free_coordinates, unobserved_coordinates
from d3ke_jax.skeleton.kinematics import resolve_coordinates
from d3ke_jax.skeleton.sampling import smooth_motion
from d3ke_jax.skeleton.scaling import write_scaled_osim
from experiments.bench import read_opensim_coordinates

RATE = 120.0  # Hz, AMASS's rate for BML-MoVi
Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # y-up -> z-up


def add_parser(subparsers):
  """Registers the ``truth`` benchmark."""
  parser = subparsers.add_parser("truth", help="MoVi ground truth (scaling, marker placement, "
                                 "IK) vs OpenSim's InverseKinematicsTool")
  parser.add_argument("--model", help="OpenSim model (default: the project's)")
  parser.add_argument("--frames", type=cli.number(int, 0), default=1200,
                      help="mocap frames of the motion (120 Hz)")
  parser.set_defaults(run=bench_truth)


def synthetic_subject(model, frames, rng):
  """(true scales (B, 3), static markers (M, 3), true coordinates (T, C), motion markers
  (T, M, 3) in a z-up world), named as the model's markers."""
  scales = np.repeat(rng.uniform(0.9, 1.1, (model.num_bodies, 1)), 3, axis=1)
  anatomy = model.replace(marker_offsets=np.asarray(model.marker_offsets)
                          + rng.normal(0, 0.002, (model.num_markers, 3)))
  pose = lambda q: np.asarray(forward_kinematics(anatomy, np.asarray(q, np.float32),
                                                 scales=scales.astype(np.float32)).markers)
  coords = smooth_motion(model, frames, rng, rate=RATE, limit=0.5)
  coords[:, model.coordinate_index("pelvis_ty")] = 0.95
  coords = np.asarray(resolve_coordinates(model, coords.T.astype(np.float32)).T)
  motion = pose(coords) @ Z_UP.T + rng.normal(0, 0.002 / np.sqrt(3), (frames, model.num_markers,
                                                                       3))
  return scales, pose(movi_truth.static_pose(model)), coords, motion


def bench_truth(args):
  path = args.model or default_model_path()
  model = load_osim(path)
  scales, static, coords, motion = synthetic_subject(model, args.frames,
                                                     np.random.default_rng(0))
  weighted = [n for n in model.marker_names if movi_truth.IK_WEIGHTS.get(n, 0) > 0]
  blind = set(unobserved_coordinates(model, weighted))
  pelvis = {c for j, _, c in model.axis_inputs if j == model.root_joint}
  scored = [i for i in free_coordinates(model) if model.coordinate_types[i] == "rotational"
            and i not in blind | pelvis]
  print(f"MoVi ground truth, {os.path.basename(path)}: {args.frames} mocap frames at "
        f"{RATE:g} Hz, {len(weighted)} weighted markers; d3ke-jax on "
        f"{jax.devices()[0].platform.upper()} ({os.cpu_count()} CPU cores) vs OpenSim's "
        f"InverseKinematicsTool with the same weights on the same scaled, placed model. "
        f"Angle errors over the {len(scored)} rotational coordinates (pelvis excepted) that "
        f"weighted markers move.\n", flush=True)
  print("| solver | what | seconds: first run / second | mocap frames/s (second) | "
        "median (deg) | mean (deg) | p95 (deg) |")
  print("|---|---|---|---|---|---|---|", flush=True)
  seconds = []
  for _ in range(2):
    start = time.perf_counter()
    truth = movi_truth.subject_truth(model, static, [motion], model.marker_names, RATE)
    seconds.append(time.perf_counter() - start)
  _row("d3ke-jax", "scaling + placement + IK", seconds, args.frames,
       truth.motions[0].coords, coords, scored)
  with tempfile.TemporaryDirectory() as tmp:
    subject = _opensim_subject(path, truth, os.path.join(tmp, "subject.osim"))
    solved, opensim_seconds = _opensim_ik(subject, model.marker_names, motion, tmp)
  _row("OpenSim", "IK", [opensim_seconds], args.frames, solved, coords, scored)


def _row(solver, what, seconds, frames, solved, truth, scored):
  error = np.degrees(np.abs(solved - truth))[:, scored]
  shown = " / ".join(f"{s:.1f}" for s in seconds)
  print(f"| {solver} | {what} | {shown} | {frames / seconds[-1]:,.1f} | "
        f"{np.median(error):.2f} | {np.mean(error):.2f} | {np.percentile(error, 95):.2f} |",
        flush=True)


def _opensim_subject(source, truth, path):
  """The model file with the subject's placed markers, scaled by OpenSim (``Model.scale``)."""
  import opensim  # pylint: disable=g-import-not-at-top
  opensim.Logger.setLevelString("error")
  model = opensim.Model(source)
  model.initSystem()
  markers = model.getMarkerSet()
  for i in range(markers.getSize()):
    marker = markers.get(i)
    # The offset is in the body's frame; the location is in the marker's parent frame.
    transform = marker.getParentFrame().findTransformInBaseFrame()
    rotation = transform.R().asMat33()
    rotation = np.array([[rotation.get(r, c) for c in range(3)] for r in range(3)])
    origin = np.array([transform.p().get(k) for k in range(3)])
    location = rotation.T @ (truth.marker_offsets[i] - origin)
    marker.set_location(opensim.Vec3(*map(float, location)))
  placed = path[:-5] + "_placed.osim"
  model.printToXML(placed)
  return write_scaled_osim(placed, truth.scales, path)


def _opensim_ik(path, names, motion, tmp):
  """OpenSim's InverseKinematicsTool with ``IK_WEIGHTS``: (coordinates (T, C), seconds)."""
  import opensim  # pylint: disable=g-import-not-at-top
  trc, mot = os.path.join(tmp, "motion.trc"), os.path.join(tmp, "motion.mot")
  time_ = np.arange(len(motion)) / RATE
  write_trc(trc, MarkerTrajectories(tuple(names), time_, motion, RATE))
  model = opensim.Model(path)  # the tool keeps a pointer: keep the model alive
  tool = opensim.InverseKinematicsTool()
  tool.setModel(model)
  tasks = opensim.IKTaskSet()
  for name in names:
    task = opensim.IKMarkerTask()
    task.setName(name)
    weight = movi_truth.IK_WEIGHTS.get(name, 0)
    task.setWeight(float(weight))
    task.setApply(weight > 0)
    tasks.cloneAndAppend(task)
  tool.set_IKTaskSet(tasks)
  tool.setMarkerDataFileName(trc)
  tool.setStartTime(float(time_[0]))
  tool.setEndTime(float(time_[-1]))
  tool.setOutputMotionFileName(mot)
  tool.setResultsDir(tmp)
  tool.set_report_errors(False)
  start = time.perf_counter()
  with _native_stdout_silenced():  # the tool prints the model's summary there
    tool.run()
  seconds = time.perf_counter() - start
  return read_opensim_coordinates(load_osim(path), mot), seconds


@contextlib.contextmanager
def _native_stdout_silenced():
  """File descriptor 1 (which OpenSim's C++ code writes to) goes to /dev/null."""
  sys.stdout.flush()
  saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
  os.dup2(null, 1)
  try:
    yield
  finally:
    os.dup2(saved, 1)
    os.close(saved)
    os.close(null)
