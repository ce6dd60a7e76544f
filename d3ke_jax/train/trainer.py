"""The per-frame D3KE training loop: ``train_and_evaluate(config, workdir)``.

Data order, augmentation and initialisation depend only on the config's seed, so a run
killed at any point and started again from its last checkpoint continues exactly where it
stopped. Writes orbax checkpoints (``checkpoints/``: the latest; ``best/``: the lowest
validation MAE_angle), a JSON-lines metrics
file and progress to the terminal.
"""

import json
import os
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from d3ke_jax.data import pipeline
from d3ke_jax.data.d3ke_synthetic import D3keSynthetic
from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import PerFrameD3KE
from d3ke_jax.skeleton import load_osim, make_layout
from d3ke_jax.train import metrics as metric_fns
from d3ke_jax.train import step as steps

DATASETS = {"synthetic": D3keSynthetic}


class ConfigError(ValueError):
  """A config that cannot run: the message names the key and the problem."""


def load_dataset(config):
  """The builder's train and validation data sources; the synthetic one is built if absent."""
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
  return sources["train"], sources["validation"]


def make_optimizer(config, steps_total):
  schedule = optax.linear_schedule(config.optimizer.learning_rate,
                                   config.optimizer.end_learning_rate, max(steps_total, 1))
  return optax.adamw(schedule, weight_decay=config.optimizer.weight_decay), schedule


def check_config(config):
  if config.batch_size < 1:
    raise ConfigError(f"batch_size={config.batch_size}: must be at least 1")
  if config.batch_size % jax.local_device_count():
    raise ConfigError(f"batch_size={config.batch_size} is not divisible by the "
                      f"{jax.local_device_count()} local devices")
  if config.epochs < 1:
    raise ConfigError(f"epochs={config.epochs}: must be at least 1")
  if config.model.dtype not in ("float32", "bfloat16"):
    raise ConfigError(f"model.dtype={config.model.dtype!r}: use 'float32' or 'bfloat16'")


def train_and_evaluate(config, workdir):
  """Trains the per-frame network; returns the final validation metrics."""
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  train_source, validation_source = load_dataset(config)
  model = load_osim()
  layout = make_layout(model, include_root=False, share_mirrored=config.model.share_mirrored)
  bounds = heads.bounds_for(model, layout)
  devices = jax.local_devices()
  network = PerFrameD3KE(bounds, stage_sizes=tuple(config.model.stage_sizes),
                         groups=config.model.groups,
                         width_per_group=config.model.width_per_group,
                         head_hidden=config.model.head_hidden,
                         dtype=jnp.dtype(config.model.dtype), axis_name=steps.AXIS)
  per_epoch = len(train_source) // config.batch_size
  total = per_epoch * config.epochs
  optimizer, schedule = make_optimizer(config, total)
  weights = {k[len("lambda_"):]: v for k, v in config.loss.items()}
  size = pipeline.decode(train_source[0])["image"].shape[0]
  state = steps.create_state(network, optimizer, jnp.zeros((1, size, size, 3)),
                             jax.random.PRNGKey(config.seed))
  manager = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(max_to_keep=2,
                                                                       create=True))
  # The checkpoint with the lowest validation MAE_angle so far, kept apart from the latest.
  best = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "best"),
                               options=ocp.CheckpointManagerOptions(
                                   max_to_keep=1, create=True, best_mode="min",
                                   best_fn=lambda metrics: metrics["mae_angle"]))
  if manager.latest_step() is not None:
    state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(state))
    print(f"resumed from step {int(state.step)} in {workdir}")
  train, evaluate = steps.pmapped(network, model, layout, weights, optimizer)
  # The predict-the-mean baseline: mean predicted coordinates over (every 7th) training frame.
  train_mean = np.mean([train_source[i]["coordinates"][np.array(layout.coordinates)]
                        for i in range(0, len(train_source), 7)], axis=0)
  state = steps.replicate(state, len(devices))
  log = os.path.join(workdir, "metrics.jsonl")
  augmentation = pipeline.Augmentation() if config.augmentation else None
  step = int(state.step[0])
  stop = total if config.max_steps < 0 else min(total, config.max_steps)
  with tqdm.tqdm(total=stop, initial=step, unit="step", desc="train") as bar:
    while step < stop:
      epoch, skip = divmod(step, per_epoch)
      batches = pipeline.frame_batches(train_source, config.batch_size, devices=len(devices),
                                       seed=config.seed, epoch=epoch, augmentation=augmentation,
                                       start_batch=skip)
      for batch in pipeline.prefetch(batches):
        state, train_metrics = train(state, batch)
        step += 1
        bar.update(1)
        if step % config.log_every_steps == 0 or step == stop:
          values = {k: float(v[0]) for k, v in train_metrics.items()}
          values["learning_rate"] = float(schedule(step))
          bar.set_postfix(loss=f"{values['loss']:.4f}")
          _append(log, {"step": step, "split": "train", **values})
        if step % config.checkpoint_every_steps == 0 or step == stop:
          manager.save(step, args=ocp.args.StandardSave(steps.unreplicate(state)))
        if step % per_epoch == 0 or step == stop:
          result = validate(evaluate, state, validation_source, train_mean, model, layout,
                            config, len(devices))
          _append(log, {"step": step, "split": "validation", **result})
          best.save(step, args=ocp.args.StandardSave(steps.unreplicate(state)),
                    metrics={"mae_angle": result["mae_angle"]})
          bar.write(f"step {step}: validation MAE_angle {result['mae_angle']:.2f} deg "
                    f"(predict-the-mean {result['mae_angle_mean_baseline']:.2f}), "
                    f"MPBLPE {result['mpblpe']:.1f} mm")
        if step >= stop:
          break
  manager.wait_until_finished()
  best.wait_until_finished()
  return result


def validate(evaluate, state, source, train_mean, model, layout, config, devices):
  """Metrics on a split, and the predict-the-mean baseline (``train_mean`` coordinates)."""
  index = np.array(layout.coordinates)
  predicted, true, losses, landmark_errors = [], [], [], []
  batch_size = max(devices, (config.batch_size // devices) * devices)
  root = model.root_joint
  for batch in pipeline.frame_batches(source, batch_size, devices=devices, shuffle=False):
    metrics, kinematics, pose = evaluate(state, batch)
    losses.append(float(metrics["loss"][0]))
    predicted.append(np.asarray(kinematics.coords).reshape(-1, len(index)))
    true.append(batch["coordinates"].reshape(-1, model.num_coordinates)[:, index])
    landmark_errors.append(metric_fns.mpblpe(pose.markers, batch["markers"],
                                             pose.joints[..., root, :], batch["joints"][..., root, :]))
  predicted, true = np.concatenate(predicted), np.concatenate(true)
  return {"loss": float(np.mean(losses)), "mae_angle": metric_fns.mae_angle(predicted, true),
          "sd_angle": metric_fns.sd_angle(predicted, true),
          "mae_angle_mean_baseline": metric_fns.mae_angle(np.broadcast_to(train_mean, true.shape),
                                                          true),
          "mpblpe": float(np.mean(landmark_errors)), "frames": int(len(true))}


def _append(path, record):
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")
