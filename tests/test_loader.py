"""The input pipeline (grain): batches that do not depend on the number of processes or
workers, exact resumption from a saved iterator state or from a step alone, and errors
that reach the trainer naming the file."""

import multiprocessing
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from damaged_source import DamagedSource
from d3ke_jax.background import ahead
from d3ke_jax.data import loader
from d3ke_jax.data.d3ke_synthetic import decode_jpeg, encode_jpeg
from d3ke_jax.data.records import Records
from d3ke_jax.errors import UserError

FRAMES, SIZE = 13, 16


def _records(count=FRAMES):
  """Frames as a dataset stores them: JPEG bytes and labels (text fields too)."""
  rng = np.random.default_rng(0)
  return [{"image": encode_jpeg(rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8)),
           "coordinates": rng.normal(0, 1, 4).astype(np.float32),
           "frame": np.int32(k), "movement": b"walking"} for k in range(count)]


def _stream(records, global_batch, process, processes, workers=1, kind=False, epochs=3):
  rows = (process * global_batch // processes, (process + 1) * global_batch // processes)
  order = loader.TrainOrder(len(records), global_batch, rows, seed=7)
  return loader.TrainStream(loader.ReadFrame(records), order, order.steps_per_epoch * epochs,
                            workers=workers, processes=kind)


def _global(records, processes, workers=1, kind=False, step=0, saved=None):
  """Every global batch from ``step`` on: the rows of each process, concatenated."""
  parts = [[batch for batch, _ in _stream(records, 4, p, processes, workers, kind).batches(
      step, None if saved is None else saved[p])] for p in range(processes)]
  return [{k: np.concatenate([part[b][k] for part in parts]) for k in parts[0][b]}
          for b in range(len(parts[0]))]


def test_global_batches_do_not_depend_on_processes_or_workers():
  records = _records()
  reference = _global(records, 1)
  # 13 records in batches of 4: 3 batches an epoch (the 13th waits for another epoch).
  assert len(reference) == 9
  for b, batch in enumerate(reference):
    epoch = b // 3
    order = np.random.default_rng([7, epoch]).permutation(FRAMES)[b % 3 * 4:b % 3 * 4 + 4]
    np.testing.assert_array_equal(batch["record"], order)
    np.testing.assert_array_equal(batch["epoch"], epoch)
    np.testing.assert_array_equal(batch["frame"], order)
    np.testing.assert_array_equal(batch["image"], np.stack(
        [decode_jpeg(records[i]["image"]) for i in order]))
    assert "movement" not in batch and batch["image"].dtype == np.uint8
  for processes, workers, kind in [(2, 1, False), (4, 3, False), (2, 2, True)]:
    made = _global(records, processes, workers, kind)
    assert len(made) == len(reference)
    for ours, theirs in zip(made, reference):
      for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=f"{processes} x {workers} {kind}")


@pytest.mark.parametrize("workers, kind", [(2, False), (2, True)])
def test_a_stream_resumes_from_its_state_or_from_the_step(workers, kind):
  records = _records()
  stream = _stream(records, 4, 0, 1, workers, kind)
  taken = list(stream.batches(0))
  _, state_4 = taken[4]
  # The iterator state saved with a checkpoint after step 5; one saved by other workers
  # (the step decides); none (a run from before the data state, or another layout).
  others = [dict(state_4, workers=workers + 1), None] if not kind else []
  for saved in [state_4] + others:
    resumed = list(stream.batches(5, saved))
    assert len(resumed) == len(taken) - 5
    for (ours, _), (theirs, _) in zip(resumed, taken[5:]):
      np.testing.assert_array_equal(ours["record"], theirs["record"])
      np.testing.assert_array_equal(ours["image"], theirs["image"])
  assert state_4["first_step"] == 0 and (state_4["workers"], state_4["processes"]) == (workers,
                                                                                      kind)
  if not kind:  # a state saved after resuming from a step resumes where that stream began
    _, state_6 = list(stream.batches(5))[1]
    again = next(stream.batches(7, state_6))[0]
    np.testing.assert_array_equal(again["record"], taken[7][0]["record"])


