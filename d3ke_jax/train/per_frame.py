"""Stage 1: the per-frame network, trained on images, and its predictions on a split."""

import functools

import jax.numpy as jnp
import numpy as np
import tqdm

from d3ke_jax import devices, drawing
from d3ke_jax.data import augment, loader
from d3ke_jax.data.records import decode, labels
from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import INPUT_NORMALISATIONS, PerFrameD3KE
from d3ke_jax.skeleton import make_layout
from d3ke_jax.train import runs
from d3ke_jax.train import stage as stages
from d3ke_jax.train.step import images_from_batch

MODEL_KEYS = ("stage_sizes", "groups", "width_per_group", "head_hidden", "dtype",
              "share_mirrored", "input_normalisation", "pretrained")
PREVIEW_FRAMES = 4
LABELS = ("coordinates", "scales", "joints", "markers", "frame_valid", "coordinate_valid",
          "subject", "clip", "frame", "movement", "view")


def split_labels(source):
  """The ``LABELS`` of every record of ``source``, and ``markers_valid`` and
  ``pelvis_rotation`` where it has them."""
  return labels(source, LABELS, optional=("markers_valid", "pelvis_rotation"))


def layout_for(config, model):
  return make_layout(model, include_root=False, share_mirrored=config.model.share_mirrored)


def build_network(config, model, layout):
  """D3KE's per-frame network; a box head and an uncertainty head where ``model.box_head``
  and ``model.uncertainty_head`` say so (runs saved before the keys have none, see
  ``runs.LATER_MODEL_KEYS``)."""
  return PerFrameD3KE(heads.bounds_for(model, layout),
                      box_head=bool(config.model.get("box_head", False)),
                      uncertainty_head=bool(config.model.get("uncertainty_head", False)),
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
              dtype=jnp.dtype(config.model.dtype), axis_name=devices.AXIS,
              normalisation=config.model.input_normalisation)


def make_stage(config, workdir, mesh):
  """The per-frame ``Stage``: frame batches augmented on the device, validation with
  images."""
  del workdir  # everything comes from the dataset
  model = stages.load_model(config)
  layout = layout_for(config, model)
  sources = runs.load_dataset(config)
  train, validation = sources["train"], sources["validation"]
  network = build_network(config, model, layout)
  stages.check_batch_size(config.batch_size, mesh)
  order = loader.TrainOrder(len(train), config.batch_size,
                            devices.process_rows(mesh, config.batch_size), seed=config.seed)
  steps_per_epoch = order.steps_per_epoch
  data = loader.TrainStream(loader.ReadFrame(train), order, steps_per_epoch * config.epochs,
                            workers=config.input_workers or loader.usable_cpus(),
                            processes=config.input_processes)
  prepare = (functools.partial(augment.augment_batch, seed=config.seed,
                               config=augment.Augmentation()) if config.augmentation else None)
  size = decode(train[0])["image"].shape[0]
  index = np.array(layout.coordinates)
  # The predict-the-mean baseline: the mean coordinates of (every 7th) training frame.
  train_mean = np.mean([train[i]["coordinates"][index] for i in range(0, len(train), 7)], 0)
  truth = split_labels(validation)
  # Frames drawn with their skeletons in TensorBoard: spread over the validation clips.
  shown = np.linspace(0, len(validation) - 1, PREVIEW_FRAMES).astype(int)

  def validate(evaluate, state):
    predicted = predict_frames(evaluate, state, validation, config.batch_size, mesh)
    metrics = stages.frame_metrics(model, layout, predicted, truth, runs.frame_rate(config))
    metrics["mae_angle_mean_baseline"] = stages.mae_angle_of(
        np.broadcast_to(train_mean, predicted["coords"].shape), truth, layout)
    preview = [decode(validation[int(i)]) for i in shown]
    images = drawing.skeleton_overlays(
        model, {k: np.stack([p[k] for p in preview]) for k in ("image", "joints", "intrinsics")},
        predicted["joints"][shown])
    return metrics, images

  return stages.Stage(network=network, model=model, layout=layout,
                      sample_input=jnp.zeros((1, size, size, 3)), inputs=images_from_batch,
                      steps_per_epoch=steps_per_epoch, data=data, validate=validate,
                      prepare=prepare)


def predict_frames(evaluate, state, source, batch_size, mesh, desc=None):
  """Predictions of the per-frame network for every record of ``source``, in order:
  {coords (N, P), scales (N, G, 3), rotation (N, 3, 3), joints (N, J, 3), markers (N, M, 3),
  loss, seconds}; positions are root-relative in the camera's orientation, ``seconds`` the
  network's time for the whole split at its steady rate (``stages.steady_seconds``)."""
  predicted, scores, seconds = network_outputs(evaluate, state, source, batch_size, mesh, desc)
  return dict(stages.prediction_arrays(predicted, scores), seconds=seconds)


def network_outputs(evaluate, state, source, batch_size, mesh, desc=None):
  """``stages.predict_batches`` of a per-frame network over every record of ``source``,
  each process reading its share."""
  batch_size = stages.eval_batch_size(batch_size, mesh)
  batches = stages.split_batches(loader.ReadFrame(source), len(source), batch_size, mesh)
  return stages.predict_batches(evaluate, state, tqdm.tqdm(
      batches, total=-(-len(source) // batch_size), desc=desc, unit="batch",
      disable=desc is None, leave=False), len(source))
