"""Records of a TFDS array_record data source: random access that names the file of a
damaged record, decoding, and the labels of a whole split without its images."""

import os

import numpy as np

from d3ke_jax.data.d3ke_synthetic import decode_jpeg
from d3ke_jax.errors import UserError


class Records:
  """Random access to the records of a TFDS data source (``len``, ``[index]``); a damaged
  record raises ``UserError`` naming its file, which array_record's error does not."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    try:
      return self.source[index]
    except RuntimeError as e:  # array_record: "Corrupted Riegeli/records file: ..."
      path = self.path(index)
      raise UserError(f"{path}: record {index} is damaged ({str(e).splitlines()[0]}); delete "
                      f"{os.path.dirname(path)} to build the dataset again") from None

  def path(self, index):
    """The file holding record ``index``."""
    split = self.source.dataset_info.splits[self.source.split]
    return split.filepaths[int(np.searchsorted(np.cumsum(split.shard_lengths), index, "right"))]


def decode(record):
  """A stored record -> example dict with the image as uint8 (H, W, 3) and text as str."""
  out = {k: (v.decode() if isinstance(v, bytes) and k != "image" else v) for k, v in
         record.items()}
  out["image"] = decode_jpeg(record["image"])
  return out


def numeric(example):
  """The fields of an example that are arrays or numbers (what a device batch holds)."""
  return {k: v for k, v in example.items() if not isinstance(v, (str, bytes))}


def labels(source, keys, optional=()):
  """The fields ``keys`` of every record, stacked (images are never decoded), and those of
  ``optional`` that the records hold."""
  records = [source[i] for i in range(len(source))]
  keys = list(keys) + [k for k in optional if records and k in records[0]]
  return {k: np.stack([np.asarray(r[k].decode() if isinstance(r[k], bytes) else r[k])
                       for r in records]) for k in keys}
