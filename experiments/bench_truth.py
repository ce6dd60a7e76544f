"""``python -m experiments.bench truth [--frames 1200] [--model M.osim]``: MoVi ground truth.

A subject skinned from an SMPL+H body, as the MoVi builder skins AMASS's: the fake body of
``d3ke_jax.body.fake_smplh`` (made from the project's model) with random betas moves through
a smooth motion of the project's model (every coordinate the body can show sweeps up to
+-0.5 rad of its range; the others stay at their defaults) turned into SMPL+H joint
rotations, at 120 Hz in AMASS's z-up world. Its 130 virtual markers (2 mm noise) and the
static trial of the zero pose (``virtual_markers.static_markers``) go through
``movi_truth.subject_truth`` (scaling, marker placement, IK of every frame); OpenSim's
InverseKinematicsTool solves the same motion markers with the same weights on the same
scaled, placed model. Prints mocap frames per second, both solvers' angle errors against the
generating motion (SMPL+H places some joints unlike the model: both carry that mismatch) and
their fractions of valid coordinates by the 2 cm rule (``movi_truth.MaskRules``; OpenSim's
marker errors from the project's forward kinematics of its solution).
"""

import contextlib
import os
import sys
import tempfile
import time

import jax
import numpy as np

from d3ke_jax import cli
from d3ke_jax.body import fake_smplh, smplh
from d3ke_jax.body import virtual_markers as vm
from d3ke_jax.data import movi_truth
from d3ke_jax.data.loader import usable_cpus
from d3ke_jax.errors import UserError
from d3ke_jax.io import MarkerTrajectories, write_trc
from d3ke_jax.skeleton import default_model_path, forward_kinematics, load_osim
from d3ke_jax.skeleton.ik import free_coordinates, unobserved_coordinates
from d3ke_jax.skeleton.kinematics import resolve_coordinates
from d3ke_jax.skeleton.placement import model_markers
from d3ke_jax.skeleton.sampling import smooth_motion
from d3ke_jax.skeleton.scaling import write_scaled_osim
from experiments.bench import read_opensim_coordinates

RATE = 120.0  # Hz, AMASS's rate for BML-MoVi
NOISE = 0.002  # m, RMS distance of the motion markers' noise


def add_parser(subparsers):
  """Registers the ``truth`` benchmark."""
  parser = subparsers.add_parser("truth", help="MoVi ground truth (scaling, marker placement, "
                                 "IK) vs OpenSim's InverseKinematicsTool")
  parser.add_argument("--model", help="OpenSim model the solvers fit (default: the project's)")
  parser.add_argument("--frames", type=cli.number(int, 0), default=1200,
                      help="mocap frames of the motion (120 Hz)")
  parser.set_defaults(run=bench_truth)


def synthetic_subject(frames, rng):
  """A fake SMPL+H subject (module docstring): (the project's model, its coordinates (T, C)
  that generate the motion, static markers (142, 3) and names, motion markers (T, 130, 3) and
  names (``vm.MARKER_NAMES``) in the z-up world)."""
  skeleton = fake_smplh.skeletal_model()
  with tempfile.TemporaryDirectory() as tmp:
    body = smplh.load_smplh(fake_smplh.write_fake_smplh(
        os.path.join(tmp, "smplh", "female", "model.npz"), "female"))
  betas = np.concatenate([rng.normal(0, 1, 2), rng.normal(0, 0.3, smplh.NUM_BETAS - 2)])
  coords = smooth_motion(skeleton, frames, rng, rate=RATE, limit=0.5)
  hidden = np.setdiff1d(np.arange(skeleton.num_coordinates), fake_smplh.smplh_coordinates())
  coords[:, hidden] = np.asarray(skeleton.coordinate_defaults)[hidden]
  coords = np.asarray(resolve_coordinates(skeleton, coords.T.astype(np.float32)).T)
  poses, trans = fake_smplh.smplh_motion(
      [dict(zip(skeleton.coordinate_names, row)) for row in coords], body.v_template,
      body.shapedirs, body.J_regressor, betas)
  points = smplh.smplh_points(body, betas, poses, trans, vm.POINT_VERTICES, vm.POINT_JOINTS)
  motion, names = vm.virtual_markers(points)
  motion = np.asarray(motion, float) + rng.normal(0, NOISE / np.sqrt(3), motion.shape)
  static, static_names = vm.static_markers(body, betas)
  return skeleton, coords, np.asarray(static), static_names, motion, names


