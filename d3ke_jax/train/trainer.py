"""The D3KE training loop: ``train_and_evaluate(config, workdir)``, for either stage.

``config.stage`` picks what is trained: ``per_frame`` (stage 1, images -> kinematics) or
``sequence`` (stage 2, windows of stage-1 outputs -> refined kinematics). The loop is the
same: a pmapped step over every device of every process, validation once an epoch, orbax
checkpoints (``checkpoints/``: the latest; ``best/``: the lowest validation MAE_angle),
metrics in ``metrics.jsonl`` and TensorBoard (``tensorboard/``), and a progress bar. Data
order, augmentation, dropout and initialisation depend only on the config's seed, so a run
killed at any point and started again continues exactly where it stopped; SIGTERM or
Ctrl-C saves a checkpoint first (``stopping``).
"""

import contextlib
import math
import os

import jax
import optax
import tqdm

from d3ke_jax import checkpoints, devices, runs
from d3ke_jax.errors import Interrupted, Stopped, UserError
from d3ke_jax.nets import from_config
from d3ke_jax.runs import ConfigError
from d3ke_jax.train import (cms, evaluation, per_frame, pretrained, stopping, summaries,
                            temporal)
from d3ke_jax.train import step as steps
from d3ke_jax.train.losses import PAPER_WEIGHTS, loss_weights

STAGES = {"per_frame": per_frame.make_stage, "sequence": temporal.make_stage,
          "cms": cms.make_stage}
REQUIRED = ("stage", "batch_size", "epochs", "seed", "loss", "optimizer.learning_rate",
            "optimizer.end_learning_rate", "optimizer.weight_decay", "optimizer.final_epochs",
            "optimizer.final_learning_rate", "optimizer.final_end_learning_rate",
            "log_every_steps", "checkpoint_every_steps", "max_steps")


def check_config(config):
  """Raises ``ConfigError`` for a config that cannot train, before any work is done."""
  runs.require(config, *REQUIRED)
  if config.stage not in STAGES:
    raise ConfigError(f"stage={config.stage!r}: choose from {sorted(STAGES)}")
  for key in ("epochs", "log_every_steps", "checkpoint_every_steps"):
    _check_number(config, key, 1, integer=True)
  _check_number(config, "seed", 0, integer=True)
  if config.max_steps != -1:
    _check_number(config, "max_steps", 1, integer=True, also="-1 (every epoch) or ")
  _check_number(config, "optimizer.learning_rate", 0, strict=True)
  for key in ("end_learning_rate", "weight_decay", "final_learning_rate",
              "final_end_learning_rate"):
    _check_number(config, f"optimizer.{key}", 0)
  _check_number(config, "optimizer.final_epochs", 0, integer=True)
  if not config.optimizer.final_epochs < config.epochs:
    raise ConfigError(f"optimizer.final_epochs={config.optimizer.final_epochs}: must be in "
                      f"[0, epochs={config.epochs})")
  if config.optimizer.final_epochs:
    _check_number(config, "optimizer.final_learning_rate", 0, strict=True)
  for key in config.loss:
    if not key.startswith("lambda_") or key.removeprefix("lambda_") not in PAPER_WEIGHTS:
      raise ConfigError(f"loss.{key}: unknown loss weight (expected "
                        f"{['lambda_' + k for k in PAPER_WEIGHTS]})")
    _check_number(config, f"loss.{key}", 0)
  if not any(config.loss.values()):
    raise ConfigError("loss: every weight is 0, nothing to train")
  if config.stage in ("per_frame", "cms"):  # trained on images
    from_config.network_options(config)
    runs.require(config, "input_workers", "input_processes")
    _check_number(config, "input_workers", 0, integer=True)
    if not isinstance(config.input_processes, bool):
      raise ConfigError(f"input_processes={config.input_processes!r}: must be True or False")
  if config.stage == "sequence":
    runs.require(config, "window", "window_stride")
    _check_number(config, "window", 1, integer=True)
    _check_number(config, "window_stride", 1, integer=True)
  _check_number(config, "batch_size", 1, integer=True)


def _check_number(config, key, low, integer=False, strict=False, also=""):
  """Raises ``ConfigError`` unless ``config[key]`` is a finite number (an integer) at least
  (``strict``: above) ``low``."""
  value = config
  for part in key.split("."):
    value = value[part]
  kind = int if integer else (int, float)
  if (isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value)
      or value < low or (strict and value == low)):
    raise ConfigError(f"{key}={value!r}: must be {also}{'an integer' if integer else 'a number'}"
                      f" {'>' if strict else '>='} {low}")


def make_optimizer(config, steps_per_epoch, epochs):
  """AdamW with a linear learning-rate decay over the main epochs, then (as the paper's
  stage 1) a second linear decay over ``final_epochs`` from a lower rate."""
  main = steps_per_epoch * (epochs - config.final_epochs)
  schedule = optax.linear_schedule(config.learning_rate, config.end_learning_rate, max(main, 1))
  if config.final_epochs:
    final = optax.linear_schedule(config.final_learning_rate, config.final_end_learning_rate,
                                  max(steps_per_epoch * config.final_epochs, 1))
    schedule = optax.join_schedules([schedule, final], [main])
  return optax.adamw(schedule, weight_decay=config.weight_decay), schedule


