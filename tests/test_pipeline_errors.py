"""The input pipeline's errors reach the training loop, naming the file where known."""

import threading
import time

import pytest

from damaged_source import DamagedSource
from d3ke_jax.data import pipeline
from d3ke_jax.errors import UserError


def _fails_after_two():
  yield 1
  yield 2
  raise OSError("shard-3.array_record: read error")


def test_prefetch_raises_the_producers_error_after_its_items():
  received = []
  with pytest.raises(OSError, match="shard-3.array_record: read error"):
    for item in pipeline.prefetch(_fails_after_two()):
      received.append(item)
  assert received == [1, 2]


def test_prefetch_ends_normally_and_stops_its_thread_when_closed_early():
  assert list(pipeline.prefetch(iter(range(5)))) == [0, 1, 2, 3, 4]
  before = threading.active_count()
  batches = pipeline.prefetch(iter(range(1000)), size=2)
  assert next(batches) == 0
  batches.close()  # the consumer stops early (the training loop at max_steps)
  for _ in range(50):
    if threading.active_count() < before + 1:
      break
    time.sleep(0.05)
  assert threading.active_count() <= before


def test_a_damaged_record_names_its_file():
  records = pipeline.Records(DamagedSource([{"index": i} for i in range(7)], damaged=5,
                                           shard_lengths=[3, 4]))
  assert len(records) == 7 and records[3] == {"index": 3}
  with pytest.raises(UserError, match=r"^d/x-train.array_record-00001-of-00002: record 5 is "
                                      r"damaged \(Corrupted Riegeli/records file: chunk data "
                                      r"hash mismatch\); delete d to build the dataset again$"):
    records[5]
  assert [records.path(i)[-13:-9] for i in (0, 2, 3, 6)] == ["0000", "0000", "0001", "0001"]
