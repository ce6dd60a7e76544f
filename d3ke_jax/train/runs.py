"""A training run: its config (saved in the workdir), its dataset and its checkpoints."""

import json
import os
import sys

import ml_collections
import orbax.checkpoint as ocp
import tensorflow_datasets as tfds

from d3ke_jax.data import movi_files, pipeline
from d3ke_jax.data.registry import DATASETS
from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import atomic_write
from d3ke_jax.train.step import TrainState

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
  """{split: ``pipeline.Records``} of ``config.dataset``, built on first use: the synthetic
  dataset is generated; MoVi is built from the downloads in ``dataset.manual_dir``."""
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
  manual_dir = config.dataset.get("manual_dir") or None
  if not builder.is_prepared() and builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    if not manual_dir:
      raise ConfigError(f"dataset.manual_dir: required to build {name} "
                        f"({config.dataset.config}), which is not in {builder.data_dir} yet")
    movi_files.check_manual_dir(manual_dir)
  builder.download_and_prepare(  # a no-op once built
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  sources = builder.as_data_source()
  return {split: pipeline.Records(sources[split]) for split in splits}


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
  return ml_collections.ConfigDict(_with_later_keys(config))


# Keys per-frame configs gained later, with the values that give runs saved without them
# the behaviour they were trained with.
LATER_MODEL_KEYS = {"input_normalisation": "centred", "pretrained": "", "box_head": False}


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


def checkpoint_managers(workdir, train=False):
  """(latest, best): orbax managers of the periodic checkpoints and of the one with the
  lowest validation metric (MAE_angle; MPBLPE for the multi-step baseline). For training
  (``train``) they create their directories and remove the temporary directories of saves
  cut short (never a committed checkpoint)."""
  root = os.path.abspath(workdir)
  options = dict(create=train, cleanup_tmp_directories=train)
  latest = ocp.CheckpointManager(os.path.join(root, "checkpoints"), options=(
      ocp.CheckpointManagerOptions(max_to_keep=2, **options)))
  # A best checkpoint's metrics hold one value: its stage's ``selection`` (lower is better).
  best = ocp.CheckpointManager(os.path.join(root, "best"), options=ocp.CheckpointManagerOptions(
      max_to_keep=1, best_mode="min", best_fn=lambda m: next(iter(m.values())), **options))
  return latest, best


def has_checkpoint(workdir):
  """Whether ``workdir`` holds a periodic checkpoint (readable or not): a run to resume."""
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def restore_newest(manager, args, set_aside=False):
  """(step, restored) of the newest readable checkpoint of ``manager`` (None: it has none);
  ``args()`` gives the restore arguments. Unreadable ones (a truncated or damaged file) are
  skipped with one line on stderr; with ``set_aside`` they are renamed ``STEP.unreadable``
  (kept, not deleted) so that training can save that step again. No readable checkpoint
  is a ``UserError``."""
  steps = sorted(manager.all_steps(), reverse=True)
  unreadable = []
  for step in steps:
    try:
      restored = manager.restore(step, args=args())
    except Exception as e:  # pylint: disable=broad-except  # any damage, any error type
      unreadable.append((step, e))
      continue
    if unreadable:
      aside = ""
      if set_aside:
        for bad, _ in unreadable:
          _set_aside(os.path.join(manager.directory, str(bad)))
        manager.reload()
        aside = "; set aside as *.unreadable"
      print(f"{manager.directory}: checkpoint step(s) {', '.join(str(s) for s, _ in unreadable)}"
            f" unreadable ({_summary(unreadable[0][1])}){aside}; using step {step}",
            file=sys.stderr)
    return step, restored
  if unreadable:
    raise UserError(f"{manager.directory}: no readable checkpoint (step {unreadable[0][0]}: "
                    f"{_summary(unreadable[0][1])})")
  return None, None


def _summary(error):
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0][:120] if lines else ''}"


def _set_aside(path):
  target, n = f"{path}.unreadable", 1
  while os.path.exists(target):
    n += 1
    target = f"{path}.unreadable{n}"
  os.rename(path, target)


def restore_state(workdir, which="best"):
  """The trained ``TrainState`` (no optimizer state) of a run: its ``best`` checkpoint, or
  the ``latest`` (also used when no validation has run yet)."""
  if which not in ("best", "latest"):
    raise ConfigError(f"checkpoint {which!r}: choose 'best' or 'latest'")
  latest, best = checkpoint_managers(workdir)
  try:
    manager = best if which == "best" and best.all_steps() else latest
    step, restored = restore_newest(manager, ocp.args.StandardRestore)
  finally:
    latest.close()
    best.close()
  if step is None:
    raise UserError(f"{workdir}: no checkpoint to restore (has it trained a step?)")
  return TrainState(step=restored["step"], params=restored["params"],
                    batch_stats=restored.get("batch_stats", {}), opt_state=None)