def test_split_order_reads_every_record_once_in_order():
  for processes in (1, 2):
    seen = []
    for p in range(processes):
      order = loader.SplitOrder(FRAMES, 4, (p * 4 // processes, (p + 1) * 4 // processes))
      seen.append([int(order(k)[1]) for k in range(len(order))])
    # Global batches of 4 rows: 0-3, 4-7, 8-11, then 12 and three repeats of it.
    rows = np.stack([np.reshape(s, (4, -1)) for s in seen], 1).reshape(-1)
    np.testing.assert_array_equal(rows, list(range(13)) + [12, 12, 12])


@pytest.mark.parametrize("kind", [False, True], ids=["threads", "processes"])
def test_a_workers_error_reaches_the_consumer_naming_the_file(kind):
  # Record 9 (in the second shard) is damaged.
  source = Records(DamagedSource(_records(12), damaged=9, shard_lengths=[6, 6]))
  order = loader.SplitOrder(12, 3, (0, 3))
  batches = iter(loader.batches(loader.ReadFrame(source), order, 3, 0, len(order), workers=3,
                                processes=kind))
  assert [next(batches)["frame"].tolist() for _ in range(3)] == [[0, 1, 2], [3, 4, 5],
                                                                 [6, 7, 8]]
  with pytest.raises(UserError, match=r"^d/x-train.array_record-00001-of-00002: record 9 is "
                                      r"damaged \(Corrupted Riegeli"):
    next(batches)
  batches.close()


def test_process_workers_stop_with_their_batches():
  before = set(multiprocessing.active_children())
  batches = _stream(_records(), 4, 0, 1, workers=2, kind=True).batches(0)
  next(batches)
  assert len(set(multiprocessing.active_children()) - before) == 2
  batches.close()
  deadline = time.monotonic() + 10
  while set(multiprocessing.active_children()) - before and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not set(multiprocessing.active_children()) - before


def test_process_workers_end_when_their_parent_is_killed(tmp_path):
  script = tmp_path / "parent.py"
  script.write_text(f"""
import multiprocessing, sys, time
sys.path[:0] = {[os.path.dirname(__file__)]!r}
from test_loader import _records, _stream

if __name__ == "__main__":
  batches = _stream(_records(), 4, 0, 1, workers=2, kind=True).batches(0)
  next(batches)
  print(*[child.pid for child in multiprocessing.active_children()], flush=True)
  time.sleep(60)
""")
  parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
  pids = [int(pid) for pid in parent.stdout.readline().split()]
  assert len(pids) >= 2  # the two workers (and grain's helpers)
  parent.kill()
  parent.wait()
  deadline = time.monotonic() + 20
  while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
    time.sleep(0.2)
  assert not [pid for pid in pids if _alive(pid)]


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  with open(f"/proc/{pid}/stat") as f:  # a zombie has ended
    return f.read().split(") ")[-1][0] != "Z"


def test_usable_cpus_reads_the_affinity_and_a_cgroup_quota(monkeypatch, tmp_path):
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 5})
  real_open = open
  quota = tmp_path / "cpu.max"

  def fake_open(path, *args, **kwargs):
    return real_open(quota if path == "/sys/fs/cgroup/cpu.max" else path, *args, **kwargs)

  monkeypatch.setattr("builtins.open", fake_open)
  for text, expected in [("max 100000\n", 5), ("250000 100000\n", 3), ("50000 100000\n", 1),
                         ("800000 100000\n", 5), ("garbled\n", 5)]:
    quota.write_text(text)
    assert loader.usable_cpus() == expected, text
  quota.unlink()
  assert loader.usable_cpus() == 5


def _fails_after_two():
  yield 1
  yield 2
  raise OSError("shard-3.array_record: read error")


def test_ahead_raises_the_producers_error_after_its_items():
  received = []
  with pytest.raises(OSError, match="shard-3.array_record: read error"):
    for item in ahead(_fails_after_two()):
      received.append(item)
  assert received == [1, 2]


def test_ahead_ends_normally_and_stops_its_thread_when_closed_early():
  assert list(ahead(iter(range(5)))) == [0, 1, 2, 3, 4]
  before = threading.active_count()
  items = ahead(iter(range(1000)), size=2)
  assert next(items) == 0
  items.close()  # the consumer stops early (the training loop at max_steps)
  for _ in range(50):
    if threading.active_count() < before + 1:
      break
    time.sleep(0.05)
  assert threading.active_count() <= before


def test_a_damaged_record_names_its_file():
  records = Records(DamagedSource([{"index": i} for i in range(7)], damaged=5,
                                  shard_lengths=[3, 4]))
  assert len(records) == 7 and records[3] == {"index": 3}
  with pytest.raises(UserError, match=r"^d/x-train.array_record-00001-of-00002: record 5 is "
                                      r"damaged \(Corrupted Riegeli/records file: chunk data "
                                      r"hash mismatch\); delete d to build the dataset again$"):
    records[5]
  assert [records.path(i)[-13:-9] for i in (0, 2, 3, 6)] == ["0000", "0000", "0001", "0001"]
