"""``python -m experiments.bench fk [--batches 1 64 1024 4096] [--models ...]``: poses/s of
forward kinematics and of its gradient, beside a plain formulation of the same kinematics
(per pose, 4x4 homogeneous matrices composed level by level, ``jax.vmap``-ed over the
batch) and OpenSim's own implementation (when ``opensim`` is installed), in the same run.

The plain formulation is what the project's layout (``d3ke_jax.skeleton.kinematics``: batch
last, 3x3 algebra written out per component, one ``scan`` over a level schedule) is tuned
against; it computes the same markers (``tests/test_bench_fk.py``), for poses without scales
or root rotation.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import cli
from d3ke_jax.skeleton import default_model_path, forward_kinematics, load_osim
from d3ke_jax.skeleton.kinematics import axis_values, on_device, resolve_coordinates
from d3ke_jax.skeleton.model import GROUND
from d3ke_jax.skeleton.rotations import axis_angle_to_matrix
from d3ke_jax.skeleton.sampling import random_poses
from experiments.bench import REFERENCE_MODEL, median_seconds, reference_missing


def add_parser(subparsers):
  """Registers the ``fk`` benchmark on ``experiments.bench``'s subcommands."""
  count = cli.number(int, 0)
  parser = subparsers.add_parser("fk", help="forward kinematics vs a plain formulation and "
                                 "OpenSim")
  parser.add_argument("--models", nargs="*", help="OpenSim model files (default: the "
                      "project's model and ../shared/reference's full-body model where "
                      "present)")
  parser.add_argument("--batches", nargs="+", type=count, default=[1, 64, 1024, 4096])
  parser.add_argument("--repeats", type=count, default=10)
  parser.add_argument("--opensim-poses", type=count, default=200)
  parser.add_argument("--float64", action="store_true")
  parser.set_defaults(run=bench_fk)
  return parser


def matrix_markers(model, coords):
  """Markers (..., M, 3) of ``coords`` (..., C), the plain way: each pose's joint frames as
  4x4 matrices, composed root to leaf one level at a time, vmapped over the batch."""
  model = on_device(model)
  batch = coords.shape[:-1]
  markers = jax.vmap(lambda q: _pose_markers(model, q))(coords.reshape(-1, coords.shape[-1]))
  return markers.reshape(batch + markers.shape[1:])


def _pose_markers(model, q):
  dtype = q.dtype
  values = axis_values(model, resolve_coordinates(model, q[:, None]))[..., 0]  # (6, J)
  axes = jnp.asarray(model.axes, dtype)  # (J, 6, 3)
  spin = jnp.eye(3, dtype=dtype)
  for i in range(3):
    spin = spin @ axis_angle_to_matrix(axes[:, i], values[i])
  parent_rotation = jnp.asarray(model.parent_rotation, dtype)
  rotation = parent_rotation @ spin @ jnp.swapaxes(
      jnp.asarray(model.child_rotation, dtype), -1, -2)
  slide = jnp.einsum("aj,jak->jk", values[3:], axes[:, 3:])
  position = (jnp.asarray(model.parent_translation, dtype)
              + jnp.einsum("jkl,jl->jk", parent_rotation, slide)
              - jnp.einsum("jkl,jl->jk", rotation, jnp.asarray(model.child_translation, dtype)))
  local = _homogeneous(rotation, position)  # (J, 4, 4)
  world = jnp.zeros((model.num_bodies + 1, 4, 4), dtype).at[-1].set(jnp.eye(4, dtype=dtype))
  parent = np.array(model.joint_parent_body)
  parent = np.where(parent == GROUND, model.num_bodies, parent)  # ground: the last row
  child = np.array(model.joint_child_body)
  for level in model.levels:
    joints = np.array(level)
    world = world.at[child[joints]].set(world[parent[joints]] @ local[joints])
  on_body = world[np.array(model.marker_body)]
  offsets = jnp.asarray(model.marker_offsets, dtype)
  return jnp.einsum("mkl,ml->mk", on_body[:, :3, :3], offsets) + on_body[:, :3, 3]


def _homogeneous(rotation, position):
  bottom = jnp.broadcast_to(jnp.array([0, 0, 0, 1], rotation.dtype), rotation.shape[:-2] + (1, 4))
  return jnp.concatenate([jnp.concatenate([rotation, position[..., None]], -1), bottom], -2)


def opensim_poses_per_second(path, poses):
  """OpenSim 4 through its Python API: set coordinates, realize positions, read markers.
  None where ``opensim`` is not installed."""
  try:
    import opensim  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
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
  with jax.enable_x64(args.float64):  # 64-bit arrays for this command only
    _bench_fk(args)


def _bench_fk(args):
  models = args.models or [default_model_path()] + (
      [REFERENCE_MODEL] if os.path.exists(REFERENCE_MODEL) else [])
  if not args.models and not os.path.exists(REFERENCE_MODEL):
    print(reference_missing("the project's model alone (--models PATH ... measures others)"))
  dtype = jnp.float64 if args.float64 else jnp.float32
  device = jax.devices()[0]
  print(f"forward kinematics, {device.platform.upper()} ({device.device_kind}, "
        f"{jax.device_count()} device(s)), {jnp.dtype(dtype).name}; poses/s, median of "
        f">= {args.repeats} runs after warm-up; gradient: forward and backward pass of the "
        f"markers' sum of squares with respect to the coordinates; plain: 4x4 matrices per "
        f"pose, vmapped\n")
  header = (f"| {'model':<22} | {'batch':>6} | {'forward':>12} | {'gradient':>12} | "
            f"{'gradient time / forward':>23} | {'plain forward':>13} | "
            f"{'plain gradient':>14} | {'speed-up over plain: fwd / grad':>31} | "
            f"{'OpenSim':>9} | {'fwd / OpenSim':>13} |")
  print(header)
  print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
  for path in models:
    model = load_osim(path)
    name = os.path.splitext(os.path.basename(path))[0]
    opensim_rate = opensim_poses_per_second(
        path, random_poses(model, args.opensim_poses, np.random.default_rng(0)))
    calls = {}
    for layout, markers in (("ours", lambda q: forward_kinematics(model, q).markers),
                            ("plain", lambda q: matrix_markers(model, q))):
      calls[layout] = (jax.jit(markers),
                       jax.jit(jax.grad(lambda q, f=markers: jnp.sum(f(q) ** 2))))
    for batch in args.batches:
      q = jnp.asarray(random_poses(model, batch, np.random.default_rng(1)), dtype)
      rates = {layout: [batch / median_seconds(lambda f=f: f(q), args.repeats) for f in fs]
               for layout, fs in calls.items()}
      (fwd, bwd), (plain_fwd, plain_bwd) = rates["ours"], rates["plain"]
      opensim = ("-", "-") if opensim_rate is None else (
          f"{opensim_rate:,.0f}", f"{fwd / opensim_rate:.1f}x")
      print(f"| {name:<22} | {batch:>6} | {fwd:>12,.0f} | {bwd:>12,.0f} | {fwd / bwd:>22.1f}x | "
            f"{plain_fwd:>13,.0f} | {plain_bwd:>14,.0f} | "
            f"{f'{fwd / plain_fwd:.1f}x / {bwd / plain_bwd:.1f}x':>31} | "
            f"{opensim[0]:>9} | {opensim[1]:>13} |", flush=True)
