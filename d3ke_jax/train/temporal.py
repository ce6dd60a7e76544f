"""Stage 2: the sequence network, trained on windows of the per-frame network's outputs.

The per-frame (stage 1) run is named by ``config.per_frame_workdir``: its best checkpoint
predicts every frame of its dataset once (cached in ``<workdir>/per_frame/``, keyed by the
checkpoint's step and a hash of its variables), and windows of those predictions with the
frames' ground truth are the sequence network's batches. Where stage 1 has an uncertainty
head, its scales are cached and windowed too: the inputs of a sequence network with
``model.uncertainty_head`` (``from_config.sequence_network``), whose own head's temperatures
are fitted on validation after training, as stage 1's.
"""

import glob
import hashlib
import os
import time

import jax
import numpy as np

from d3ke_jax import calibration, checkpoints, devices, runs
from d3ke_jax.data import loader
from d3ke_jax.data.windows import refine_windows, window_starts
from d3ke_jax.io.atomic import atomic_path
from d3ke_jax.nets import from_config
from d3ke_jax.nets.uncertainty import Uncertainty
from d3ke_jax.train import per_frame
from d3ke_jax.train import stage as stages
from d3ke_jax.train import step as steps
from d3ke_jax.train.dataset import load_dataset
from d3ke_jax.train.losses import loss_weights

# Window fields and the stage-1 predictions they hold; its uncertainty where it has a head.
INPUTS = {"input_coords": "coords", "input_scales": "scales", "input_rotation": "rotation",
          **{f"input_{calibration.PREFIX}{k}": calibration.PREFIX + k
             for k in Uncertainty._fields}}
TARGETS = ("coordinates", "scales", "joints", "markers", "frame_valid", "coordinate_valid")
OPTIONAL_TARGETS = ("pelvis_rotation",)  # where the labels have it (the uncertainty head's)


def per_frame_outputs(workdir, per_frame_workdir, first, sources, model, mesh):
  """{split: stage-1 predictions} for every frame of each source, cached in
  ``<workdir>/per_frame/`` under ``checkpoint_key`` (stale entries are removed; process 0
  writes); ``first`` is the stage-1 run's config (``runs.per_frame_run``)."""
  layout = from_config.layout_for(first, model)
  state = checkpoints.restore_state(per_frame_workdir, "best", mesh)
  key = checkpoint_key(per_frame_workdir, first, state)
  directory = os.path.join(workdir, "per_frame")
  outputs, evaluate = {}, None
  for split, source in sources.items():
    path = os.path.join(directory, f"{split}_{key}.npz")
    if not os.path.exists(path):
      if evaluate is None:
        network = from_config.per_frame_network(first, model, layout)
        _, evaluate = steps.compile_steps(network, model, layout, loss_weights(first),
                                          None, mesh)
      outputs[split] = per_frame.predict_frames(evaluate, state, source, first.batch_size,
                                                mesh, desc=f"per-frame {split}")
      if jax.process_index() == 0:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
          np.savez(f, **outputs[split])
        for stale in glob.glob(os.path.join(glob.escape(directory), f"{split}_step*.npz")):
          if stale != path:
            os.remove(stale)
    else:
      with np.load(path) as stored:
        outputs[split] = {k: stored[k] for k in stored.files}
  devices.sync_processes("per-frame outputs cached")
  return outputs


def checkpoint_key(per_frame_workdir, first, state):
  """Names a stage-1 checkpoint: its step and a hash of the run's path, its config and the
  checkpoint's variables, so a retrained stage-1 run is never served stale predictions."""
  digest = hashlib.sha256(os.path.abspath(per_frame_workdir).encode())
  digest.update(first.to_json_best_effort(sort_keys=True).encode())
  for leaf in jax.tree.leaves(devices.to_host((state.params, state.batch_stats))):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return f"step{int(state.step)}_{digest.hexdigest()[:16]}"


