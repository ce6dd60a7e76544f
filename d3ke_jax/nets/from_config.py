"""What a run's config builds: its skeletal model, prediction layout and networks, for
training and for every later use of the run."""

import jax.numpy as jnp

from d3ke_jax import devices
from d3ke_jax.data.registry import DATASETS
from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import INPUT_NORMALISATIONS, PerFrameD3KE, TemporalD3KE
from d3ke_jax.nets.sequence import SEQUENCE_NETWORKS
from d3ke_jax.runs import ConfigError, require
from d3ke_jax.skeleton import OsimError, load_osim, make_layout

MODEL_KEYS = ("stage_sizes", "groups", "width_per_group", "head_hidden", "dtype",
              "share_mirrored", "input_normalisation", "pretrained")
LABEL_NAMES = {"coordinates": "coordinate_names", "bodies": "body_names",
               "joints": "joint_names", "markers": "marker_names"}


def load_model(config):
  """The skeletal model of a per-frame config, ``model_path`` ("" = the packaged model);
  ``ConfigError`` unless its coordinates, bodies, joints and markers are, in order, those
  of the dataset's labels."""
  require(config, "model_path", "dataset.name")
  try:
    model = load_osim(config.model_path or None)
  except (FileNotFoundError, OsimError) as e:
    raise ConfigError(f"model_path={config.model_path!r}: {' '.join(str(e).split())}") from None
  builder = DATASETS.get(config.dataset.name)
  if builder is None:  # runs.dataset_config names the unknown dataset
    return model
  labels = builder.label_model()
  for kind, field in LABEL_NAMES.items():
    ours, theirs = getattr(model, field), getattr(labels, field)
    if ours != theirs:
      first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                   min(len(ours), len(theirs)))
      name = lambda names: repr(names[first]) if first < len(names) else "none"
      raise ConfigError(f"model_path={config.model_path!r}: its {kind} do not match the "
                        f"labels of dataset {config.dataset.name!r} ({len(ours)} vs "
                        f"{len(theirs)}; #{first}: {name(ours)} vs {name(theirs)})")
  return model


def layout_for(config, model):
  """The coordinates and scale groups a per-frame config's networks predict."""
  return make_layout(model, include_root=False, share_mirrored=config.model.share_mirrored)


def network_options(config):
  """The per-frame networks' backbone and head sizes, dtype and input normalisation, checked."""
  require(config, *(f"model.{k}" for k in MODEL_KEYS))
  if config.model.dtype not in ("float32", "bfloat16"):
    raise ConfigError(f"model.dtype={config.model.dtype!r}: use 'float32' or 'bfloat16'")
  if config.model.input_normalisation not in INPUT_NORMALISATIONS:
    raise ConfigError(f"model.input_normalisation={config.model.input_normalisation!r}: "
                      f"choose from {sorted(INPUT_NORMALISATIONS)}")
  return dict(stage_sizes=tuple(config.model.stage_sizes), groups=config.model.groups,
              width_per_group=config.model.width_per_group, head_hidden=config.model.head_hidden,
              dtype=jnp.dtype(config.model.dtype), axis_name=devices.AXIS,
              normalisation=config.model.input_normalisation)


def per_frame_network(config, model, layout):
  """D3KE's per-frame network; a box head and an uncertainty head where
  ``model.box_head`` and ``model.uncertainty_head`` say so (runs saved before the keys
  have none, see ``runs.LATER_MODEL_KEYS``)."""
  return PerFrameD3KE(heads.bounds_for(model, layout),
                      box_head=bool(config.model.get("box_head", False)),
                      uncertainty_head=bool(config.model.get("uncertainty_head", False)),
                      **network_options(config))


def sequence_network(config, model, layout, first=None):
  """D3KE's sequence network (stage 2) of a sequence config, over the stage-1 ``layout``.
  With ``model.uncertainty_head`` (runs saved before the key have none, see
  ``runs.LATER_MODEL_KEYS``) it outputs its own uncertainty, and takes stage 1's as input
  channels where the stage-1 config ``first`` has an uncertainty head."""
  require(config, "model.network", "model.options", "window")
  if config.model.network not in SEQUENCE_NETWORKS:
    raise ConfigError(f"model.network={config.model.network!r}: unknown (choose from "
                      f"{sorted(SEQUENCE_NETWORKS)})")
  options = {k: tuple(v) if isinstance(v, list) else v for k, v in config.model.options.items()}
  if config.model.network == "transformer":
    options["max_frames"] = config.window  # one learned position per frame of the window
  options["axis_name"] = devices.AXIS  # per-example dropout, BatchNorm over all devices
  head = bool(config.model.get("uncertainty_head", False))
  first_head = first is not None and bool(first.model.get("uncertainty_head", False))
  return TemporalD3KE(heads.bounds_for(model, layout), network=config.model.network,
                      options=tuple(sorted(options.items())),
                      uncertainty_input=head and first_head, uncertainty_head=head)
