"""One process of a job checking that checkpoints restore in any layout of processes and
devices: ``python layout_check.py WORKDIR NAME PROCESSES INDEX PORT [RESTORE ...]``, with
XLA_FLAGS forcing this process's CPU devices. It restores the checkpoints ``RESTORE`` (saved
by other layouts into WORKDIR/<name>), prints each one's step, checksum and data state, then
saves its own into WORKDIR/NAME. Used by tests/test_multihost.py."""

import os
import sys

import jax
import numpy as np
import optax


def state_of(step):
  """A train state, the same on every process: AdamW's state included."""
  from d3ke_jax.train.step import TrainState  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(step)
  params = {"conv": rng.normal(size=(3, 3, 4, 8)).astype(np.float32),
            "head": {"bias": rng.normal(size=(5,)).astype(np.float32)}}
  optimizer = optax.adamw(1e-3)
  return TrainState(step=np.int32(step), params=params,
                    batch_stats={"mean": rng.normal(size=(8,)).astype(np.float32)},
                    opt_state=jax.tree.map(lambda x: np.asarray(x) + step,
                                           optimizer.init(params)))


def checksum(state):
  return float(sum(np.sum(np.asarray(x, np.float64)) for x in jax.tree.leaves(state)))


def main():
  workdir, name, processes, index, port, *restore = sys.argv[1:]
  processes, index = int(processes), int(index)
  if processes > 1:
    jax.distributed.initialize(f"localhost:{port}", processes, index)
  from d3ke_jax import devices  # pylint: disable=g-import-not-at-top
  from d3ke_jax import checkpoints  # pylint: disable=g-import-not-at-top
  mesh = devices.make_mesh()
  layout = f"{jax.process_count()}x{jax.local_device_count()}"
  sharding = devices.replicated(mesh)
  for other in restore:
    step = int(other.split("_")[1])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype,
                                                           sharding=sharding), state_of(step))
    latest, best = checkpoints.managers(os.path.join(workdir, other))
    restored_step, state = checkpoints.restore_newest(latest, abstract)
    data = checkpoints.restore_data(latest, restored_step)
    assert all(x.sharding == sharding for x in jax.tree.leaves(state))
    print(f"{layout} process {index} restored {other} step {restored_step} "
          f"checksum {checksum(devices.to_host(state)):.6f} data {data}", flush=True)
    latest.close()
    best.close()
  step = int(name.split("_")[1])
  state = devices.put_replicated(state_of(step), mesh)
  latest, best = checkpoints.managers(os.path.join(workdir, name), train=True)
  checkpoints.save(latest, step, state, {"process": index, "layout": layout})
  latest.wait_until_finished()
  latest.close()
  best.close()
  print(f"{layout} process {index} saved {name} checksum {checksum(state_of(step)):.6f}",
        flush=True)


if __name__ == "__main__":
  main()
