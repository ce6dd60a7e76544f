"""A training run: its config (saved in the workdir) and its dataset."""

import json
import os
import sys

import jax
import ml_collections
import tensorflow_datasets as tfds

from d3ke_jax import devices
from d3ke_jax.data import movi_files
from d3ke_jax.data.records import Records
from d3ke_jax.data.registry import DATASETS, quiet_tfds
from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import atomic_write

CONFIG_FILE = "config.json"
BUILD_TIMEOUT = 48 * 3600  # seconds processes wait while process 0 builds a dataset


class ConfigError(UserError, ValueError):
  """A config that cannot run: the message names the key and the problem."""


def require(config, *keys):
  """Raises ``ConfigError`` naming the first dotted key missing from ``config``."""
  for key in keys:
    node = config
    for part in key.split("."):
      if not isinstance(node, (dict, ml_collections.ConfigDict)) or part not in node:
        raise ConfigError(f"{key}: missing from the config")
      node = node[part]


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


def dataset_config(config):
  """(builder class, builder config) of ``config.dataset``; ``ConfigError`` naming an
  unknown dataset or variant."""
  require(config, "dataset.name", "dataset.config")
  name = config.dataset.name
  if name not in DATASETS:
    raise ConfigError(f"dataset.name={name!r}: unknown dataset (available: {sorted(DATASETS)})")
  variants = {c.name: c for c in DATASETS[name].BUILDER_CONFIGS}
  if config.dataset.config not in variants:
    raise ConfigError(f"dataset.config={config.dataset.config!r}: unknown (choose from "
                      f"{list(variants)})")
  return DATASETS[name], variants[config.dataset.config]


def loss_weights(config):
  """{term: lambda} from ``config.loss`` (keys ``lambda_<term>``)."""
  return {k[len("lambda_"):]: v for k, v in config.loss.items()}


def frame_rate(config):
  """Frames per second of ``config.dataset``'s clips."""
  return DATASETS[config.dataset.name].FRAME_RATE


RESUMABLE = ("epochs", "max_steps", "log_every_steps", "checkpoint_every_steps",
             "dataset.data_dir", "dataset.manual_dir", "input_workers",
             "input_processes")  # config keys that may change when a run is resumed


def save_config(workdir, config):
  with atomic_write(os.path.join(workdir, CONFIG_FILE)) as f:
    f.write(config.to_json_best_effort(indent=2))


def load_config(workdir):
  """The config a run in ``workdir`` was trained with."""
  if not os.path.isdir(workdir):
    problem = "not a directory" if os.path.exists(workdir) else "no such directory"
    raise ConfigError(f"{workdir}: {problem}; is it the workdir of a training run?")
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise ConfigError(f"{path}: not found; is {workdir!r} the workdir of a training run?")
  try:
    with open(path) as f:
      config = json.load(f)
  except ValueError as e:
    raise ConfigError(f"{path}: not a JSON config ({e})") from None
  if not isinstance(config, dict):
    raise ConfigError(f"{path}: not a JSON config (not an object of config keys)")
  return ml_collections.ConfigDict(_with_later_keys(config))


# Keys per-frame configs gained later, with the values that give runs saved without them
# the behaviour they were trained with.
LATER_MODEL_KEYS = {"input_normalisation": "centred", "pretrained": "", "box_head": False,
                    "uncertainty_head": False}


def _with_later_keys(config):
  if config.get("stage") == "per_frame" and isinstance(config.get("model"), dict):
    config["model"] = dict(LATER_MODEL_KEYS, **config["model"])
  return config


def check_same_run(workdir, config):
  """Raises ``ConfigError`` when ``workdir`` holds a run trained with another config, naming
  the keys that differ; the ``RESUMABLE`` keys may change."""
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return
  saved = _flatten(load_config(workdir).to_dict())
  now = _flatten(json.loads(config.to_json_best_effort()))
  missing = "(none)"
  changed = [f"{k}={saved.get(k, missing)!r} there, {now.get(k, missing)!r} now"
             for k in sorted(saved.keys() | now.keys())
             if k not in RESUMABLE and saved.get(k, missing) != now.get(k, missing)]
  if changed:
    raise ConfigError(f"{os.path.join(workdir, CONFIG_FILE)}: the run in this workdir has "
                      f"another config: {'; '.join(changed)}; only {', '.join(RESUMABLE)} may "
                      f"change when resuming (start a new run in another --workdir)")


def _flatten(tree, prefix=""):
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = list(value) if isinstance(value, tuple) else value
  return flat