def train_and_evaluate(config, workdir):
  """Trains ``config.stage`` into ``workdir`` (resuming what is there); returns the last
  validation metrics. The config is checked in full, and against the one of a run already
  in ``workdir``, before anything is written there."""
  check_config(config)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f"{workdir}: not a directory (the workdir must be one)")
  runs.check_same_run(workdir, config)
  mesh = devices.make_mesh()
  stage = STAGES[config.stage](config, workdir, mesh)
  if stage.steps_per_epoch < 1:
    raise ConfigError(f"batch_size={config.batch_size}: larger than the training set")
  backbone = None
  path = config.get("model", {}).get("pretrained")
  if path and not checkpoints.has_checkpoint(workdir):  # read when a run starts, not resuming
    backbone = pretrained.load_backbone(path, stage.network, stage.sample_input)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    runs.save_config(workdir, config)
    runs.save_training_data(workdir, config)
  devices.sync_processes("workdir made")
  result = fit(config, workdir, stage, mesh, backbone)
  if config.model.get("uncertainty_head", False):  # either stage's head
    evaluation.calibrate(workdir)  # the best checkpoint's, on the validation split
  return result


def fit(config, workdir, stage, mesh, backbone=None):
  """The training loop on ``mesh``. A run that starts (no checkpoint to resume from) takes
  its backbone's variables from ``backbone`` when given (``pretrained.load_backbone``).
  SIGTERM or Ctrl-C saves a checkpoint at a step every process reaches and raises
  ``Stopped`` saying how to resume; a second Ctrl-C lets pending checkpoint writes finish
  and raises ``Interrupted``."""
  per_epoch = stage.steps_per_epoch
  total = per_epoch * config.epochs
  stop = total if config.max_steps < 0 else min(total, config.max_steps)
  optimizer, schedule = make_optimizer(config.optimizer, per_epoch, config.epochs)
  latest, best = checkpoints.managers(workdir, train=True)
  step, writer = 0, None
  try:
    abstract = steps.abstract_state(stage.network, optimizer, stage.sample_input, mesh)
    restored, state = checkpoints.restore_newest(latest, abstract,
                                                 set_aside=jax.process_index() == 0)
    if restored is None:
      state = steps.init_state(stage.network, optimizer, stage.sample_input, config.seed, mesh)
      if backbone is not None:
        state = pretrained.with_backbone(state, devices.put_replicated(backbone, mesh))
      data_state = None
    else:
      print(f"resumed from step {restored} in {workdir}")
      data_state = checkpoints.restore_data(latest, restored)
    step = restored or 0
    train, evaluate = steps.compile_steps(stage.network, stage.model, stage.layout,
                                          loss_weights(config), optimizer, mesh,
                                          inputs=stage.inputs, seed=config.seed,
                                          objective=stage.objective, prepare=stage.prepare)
    writer = summaries.Writer(workdir, enabled=jax.process_index() == 0, step=step)
    if step >= stop:  # nothing left to train: report the finished run
      result, _ = stage.validate(evaluate, state)
      if jax.process_index() == 0:
        print(f"{workdir}: finished at step {step} of {stop}; {describe(step, result)}")
      return result
    result = None
    with stopping.StopRequests() as requests, tqdm.tqdm(
        total=stop, initial=step, unit="step", desc=config.stage,
        disable=jax.process_index() != 0) as bar, contextlib.closing(
            devices.prefetch(stage.data.batches(step, data_state), mesh)) as on_device:
      for batch, data_state in on_device:
        state, train_metrics = train(state, batch)
        step += 1
        # The bar counts finished steps (dispatch runs ahead of the devices), so its pace
        # and estimate stay steady.
        jax.block_until_ready(train_metrics["loss"])
        bar.update(1)
        stopping_now = requests.reached(step)
        if step % config.log_every_steps == 0 or step == stop:
          values = {k: float(v) for k, v in devices.to_host(train_metrics).items()}
          values["learning_rate"] = float(schedule(step))
          bar.set_postfix(loss=f"{values['loss']:.4f}")
          writer.scalars(step, "train", values)
        if step % config.checkpoint_every_steps == 0 or step == stop or stopping_now:
          checkpoints.save(latest, step, state, data_state)
        # An epoch's validation runs even when a stop was asked for at its last step (a
        # resumed run starts after it): the checkpoint above is already being written.
        if step % per_epoch == 0 or step == stop:
          result, images = stage.validate(evaluate, state)
          writer.scalars(step, "validation", result)
          writer.images(step, "validation", "skeleton", images)
          checkpoints.save(best, step, state, metrics={stage.selection: result[stage.selection]})
          bar.write(describe(step, result))
        if stopping_now:
          latest.wait_until_finished()
          best.wait_until_finished()
          raise Stopped(f"{requests.reason()} at step {step}: checkpoint saved; run the same "
                        "command to resume", requests.status)
        if step >= stop:
          break
    return result
  except KeyboardInterrupt:
    latest.wait_until_finished()
    raise Interrupted(f"interrupted at step {step}; run the same command to resume from step "
                      f"{latest.latest_step() or 0}") from None
  finally:
    if writer is not None:
      writer.close()
    latest.close()
    best.close()


def describe(step, result):
  """One line on a validation result, with the baselines it holds."""
  parts = []
  if "mae_angle" in result:  # not for the multi-step baseline's marker network
    angle = f"MAE_angle {result['mae_angle']:.2f} deg"
    for key, name in (("mae_angle_mean_baseline", "predict-the-mean"),
                      ("mae_angle_per_frame", "per-frame network")):
      if key in result:
        angle += f" ({name} {result[key]:.2f})"
    parts.append(angle)
  parts.append(f"MPBLPE {result['mpblpe']:.1f} mm")
  if "mae_body" in result:
    parts.append(f"MAE_body {result['mae_body']:.1f} mm")
  if "box_iou" in result:
    parts.append(f"box IoU {result['box_iou']:.2f}")
  return f"step {step}: validation " + ", ".join(parts)
