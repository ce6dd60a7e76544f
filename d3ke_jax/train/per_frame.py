"""Stage 1: the per-frame network, trained on images, and its predictions on a split."""

import functools

import jax.numpy as jnp
import numpy as np
import tqdm

from d3ke_jax import devices, drawing, runs
from d3ke_jax.data import augment, loader
from d3ke_jax.data.records import decode, labels
from d3ke_jax.nets import from_config
from d3ke_jax.nets.d3ke import images_from_batch
from d3ke_jax.train import stage as stages
from d3ke_jax.train.dataset import load_dataset
PREVIEW_FRAMES = 4
LABELS = ("coordinates", "scales", "joints", "markers", "frame_valid", "coordinate_valid",
          "subject", "clip", "frame", "movement", "view")


def split_labels(source):
  """The ``LABELS`` of every record of ``source``, and ``markers_valid``,
  ``pelvis_rotation`` and ``hard`` (the synthetic dataset's hard frames) where it has them."""
  return labels(source, LABELS, optional=("markers_valid", "pelvis_rotation", "hard"))


def make_stage(config, workdir, mesh):
  """The per-frame ``Stage``: frame batches augmented on the device, validation with
  images."""
  del workdir  # everything comes from the dataset
  model = from_config.load_model(config)
  layout = from_config.layout_for(config, model)
  sources = load_dataset(config)
  train, validation = sources["train"], sources["validation"]
  network = from_config.per_frame_network(config, model, layout)
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
