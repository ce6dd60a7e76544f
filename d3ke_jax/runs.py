"""A run's config: ``config.json`` in its workdir, written by training and read by whatever
uses the run (inference, evaluation, stage 2), and the keys every user checks; beside it
``data.json``, the data the run was trained on (``trained_on``)."""

import json
import os

import ml_collections

from d3ke_jax.data.registry import DATASETS
from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import atomic_write

CONFIG_FILE = "config.json"
DATA_FILE = "data.json"
DATA_KEYS = ("dataset", "config", "version", "synthetic")


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


# Keys each stage's configs gained later, with the values that give runs saved without
# them the behaviour they were trained with.
LATER_MODEL_KEYS = {"per_frame": {"input_normalisation": "centred", "pretrained": "",
                                  "box_head": False, "uncertainty_head": False},
                    "sequence": {"uncertainty_head": False}}


def _with_later_keys(config):
  later = LATER_MODEL_KEYS.get(config.get("stage"))
  if later and isinstance(config.get("model"), dict):
    config["model"] = dict(later, **config["model"])
  return config


RESUMABLE = ("epochs", "max_steps", "log_every_steps", "checkpoint_every_steps",
             "dataset.data_dir", "dataset.manual_dir", "input_workers",
             "input_processes")  # config keys that may change when a run is resumed


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


def per_frame_run(config):
  """The config of a sequence run's stage-1 run (``per_frame_workdir``), checked."""
  require(config, "per_frame_workdir")
  if not config.per_frame_workdir:
    raise ConfigError("per_frame_workdir: set it to the workdir of a trained per-frame "
                      "run (stage 1), e.g. --config.per_frame_workdir=workdirs/synthetic")
  first = load_config(config.per_frame_workdir)
  if first.get("stage") != "per_frame":
    raise ConfigError(f"per_frame_workdir={config.per_frame_workdir!r} holds a "
                      f"{first.get('stage')!r} run, not a per-frame one")
  return first


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


def training_data(config):
  """{dataset, config, version, synthetic} of the data ``config`` trains on: its TFDS
  dataset, variant and version and whether its frames are rendered (a sequence run: its
  per-frame run's, ``trained_on``)."""
  if config.get("stage") == "sequence":
    return trained_on(config.per_frame_workdir)
  builder, variant = dataset_config(config)
  return {"dataset": builder.name, "config": variant.name, "version": str(builder.VERSION),
          "synthetic": builder.SYNTHETIC}


def save_training_data(workdir, config):
  with atomic_write(os.path.join(workdir, DATA_FILE)) as f:
    json.dump(training_data(config), f, indent=2)


def trained_on(workdir):
  """The data the run in ``workdir`` was trained on: its ``data.json``, or for a run saved
  before it, derived from its config (a per-frame run's version None: unknown)."""
  path = os.path.join(workdir, DATA_FILE)
  if not os.path.exists(path):
    config = load_config(workdir)
    if config.get("stage") == "sequence":
      return trained_on(config.per_frame_workdir)
    return dict(training_data(config), version=None)
  try:
    with open(path) as f:
      data = json.load(f)
  except ValueError as e:
    raise ConfigError(f"{path}: not JSON ({e})") from None
  if not isinstance(data, dict) or not set(DATA_KEYS) <= data.keys():
    raise ConfigError(f"{path}: not a record of training data (an object with keys "
                      f"{', '.join(DATA_KEYS)})")
  return data


def synthetic_warning(workdir):
  """A warning (one line) that the run in ``workdir`` knows only synthetic renders, or None."""
  data = trained_on(workdir)
  if not data["synthetic"]:
    return None
  return (f"warning: {workdir} was trained on synthetic renders ({data['dataset']}/"
          f"{data['config']}); its angles on real video are not meaningful")


def frame_rate(config):
  """Frames per second of ``config.dataset``'s clips."""
  return DATASETS[config.dataset.name].FRAME_RATE
