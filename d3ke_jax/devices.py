"""The device axis: one 1-D mesh over every device of every process.

Everything outside this module sees global arrays: a batch is split along its first axis
over the mesh (each process holds the rows of its own devices, ``process_rows``), and
parameters and optimizer state are replicated on every device. ``data_parallel`` runs a
per-device function on them, the way ``jax.pmap`` does (which is ``jit`` of ``shard_map``
in JAX 0.10): each device computes on its rows and the function's collectives
(``jax.lax.pmean(x, AXIS)``) combine the devices of all processes.
"""

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from d3ke_jax.background import ahead

AXIS = "batch"
SPLIT = PartitionSpec(AXIS)  # along the first axis, over the devices
REPLICATED = PartitionSpec()
COMPILE_TIMEOUT = 3600  # seconds processes wait for each other to compile a program


def make_mesh(devices=None) -> Mesh:
  """A mesh of ``devices`` (default: every device of every process, process by process)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (AXIS,))


def split(mesh):
  return NamedSharding(mesh, SPLIT)


def replicated(mesh):
  return NamedSharding(mesh, REPLICATED)


def process_rows(mesh, size):
  """The rows ``[start, stop)`` of a global batch of ``size`` that this process holds: those
  of its devices, which are consecutive in the mesh."""
  devices = list(mesh.devices.flat)
  mine = [k for k, d in enumerate(devices) if d.process_index == jax.process_index()]
  if size % len(devices):
    raise ValueError(f"a batch of {size} does not split over {len(devices)} devices")
  per_device = size // len(devices)
  return mine[0] * per_device, (mine[-1] + 1) * per_device


def data_parallel(fn, mesh, in_specs, out_specs, donate_argnums=()):
  """``fn`` run on every device of ``mesh`` (``SPLIT`` arguments give each device its rows,
  ``REPLICATED`` ones the whole value), compiled for global arrays. As in ``pmap``, ``fn``
  makes its ``REPLICATED`` outputs alike on every device (e.g. by ``pmean``); that is not
  type-checked (``check_vma``), so that code written for one device (a scan starting from
  zeros) runs unchanged. With several processes, every process compiles a new input shape
  before any of them runs it (``_Synchronised``)."""
  mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                         check_vma=False)
  jitted = jax.jit(mapped, donate_argnums=donate_argnums)
  return jitted if jax.process_count() == 1 else _Synchronised(jitted)


class _Synchronised:
  """A jitted function that, on several processes, compiles each new input signature, then
  waits for every process to have compiled it before running it: the first run sets up the
  collectives' connections, which fail when processes arrive there tens of seconds apart
  (one still compiling; gloo waits 30 s)."""
  _count = 0  # programs made so far: the same on every process, which make them in one order

  def __init__(self, jitted):
    _Synchronised._count += 1
    self.jitted, self.name, self.compiled = jitted, f"program {_Synchronised._count}", {}

  def __call__(self, *args):
    leaves, structure = jax.tree.flatten(args)
    key = (structure, tuple((x.shape, x.dtype, x.sharding) for x in leaves))
    if key not in self.compiled:
      self.compiled[key] = self.jitted.lower(*args).compile()
      sync_processes(f"d3ke {self.name} compiled for inputs {len(self.compiled)}",
                     COMPILE_TIMEOUT)
    return self.compiled[key](*args)


def put_rows(tree, mesh):
  """This process's rows of a batch (NumPy) -> the global batch, split over ``mesh``."""
  sharding = split(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), tree)


def put_replicated(tree, mesh):
  """A value every process holds alike -> global arrays replicated on ``mesh`` (arrays
  already so are kept)."""
  sharding = replicated(mesh)

  def put(x):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(put, tree)


def to_host(tree):
  """Global arrays -> NumPy arrays of their whole value, on every process (rows held by
  other processes are gathered from them); NumPy arrays stay as they are."""
  def whole(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(x)
    if x.sharding.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return jax.tree.map(whole, tree)


def padded_rows(count, batch_size):
  """Row indices covering ``count`` rows in batches of ``batch_size`` (K, batch_size), the
  last batch filled up by repeating the last row: batches of one shape, compiled once."""
  batches = max(1, -(-count // batch_size))
  return np.minimum(np.arange(batches * batch_size), count - 1).reshape(batches, batch_size)


def map_batches(fn, tree, batch_size, mesh):
  """``fn`` (a global batch of ``batch_size`` rows -> a tree of global arrays) over every row
  of ``tree`` (NumPy arrays (N, ...) that every process holds), in fixed-size batches split
  over ``mesh`` (each process puts only its rows); the NumPy results for the N rows."""
  count = len(jax.tree.leaves(tree)[0])
  start, stop = process_rows(mesh, batch_size)
  outputs = [to_host(fn(put_rows(jax.tree.map(lambda x, r=rows: x[r[start:stop]], tree), mesh)))
             for rows in padded_rows(count, batch_size)]
  return jax.tree.map(lambda *parts: np.concatenate(parts)[:count], *outputs)


def prefetch(batches, mesh, size=2):
  """``(rows, extra)`` pairs of ``batches`` (rows: this process's rows as NumPy) -> ``(global
  batch, extra)``, put on the devices by a background thread ``size`` batches ahead
  (``background.ahead``)."""
  def on_devices():
    try:
      for rows, extra in batches:
        yield put_rows(rows, mesh), extra
    finally:
      if hasattr(batches, "close"):
        batches.close()
  return ahead(on_devices(), size)


def sync_processes(name, timeout_seconds=600):
  """Waits until every process has reached this point (nothing to wait for in one)."""
  if jax.process_count() > 1:
    ocp.multihost.sync_global_processes(name, timeout=int(timeout_seconds),
                                        processes=set(range(jax.process_count())))
