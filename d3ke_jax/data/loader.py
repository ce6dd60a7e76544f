"""The input pipeline: grain reads and decodes records on the host, each process its share.

A global batch is the same whatever the number of processes or workers: ``TrainOrder`` (the
index sampler) visits every epoch's records in a permutation seeded by (seed, epoch), cut
to whole global batches, and gives each process the consecutive rows of every global batch
that its devices hold (``devices.process_rows``); ``SplitOrder`` visits a split once, in
order. Grain reads and decodes whole batches, each on one of its threads or worker
processes; a batch holds the same positions whichever worker makes it, so the batches do
not depend on the workers either. The host only decodes: augmentation runs on the device
(``d3ke_jax.data.augment``).
"""

import functools
import math
import os
import signal
import threading
import time

import grain
import numpy as np
from absl import flags

from d3ke_jax.data.records import decode, numeric


def usable_cpus():
  """CPU cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota
  (a container's share of a larger host)."""
  count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  try:
    with open("/sys/fs/cgroup/cpu.max") as f:
      quota, period = f.read().split()
    if quota != "max":
      count = min(count, max(1, math.ceil(int(quota) / int(period))))
  except (OSError, ValueError):
    pass
  return count or 1


class TrainOrder:
  """Position k of this process's stream -> (epoch, record). Epoch e visits the ``count``
  records in the permutation seeded by (``seed``, e) (in order without ``shuffle``), cut to
  whole global batches of ``global_batch``; each global batch gives this process its
  ``rows`` (start, stop)."""

  def __init__(self, count, global_batch, rows, seed=0, shuffle=True):
    self.count, self.global_batch, self.rows = count, global_batch, tuple(rows)
    self.seed, self.shuffle = seed, shuffle
    self.steps_per_epoch = count // global_batch
    self.local_batch = rows[1] - rows[0]

  def __call__(self, position):
    step, row = divmod(int(position), self.local_batch)
    epoch, batch = divmod(step, self.steps_per_epoch)
    index = batch * self.global_batch + self.rows[0] + row
    return np.int32(epoch), np.int32(self._permutation(epoch)[index])

  @functools.lru_cache(maxsize=2)
  def _permutation(self, epoch):
    if not self.shuffle:
      return np.arange(self.count)
    return np.random.default_rng([self.seed, epoch]).permutation(self.count)


class SplitOrder:
  """Position k of this process's stream -> (0, record): every record of a split once, in
  order, in global batches of ``global_batch`` (the last filled up by repeating the last
  record), this process reading its ``rows`` of each."""

  def __init__(self, count, global_batch, rows):
    self.count, self.global_batch, self.rows = count, global_batch, tuple(rows)
    self.local_batch = rows[1] - rows[0]
    self.batches = max(1, -(-count // global_batch))

  def __len__(self):
    return self.batches * self.local_batch

  def __call__(self, position):
    batch, row = divmod(int(position), self.local_batch)
    return np.int32(0), np.int32(min(batch * self.global_batch + self.rows[0] + row,
                                     self.count - 1))


class ReadFrame:
  """(epoch, record) -> the record decoded (its image uint8), its numeric fields only, with
  ``epoch`` and ``record``."""

  def __init__(self, source):
    self.source = source

  def __call__(self, position):
    epoch, record = position
    return dict(numeric(decode(self.source[int(record)])), epoch=epoch, record=record)


class ReadWindow:
  """(epoch, window) -> ``arrays`` (per-frame, held in memory) at the frames of window
  ``first[window]`` ... + ``length``, never past ``last[window]`` (a short clip's last frame
  repeats), with ``epoch`` and ``record`` (the window)."""

  def __init__(self, arrays, first, length, last=None):
    self.arrays, self.first, self.length = arrays, np.asarray(first), length
    self.last = self.first + length - 1 if last is None else np.asarray(last)

  def __call__(self, position):
    epoch, window = position
    frames = np.minimum(self.first[window] + np.arange(self.length), self.last[window])
    return dict({k: v[frames] for k, v in self.arrays.items()}, epoch=epoch, record=window)


def _start_worker(parent, *_):
  """A worker process leaves SIGINT and SIGTERM to the trainer (process ``parent``), which
  stops it, and ends once the trainer is gone (killed, so that it could not stop its
  workers), even before the worker started."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent):
  while os.getppid() == parent:
    time.sleep(1)
  os._exit(1)  # pylint: disable=protected-access


def batches(read, order, local_batch, start, stop, workers=1, processes=False):
  """A grain dataset of this process's batches: positions ``start`` to ``stop`` of
  ``order`` (multiples of ``local_batch``), read by ``read`` and batched ``local_batch`` at a
  time, each batch by one of ``workers`` threads (or worker processes where ``processes``);
  a batch holds the same positions whichever worker makes it."""
  if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags
    flags.FLAGS.mark_as_parsed()
  dataset = grain.MapDataset.range(start, stop).map(order).map(read).batch(
      local_batch, drop_remainder=True)
  threads = 1 if processes else workers
  stream = dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                     prefetch_buffer_size=2 * threads))
  if processes:
    stream = stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                                worker_init_fn=functools.partial(_start_worker, os.getpid()))
  return stream


class TrainStream:
  """This process's training batches, resumable at any step: ``batches(step, saved)`` yields
  (batch, state) pairs from ``step`` on, ``state`` being what a checkpoint taken after that
  batch's step saves (JSON-able). ``saved``, such a state, resumes the grain iterator where
  it was; one saved by other workers is not used: the order is positioned at ``step``
  instead (the batches are the same)."""

  def __init__(self, read, order, steps, workers=1, processes=False):
    self.read, self.order, self.steps = read, order, steps
    self.workers, self.processes = workers, processes

  def batches(self, step, saved=None):
    first, state = step, None
    if saved and (saved.get("workers"), saved.get("processes")) == (self.workers,
                                                                    self.processes):
      first, state = saved["first_step"], saved["iterator"]
    local = self.order.local_batch
    iterator = iter(batches(self.read, self.order, local, first * local, self.steps * local,
                            self.workers, self.processes))
    if state is not None:
      iterator.set_state(state)
    try:
      for batch in iterator:
        yield batch, {"first_step": first, "workers": self.workers,
                      "processes": self.processes, "iterator": iterator.get_state()}
    finally:
      iterator.close()
