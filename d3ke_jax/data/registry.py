"""The datasets training and ``experiments.build_data`` know, by config name."""

import contextlib

from absl import logging

from d3ke_jax.data.d3ke_synthetic import D3keSynthetic
from d3ke_jax.data.movi import Movi

DATASETS = {"synthetic": D3keSynthetic, "movi": Movi}


@contextlib.contextmanager
def quiet_tfds():
  """TFDS's warnings about the dataset folders it looks through (one being built has no
  dataset_info.json yet) silenced inside the block."""
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)
