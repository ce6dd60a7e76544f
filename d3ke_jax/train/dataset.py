"""A run's dataset, built on first use (training and evaluation read their splits)."""

import os

import jax
import tensorflow_datasets as tfds

from d3ke_jax import devices
from d3ke_jax.data import movi_files
from d3ke_jax.data.records import Records
from d3ke_jax.data.registry import quiet_tfds
from d3ke_jax.runs import ConfigError, dataset_config, require

BUILD_TIMEOUT = 48 * 3600  # seconds processes wait while process 0 builds a dataset


def load_dataset(config, splits=("train", "validation")):
  """{split: ``records.Records``} of ``config.dataset``, built on first use: the synthetic
  dataset is generated; MoVi is built from the downloads in ``dataset.manual_dir``. In a
  job of several processes, process 0 builds it while the others wait."""
  builder_class, _ = dataset_config(config)
  require(config, "dataset.data_dir")
  name = config.dataset.name
  data_dir = config.dataset.data_dir
  if os.path.exists(data_dir) and not os.path.isdir(data_dir):
    raise ConfigError(f"dataset.data_dir={data_dir!r}: a file, not a directory")
  with quiet_tfds():
    builder = builder_class(config=config.dataset.config, data_dir=data_dir,
                            file_format="array_record")
    manual_dir = config.dataset.get("manual_dir") or None
    if not builder.is_prepared() and builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
      if not manual_dir:
        raise ConfigError(f"dataset.manual_dir: required to build {name} "
                          f"({config.dataset.config}), which is not in {builder.data_dir} yet")
      movi_files.check_manual_dir(manual_dir)
    if jax.process_index() == 0:
      builder.download_and_prepare(  # a no-op once built
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    devices.sync_processes(f"dataset {name}/{config.dataset.config}", BUILD_TIMEOUT)
    if jax.process_index() != 0:  # see what process 0 built
      builder = builder_class(config=config.dataset.config, data_dir=data_dir,
                              file_format="array_record")
  sources = builder.as_data_source()
  return {split: Records(sources[split]) for split in splits}