def bench_truth(args):
  path = args.model or default_model_path()
  model = load_osim(path)
  skeleton, coords, static, static_names, motion, names = synthetic_subject(
      args.frames, np.random.default_rng(0))
  weighted = [n for n in model.marker_names if movi_truth.IK_WEIGHTS.get(n, 0) > 0]
  blind = set(unobserved_coordinates(model, weighted))
  pelvis = {c for j, _, c in model.axis_inputs if j == model.root_joint}
  scored = [i for i in free_coordinates(model) if model.coordinate_types[i] == "rotational"
            and i not in blind | pelvis and model.coordinate_names[i] in skeleton.coordinate_names]
  if not scored:
    raise UserError(f"{path}: none of its free rotational coordinates (pelvis excepted) that "
                    "weighted markers move is a coordinate of the project's model")
  true = coords[:, [skeleton.coordinate_index(model.coordinate_names[i]) for i in scored]]
  print(f"MoVi ground truth, {os.path.basename(path)}: {args.frames} mocap frames at "
        f"{RATE:g} Hz of a fake SMPL+H body (random betas), {len(weighted)} weighted markers; "
        f"d3ke-jax on {jax.devices()[0].platform.upper()} ({os.cpu_count()} CPU cores) vs "
        f"OpenSim's InverseKinematicsTool with the same weights on the same scaled, placed "
        f"model. Angle errors and valid coordinates (2 cm rule) over the {len(scored)} "
        f"rotational coordinates (pelvis excepted) that weighted markers move.\n", flush=True)
  cores = usable_cpus()
  print(f"This process may run on {cores} CPU core{'s' if cores > 1 else ''}; per core: mocap "
        "frames per second of the process's CPU time (all its threads; run under `taskset "
        "-c 0` for one core).\n")
  print("| solver | what | seconds: first run / second | mocap frames/s (second) | "
        "mocap frames/s per core | median (deg) | mean (deg) | p95 (deg) | "
        "valid coordinates (2 cm rule) |")
  print("|---|---|---|---|---|---|---|---|---|", flush=True)
  seconds = []
  for _ in range(2):
    start, cpu = time.perf_counter(), time.process_time()
    truth = movi_truth.subject_truth(model, static, [motion], names, RATE,
                                     static_names=static_names)
    seconds.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
  ours = truth.motions[0]
  _row("d3ke-jax", "scaling + placement + IK", seconds, cpu, args.frames,
       ours.coords[:, scored], true, ours.coordinate_mask[:, scored])
  placed = model.replace(marker_offsets=truth.marker_offsets)
  observed = [n for n in names if n in model.marker_names]
  with tempfile.TemporaryDirectory() as tmp:
    subject = _opensim_subject(path, truth, os.path.join(tmp, "subject.osim"))
    solved, opensim_seconds, opensim_cpu = _opensim_ik(
        subject, observed, motion[:, [names.index(n) for n in observed]], tmp)
  valid = _valid_coordinates(placed, truth.scales, solved, model_markers(placed, motion, names))
  _row("OpenSim", "IK", [opensim_seconds], opensim_cpu, args.frames, solved[:, scored], true,
       valid[:, scored])


def _valid_coordinates(placed, scales, coords, targets):
  """(T, C) the 2 cm rule (``movi_truth.MaskRules``) on the placed, scaled model's markers at
  ``coords`` against ``targets`` (T, M, 3), NaN = no label."""
  fk = forward_kinematics(placed, np.asarray(coords, np.float32),
                          scales=np.asarray(scales, np.float32))
  errors = np.linalg.norm(np.asarray(fk.markers, float) - targets, axis=-1)
  return movi_truth.MaskRules(placed).coordinates(errors)


def _row(solver, what, seconds, cpu, frames, solved, true, valid):
  """A table row: wall ``seconds`` of each run, CPU seconds ``cpu`` of the last."""
  error = np.degrees(np.abs(solved - true))
  shown = " / ".join(f"{s:.1f}" for s in seconds)
  print(f"| {solver} | {what} | {shown} | {frames / seconds[-1]:,.1f} | {frames / cpu:,.1f} | "
        f"{np.median(error):.2f} | {np.mean(error):.2f} | {np.percentile(error, 95):.2f} | "
        f"{100 * np.mean(valid):.1f} % |", flush=True)


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
  """OpenSim's InverseKinematicsTool with ``IK_WEIGHTS``: (coordinates (T, C), wall seconds,
  CPU seconds)."""
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
  start, cpu = time.perf_counter(), time.process_time()
  with _native_stdout_silenced():  # the tool prints the model's summary there
    tool.run()
  seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
  return read_opensim_coordinates(load_osim(path), mot), seconds, cpu


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
