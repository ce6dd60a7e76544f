"""What the training loop needs of a stage (per-frame or sequence), and metrics shared by
both stages' validation."""

import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

from d3ke_jax import devices
from d3ke_jax.data import loader
from d3ke_jax.runs import ConfigError
from d3ke_jax.skeleton import root_relative
from d3ke_jax.skeleton.subset import expand_scales
from d3ke_jax.train import metrics
from d3ke_jax.train.step import d3ke_objective

SCORES = ("loss", "box_iou")  # eval-step metrics kept with the predictions (as batch means)
# The names validation logs (metrics.jsonl, TensorBoard) for ``metrics.summary``'s values.
VALIDATION = {"mae_angle": "MAE_angle_deg", "sd_angle": "SD_angle_deg", "mpblpe": "MPBLPE_mm",
              "mae_body": "MAE_body_mm", "mv_angle": "MV_angle_deg_s", "frames": "frames"}


class Stage(NamedTuple):
  network: Any  # a Flax module mapping ``inputs(batch)`` to what ``objective`` takes
  model: Any  # the SkeletalModel
  layout: Any  # the PredictionLayout
  sample_input: Any  # initialises the network
  inputs: Callable  # batch -> network input
  steps_per_epoch: int
  data: loader.TrainStream  # this process's training batches
  validate: Callable  # (evaluate, state) -> (metrics dict, images (N, H, W, 3))
  objective: Callable = d3ke_objective  # see ``step.compile_steps``
  prepare: Optional[Callable] = None  # batch -> batch in the train step (augmentation)
  selection: str = "mae_angle"  # the validation metric (lower is better) ``best/`` keeps


def check_batch_size(batch_size, mesh):
  """Raises ``ConfigError`` unless the global ``batch_size`` splits over ``mesh``."""
  if batch_size < 1:
    raise ConfigError(f"batch_size={batch_size}: must be at least 1")
  count = mesh.devices.size
  if batch_size % count:
    raise ConfigError(f"batch_size={batch_size} is not divisible by the {count} devices "
                      f"({jax.process_count()} processes x {jax.local_device_count()})")


def eval_batch_size(batch_size, mesh):
  """The largest multiple of the device count up to ``batch_size`` (at least one row each)."""
  count = mesh.devices.size
  return max(count, batch_size // count * count)


def predict_batches(evaluate, state, batches, count):
  """(predictions, scores, seconds) of ``evaluate`` on ``batches`` (global batches, as
  ``devices.prefetch`` gives them) covering ``count`` rows in order (the last one padded):
  ``predictions`` its NumPy prediction tuple over the ``count`` rows (gathered from every
  process), ``scores`` the batches' mean loss (and ``box_iou`` for a network with a box
  head), ``seconds`` the time the calls take at their steady rate (``steady_seconds``)."""
  outputs, results, seconds, items = [], [], [], []
  for batch, _ in batches:
    start = time.perf_counter()
    result, predictions = devices.to_host(evaluate(state, batch))  # waits for the devices
    seconds.append(time.perf_counter() - start)
    outputs.append(predictions)
    results.append(result)
    items.append(len(jax.tree.leaves(predictions)[0]))
  scores = {k: float(np.mean([r[k] for r in results])) for k in SCORES if k in results[0]}
  predicted = jax.tree.map(lambda *parts: np.concatenate(parts)[:count], *outputs)
  return predicted, scores, steady_seconds(items, seconds)


def split_batches(read, count, batch_size, mesh):
  """Global batches (``devices.prefetch``'s pairs) of ``read`` at every position of a split
  of ``count`` records, in order, each process reading its rows."""
  order = loader.SplitOrder(count, batch_size, devices.process_rows(mesh, batch_size))
  stream = loader.batches(read, order, order.local_batch, 0, len(order),
                          workers=loader.usable_cpus())
  return devices.prefetch(((rows, None) for rows in stream), mesh)


def steady_seconds(items, seconds):
  """Seconds for all ``items`` (a count per call) at the rate of the calls after the first
  (whose time includes compilation); the measured total when there is one call."""
  items, seconds = np.asarray(items, float), np.asarray(seconds, float)
  if len(items) < 2:
    return float(seconds.sum())
  return float(items.sum() * seconds[1:].sum() / items[1:].sum())


def prediction_arrays(predicted, scores):
  """``predict_batches``' (kinematics, pose) or (kinematics, pose, uncertainty) -> the dict
  of arrays stages report (with the head's ``uncertainty_coords``, ``uncertainty_scales``
  and ``uncertainty_rotation``), with its ``scores``."""
  kinematics, pose = predicted[:2]
  arrays = {"coords": kinematics.coords, "scales": kinematics.scales,
            "rotation": kinematics.rotation, "joints": pose.joints, "markers": pose.markers}
  if len(predicted) > 2:
    arrays.update({f"uncertainty_{k}": v for k, v in predicted[2]._asdict().items()})
  return {**arrays, **scores}


def mae_angle_of(coords, truth, layout):
  """MAE_angle (deg) of predicted coordinates (N, P) against a split's labels."""
  index = np.array(layout.coordinates)
  true = truth["coordinates"][:, index]
  return metrics.mae_angle(coords, true, metrics.angle_mask(
      true, truth["frame_valid"], truth["coordinate_valid"][:, index]))


def relative_scales(model, layout, scales):
  """Predicted scale groups (N, G, 3) -> every body's scale relative to the model (N, B, 3)."""
  return np.asarray(expand_scales(model, layout, scales))


def predictions(model, layout, predicted, truth):
  """``metrics.Predictions`` of per-frame predictions (``prediction_arrays``) against a
  split's labels (``per_frame.LABELS``; without ``markers_valid`` every marker label is
  valid): the layout's coordinates, markers relative to the root joint, body scales
  relative to the model."""
  index = np.array(layout.coordinates)
  root = model.root_joint
  marker_valid = truth.get("markers_valid", np.ones(truth["markers"].shape[:2], bool))
  return metrics.Predictions(
      pred_coords=predicted["coords"], true_coords=truth["coordinates"][:, index],
      coordinate_valid=truth["coordinate_valid"][:, index], frame_valid=truth["frame_valid"],
      marker_valid=marker_valid,
      pred_markers=root_relative(predicted["markers"], predicted["joints"], root),
      true_markers=root_relative(truth["markers"], truth["joints"], root),
      pred_scales=relative_scales(model, layout, predicted["scales"]),
      true_scales=truth["scales"], subject=truth["subject"], movement=truth["movement"],
      view=truth["view"], clip=truth["clip"], frame=truth["frame"])


def frame_metrics(model, layout, predicted, truth, rate):
  """Validation metrics of per-frame predictions (``prediction_arrays``) against the split's
  labels, at ``rate`` frames per second: ``VALIDATION``'s names for ``metrics.summary``'s
  values, the loss and, for a network with a box head, the boxes' mean IoU with the truth."""
  axis, extent = metrics.body_extents(model)
  summary = metrics.summary(predictions(model, layout, predicted, truth), axis, extent, rate)
  scores = {k: predicted[k] for k in SCORES if k in predicted}
  return {**scores, **{name: summary[key] for name, key in VALIDATION.items()}}
