"""Stage 1: the per-frame network, trained on images, and its predictions on a split."""

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from d3ke_jax.data import pipeline
from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import INPUT_NORMALISATIONS, PerFrameD3KE
from d3ke_jax.skeleton import make_layout
from d3ke_jax.train import runs
from d3ke_jax.train import stage as stages
from d3ke_jax.train import summaries
from d3ke_jax.train.step import AXIS, images_from_batch

MODEL_KEYS = ("stage_sizes", "groups", "width_per_group", "head_hidden", "dtype",
              "share_mirrored", "input_normalisation", "pretrained")
PREVIEW_FRAMES = 4
LABELS = ("coordinates", "scales", "joints", "markers", "frame_valid", "coordinate_valid",
          "subject", "clip", "frame", "movement", "view")


def layout_for(config, model):
  return make_layout(model, include_root=False, share_mirrored=config.model.share_mirrored)


def build_network(config, model, layout):
  """D3KE's per-frame network; a box head where ``model.box_head`` says so (runs saved
  before the key have none, see ``runs.LATER_MODEL_KEYS``)."""
  return PerFrameD3KE(heads.bounds_for(model, layout),
                      box_head=bool(config.model.get("box_head", False)),
                      **network_options(config))


def network_options(config):
  """The per-frame networks' backbone and head sizes, dtype and input normalisation, checked."""
  runs.require(config, *(f"model.{k}" for k in MODEL_KEYS))
  if config.model.dtype not in ("float32", "bfloat16"):
    raise runs.ConfigError(f"model.dtype={config.model.dtype!r}: use 'float32' or 'bfloat16'")
  if config.model.input_normalisation not in INPUT_NORMALISATIONS:
    raise runs.ConfigError(f"model.input_normalisation={config.model.input_normalisation!r}: "
                           f"choose from {sorted(INPUT_NORMALISATIONS)}")
  return dict(stage_sizes=tuple(config.model.stage_sizes), groups=config.model.groups,
              width_per_group=config.model.width_per_group, head_hidden=config.model.head_hidden,
              dtype=jnp.dtype(config.model.dtype), axis_name=AXIS,
              normalisation=config.model.input_normalisation)


def make_stage(config, workdir):
  """The per-frame ``Stage``: frame batches with augmentation, validation with images."""
  del workdir  # everything comes from the dataset
  model = stages.load_model(config)
  layout = layout_for(config, model)
  sources = runs.load_dataset(config)
  train, validation = sources["train"], sources["validation"]
  network = build_network(config, model, layout)
  batch_size = stages.process_batch_size(config.batch_size)
  augmentation = pipeline.Augmentation() if config.augmentation else None
  size = pipeline.decode(train[0])["image"].shape[0]
  index = np.array(layout.coordinates)
  # The predict-the-mean baseline: the mean coordinates of (every 7th) training frame.
  train_mean = np.mean([train[i]["coordinates"][index] for i in range(0, len(train), 7)], 0)
  truth = pipeline.labels(validation, LABELS)
  # Frames drawn with their skeletons in TensorBoard: spread over the validation clips.
  devices = jax.local_device_count()
  shown = np.linspace(0, len(validation) - 1, PREVIEW_FRAMES * devices).astype(int)
  preview = pipeline.batch_of(validation, shown, devices)

  def batches(epoch, start_batch):
    return pipeline.frame_batches(train, batch_size, devices, seed=config.seed,
                                  epoch=epoch, augmentation=augmentation,
                                  process_index=jax.process_index(),
                                  process_count=jax.process_count(), start_batch=start_batch,
                                  workers=config.input_workers,
                                  processes=config.input_processes)

  def validate(evaluate, state):
    predicted = predict_frames(evaluate, state, validation, batch_size)
    metrics = stages.frame_metrics(model, layout, predicted, truth)
    metrics["mae_angle_mean_baseline"] = stages.mae_angle_of(
        np.broadcast_to(train_mean, predicted["coords"].shape), truth, layout)
    _, _, pose = evaluate(state, preview)
    return metrics, summaries.skeleton_overlays(model, preview, pose, count=PREVIEW_FRAMES)

  return stages.Stage(network=network, model=model, layout=layout,
                      sample_input=jnp.zeros((1, size, size, 3)), inputs=images_from_batch,
                      steps_per_epoch=len(train) // jax.process_count() // batch_size,
                      batches=batches, validate=validate)


def predict_frames(evaluate, state, source, batch_size, desc=None):
  """Predictions of the per-frame network for every record of ``source``, in order:
  {coords (N, P), scales (N, G, 3), rotation (N, 3, 3), joints (N, J, 3), markers (N, M, 3),
  loss, seconds}; positions are root-relative in the camera's orientation, ``seconds`` the
  network's time for the whole split at its steady rate (``stages.steady_seconds``)."""
  outputs, scores, seconds = network_outputs(evaluate, state, source, batch_size, desc)
  return dict(stages.gather_predictions(outputs, len(source), scores), seconds=seconds)


def network_outputs(evaluate, state, source, batch_size, desc=None):
  """``stages.predict_batches`` of a per-frame network over every record of ``source``."""
  devices = jax.local_device_count()
  batch_size = max(devices, batch_size // devices * devices)
  batches = pipeline.frame_batches(source, batch_size, devices, shuffle=False,
                                   drop_remainder=False)
  return stages.predict_batches(evaluate, state, tqdm.tqdm(
      pipeline.prefetch(batches), total=-(-len(source) // batch_size), desc=desc, unit="batch",
      disable=desc is None, leave=False))