def window_arrays(predicted, truth):
  """Per-frame arrays a window batch is cut from: stage-1 inputs and the targets."""
  arrays = {name: predicted[key].astype(np.float32) for name, key in INPUTS.items()
            if key in predicted}
  arrays.update({k: truth[k] for k in TARGETS + OPTIONAL_TARGETS if k in truth})
  return arrays


def make_stage(config, workdir, mesh):
  """The sequence ``Stage``: shuffled windows of per-frame outputs; validation on whole
  clips against the per-frame network's own predictions. The skeletal model is the
  stage-1 run's."""
  runs.require(config, "window", "window_stride")
  first = runs.per_frame_run(config)
  model = from_config.load_model(first)
  layout = from_config.layout_for(first, model)
  sources = load_dataset(first)
  outputs = per_frame_outputs(workdir, config.per_frame_workdir, first, sources, model, mesh)
  truth = {split: per_frame.split_labels(source) for split, source in sources.items()}
  starts = window_starts(truth["train"]["clip"], config.window, config.window_stride)
  if not len(starts):
    longest = np.max(np.unique(truth["train"]["clip"], return_counts=True)[1])
    raise runs.ConfigError(f"window={config.window}: longer than every training clip of "
                           f"{first.dataset.name}/{first.dataset.config} (longest: {longest} "
                           f"frames); use --config.window={longest} or less")
  network = from_config.sequence_network(config, model, layout, first)
  stages.check_batch_size(config.batch_size, mesh)
  train_arrays = window_arrays(outputs["train"], truth["train"])
  validation = window_arrays(outputs["validation"], truth["validation"])
  rate = runs.frame_rate(first)
  clips = truth["validation"]["clip"]
  # The per-frame network's own validation numbers: the baseline the refinement must beat.
  first_metrics = stages.frame_metrics(model, layout, outputs["validation"],
                                       truth["validation"], rate)
  per_frame_baseline = {f"{name}_per_frame": first_metrics[name]
                        for name in ("mae_angle", "mv_angle")}

  order = loader.TrainOrder(len(starts), config.batch_size,
                            devices.process_rows(mesh, config.batch_size), seed=config.seed)
  data = loader.TrainStream(loader.ReadWindow(train_arrays, starts, config.window), order,
                            order.steps_per_epoch * config.epochs)

  def validate(evaluate, state):
    predicted = predict_sequences(evaluate, state, validation, clips, config.window,
                                  config.batch_size, mesh)
    result = stages.frame_metrics(model, layout, predicted, truth["validation"], rate)
    return {**result, **per_frame_baseline}, np.zeros((0, 1, 1, 3), np.uint8)

  sample = steps.estimates_from_batch({k: v[None, starts[0]:starts[0] + config.window]
                                       for k, v in train_arrays.items()})
  return stages.Stage(network=network, model=model, layout=layout, sample_input=sample,
                      inputs=steps.estimates_from_batch, steps_per_epoch=order.steps_per_epoch,
                      data=data, validate=validate)


def predict_sequences(evaluate, state, arrays, clips, window, batch_size, mesh):
  """Refined predictions for every frame of every clip (``windows.refine_windows``), as
  ``per_frame.predict_frames`` returns them (``seconds``: the sequence network's)."""
  batch_size = stages.eval_batch_size(batch_size, mesh)
  results, seconds = [], []

  def run(batch):
    start = time.perf_counter()
    metrics, predictions = devices.to_host(evaluate(state, batch))
    seconds.append(time.perf_counter() - start)
    results.append(metrics)
    return predictions

  refined = refine_windows(lambda windows: devices.map_batches(run, windows, batch_size, mesh),
                           arrays, clips, window)
  scores = {k: float(np.mean([r[k] for r in results])) for k in stages.SCORES if k in results[0]}
  items = [batch_size] * len(seconds)
  return dict(stages.prediction_arrays(refined, scores),
              seconds=stages.steady_seconds(items, seconds))

