"""The input pipeline's worker threads: the same batches as one worker and as reading the
frames one by one, and a worker's error raised in the consumer, naming the file."""

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
  made = {workers: list(pipeline.frame_batches(
      records, 4, devices=2, seed=7, epoch=epoch, augmentation=pipeline.Augmentation(),
      start_batch=start_batch, workers=workers)) for workers in (1, 3)}
  expected = _one_by_one(records, 4, 7, epoch)[start_batch:]
  assert len(made[1]) == len(made[3]) == len(expected) == 3 - start_batch
  for one, three, reference in zip(made[1], made[3], expected):
    assert sorted(one) == sorted(three) == sorted(reference)
    for key, value in reference.items():
      assert one[key].shape == three[key].shape == (2, 2) + value.shape[1:]
      np.testing.assert_array_equal(one[key].reshape(value.shape), value, err_msg=key)
      np.testing.assert_array_equal(three[key], one[key], err_msg=key)
  assert not np.array_equal(made[3][0]["image"].reshape(expected[0]["image"].shape),
                            _one_by_one(records, 4, 8, epoch)[start_batch]["image"])


def test_a_workers_error_reaches_the_consumer_naming_the_file():
  # Record 9 (in the second shard) is damaged.
  source = pipeline.Records(DamagedSource(_records(), damaged=9, shard_lengths=[6, 6]))
  batches = pipeline.frame_batches(source, 3, shuffle=False, workers=3)
  assert [next(batches)["frame"].tolist() for _ in range(3)] == [[[0, 1, 2]], [[3, 4, 5]],
                                                                 [[6, 7, 8]]]
  with pytest.raises(UserError, match=r"^d/x-train.array_record-00001-of-00002: record 9 is "
                                      r"damaged \(Corrupted Riegeli"):
    next(batches)
