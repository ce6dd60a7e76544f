"""A fake TFDS data source whose records lie in two array_record shards and one of which
fails to read as a damaged array_record file does (the input pipeline's error tests)."""

import types

SHARDS = ["d/x-train.array_record-00000-of-00002", "d/x-train.array_record-00001-of-00002"]
ERROR = "Corrupted Riegeli/records file: chunk data hash mismatch\nmore"


class DamagedSource:
  """``records`` split into the two ``SHARDS`` by ``shard_lengths``; reading record
  ``damaged`` raises array_record's RuntimeError."""

  def __init__(self, records, damaged, shard_lengths):
    self.records, self.damaged = records, damaged
    self.split = "train"
    self.dataset_info = types.SimpleNamespace(splits={"train": types.SimpleNamespace(
        filepaths=SHARDS, shard_lengths=list(shard_lengths))})

  def __len__(self):
    return len(self.records)

  def __getitem__(self, index):
    if index == self.damaged:
      raise RuntimeError(ERROR)
    return self.records[index]
