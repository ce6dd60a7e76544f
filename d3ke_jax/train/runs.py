"""A training run: its config (saved in the workdir), its dataset and its checkpoints."""

import json
import os

import ml_collections
import orbax.checkpoint as ocp

from d3ke_jax.data.d3ke_synthetic import D3keSynthetic
from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import atomic_write
from d3ke_jax.train.step import TrainState

DATASETS = {"synthetic": D3keSynthetic}
CONFIG_FILE = "config.json"


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
  """{split: random-access data source} of ``config.dataset``; the synthetic dataset is
  generated on first use."""
  require(config, "dataset.name", "dataset.config", "dataset.data_dir")
  name = config.dataset.name
  if name not in DATASETS:
    raise ConfigError(f"dataset.name={name!r}: unknown dataset (available: {sorted(DATASETS)})")
  builder_class = DATASETS[name]
  names = [c.name for c in builder_class.BUILDER_CONFIGS]
  if config.dataset.config not in names:
    raise ConfigError(f"dataset.config={config.dataset.config!r}: unknown (choose from {names})")
  builder = builder_class(config=config.dataset.config, data_dir=config.dataset.data_dir,
                          file_format="array_record")
  builder.download_and_prepare()  # generated offline; a no-op once built
  sources = builder.as_data_source()
  return {split: sources[split] for split in splits}


def loss_weights(config):
  """{term: lambda} from ``config.loss`` (keys ``lambda_<term>``)."""
  return {k[len("lambda_"):]: v for k, v in config.loss.items()}


def frame_rate(config):
  """Frames per second of ``config.dataset``'s clips."""
  return DATASETS[config.dataset.name].FRAME_RATE


def save_config(workdir, config):
  with atomic_write(os.path.join(workdir, CONFIG_FILE)) as f:
    f.write(config.to_json_best_effort(indent=2))


def load_config(workdir):
  """The config a run in ``workdir`` was trained with."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise ConfigError(f"{path}: not found; is {workdir!r} the workdir of a training run?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def checkpoint_managers(workdir):
  """(latest, best): orbax managers of the periodic checkpoints and of the one with the
  lowest validation MAE_angle."""
  root = os.path.abspath(workdir)
  latest = ocp.CheckpointManager(os.path.join(root, "checkpoints"),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
  best = ocp.CheckpointManager(os.path.join(root, "best"), options=ocp.CheckpointManagerOptions(
      max_to_keep=1, create=True, best_mode="min", best_fn=lambda m: m["mae_angle"]))
  return latest, best


def restore_state(workdir, which="best"):
  """The trained ``TrainState`` (no optimizer state) of a run: its ``best`` checkpoint, or
  the ``latest`` (also used when no validation has run yet)."""
  if which not in ("best", "latest"):
    raise ValueError(f"checkpoint {which!r}: choose 'best' or 'latest'")
  latest, best = checkpoint_managers(workdir)
  manager = best if which == "best" and best.latest_step() is not None else latest
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"{workdir}: no checkpoint to restore (has it trained a step?)")
  restored = manager.restore(step, args=ocp.args.StandardRestore())
  return TrainState(step=restored["step"], params=restored["params"],
                    batch_stats=restored.get("batch_stats", {}), opt_state=None)
