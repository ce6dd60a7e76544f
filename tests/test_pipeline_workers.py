"""The input pipeline's workers (threads and processes): the same batches as one worker and
as reading the frames one by one, and a worker's error raised in the consumer, naming the
file."""

import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from damaged_source import DamagedSource
from d3ke_jax.data import pipeline
from d3ke_jax.data.d3ke_synthetic import encode_jpeg
from d3ke_jax.errors import UserError

FRAMES, SIZE = 12, 32


def _records(count=FRAMES):
  """Frames as a dataset stores them: JPEG bytes (textured, so that warps and colours
  change them) and labels in a camera 3 m in front of the points."""
  rng = np.random.default_rng(0)
  intrinsics = np.array([[40.0, 0.0, SIZE / 2], [0.0, 40.0, SIZE / 2], [0.0, 0.0, 1.0]])
  return [{"image": encode_jpeg(rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8)),
           "intrinsics": intrinsics.astype(np.float32),
           "joints": (rng.normal(0, 0.3, (5, 3)) + [0, 0, 3]).astype(np.float32),
           "markers": (rng.normal(0, 0.3, (7, 3)) + [0, 0, 3]).astype(np.float32),
           "pelvis_rotation": np.eye(3, dtype=np.float32),
           "coordinates": rng.normal(0, 1, 4).astype(np.float32),
           "frame": k, "movement": "walking"} for k in range(count)]


def _one_by_one(records, batch_size, seed, epoch):
  """Batches as the pipeline made them before it had workers: frames in (seed, epoch)
  order, each decoded and augmented with the generator seeded by (seed, epoch, index)."""
  order = np.random.default_rng([seed, epoch]).permutation(len(records))
  batches = []
  for first in range(0, len(order) - batch_size + 1, batch_size):
    examples = [pipeline.augment(pipeline.decode(records[i]),
                                 np.random.default_rng([seed, epoch, i]), pipeline.Augmentation())
                for i in order[first:first + batch_size]]
    batches.append({k: np.stack([e[k] for e in examples]) for k in examples[0]
                    if k != "movement"})
  return batches


@pytest.mark.parametrize("epoch, start_batch", [(0, 0), (3, 1)])
def test_workers_give_the_batches_of_one_worker_and_of_one_by_one(epoch, start_batch):
  records = _records()
  kinds = {"one thread": (1, False), "three threads": (3, False), "two processes": (2, True)}
  made = {kind: list(pipeline.frame_batches(
      records, 4, devices=2, seed=7, epoch=epoch, augmentation=pipeline.Augmentation(),
      start_batch=start_batch, workers=workers, processes=processes))
          for kind, (workers, processes) in kinds.items()}
  expected = _one_by_one(records, 4, 7, epoch)[start_batch:]
  assert [len(batches) for batches in made.values()] == [3 - start_batch] * 3
  assert len(expected) == 3 - start_batch
  for k, reference in enumerate(expected):
    one = made["one thread"][k]
    assert sorted(one) == sorted(reference)
    for key, value in reference.items():
      assert one[key].shape == (2, 2) + value.shape[1:]
      np.testing.assert_array_equal(one[key].reshape(value.shape), value, err_msg=key)
      for kind in ("three threads", "two processes"):
        assert sorted(made[kind][k]) == sorted(one)
        np.testing.assert_array_equal(made[kind][k][key], one[key], err_msg=f"{kind}: {key}")
  assert not np.array_equal(made["two processes"][0]["image"].reshape(
      expected[0]["image"].shape), _one_by_one(records, 4, 8, epoch)[start_batch]["image"])


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_a_workers_error_reaches_the_consumer_naming_the_file(processes):
  # Record 9 (in the second shard) is damaged.
  source = pipeline.Records(DamagedSource(_records(), damaged=9, shard_lengths=[6, 6]))
  batches = pipeline.frame_batches(source, 3, shuffle=False, workers=3, processes=processes)
  assert [next(batches)["frame"].tolist() for _ in range(3)] == [[[0, 1, 2]], [[3, 4, 5]],
                                                                 [[6, 7, 8]]]
  with pytest.raises(UserError, match=r"^d/x-train.array_record-00001-of-00002: record 9 is "
                                      r"damaged \(Corrupted Riegeli"):
    next(batches)


def test_process_workers_stop_with_their_batches():
  batches = pipeline.frame_batches(_records(), 4, shuffle=False, workers=2, processes=True)
  next(batches)
  assert len(multiprocessing.active_children()) == 2
  batches.close()
  assert not multiprocessing.active_children()


def test_process_workers_end_when_their_parent_is_killed(tmp_path):
  script = tmp_path / "parent.py"
  script.write_text(f"""
import multiprocessing, sys, time
sys.path[:0] = {[os.path.dirname(__file__)]!r}
from d3ke_jax.data import pipeline
from test_pipeline_workers import _records

if __name__ == "__main__":
  with pipeline.Workers(_records(), 2, processes=True) as workers:
    workers.examples(range(4))
    print(*[child.pid for child in multiprocessing.active_children()], flush=True)
    time.sleep(60)
""")
  parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
  pids = [int(pid) for pid in parent.stdout.readline().split()]
  assert len(pids) == 2  # the pool's two workers
  parent.kill()
  parent.wait()
  deadline = time.monotonic() + 10
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
    assert pipeline.usable_cpus() == expected, text
  quota.unlink()
  assert pipeline.usable_cpus() == 5
