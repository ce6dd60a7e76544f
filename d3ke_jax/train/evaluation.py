"""Evaluates a trained run (either stage) on a split and writes the paper's report."""

import os

import jax
import numpy as np

from d3ke_jax import calibration, checkpoints, devices, runs
from d3ke_jax.data import hard as hard_cases
from d3ke_jax.io.atomic import atomic_write
from d3ke_jax.nets import from_config
from d3ke_jax.train import cms, metrics, per_frame, report, temporal
from d3ke_jax.train import stage as stages
from d3ke_jax.train import step as steps
from d3ke_jax.train.dataset import load_dataset
from d3ke_jax.train.losses import loss_weights


def predict_split(workdir, split, checkpoint="best"):
  """(model, layout, predictions, truth, frame rate) of the run in ``workdir`` on ``split``:
  predictions as ``per_frame.predict_frames`` returns them (``seconds``: the whole
  pipeline's, a sequence run's stage 1 included; ``step``: the checkpoint's), truth the
  split's labels."""
  config = runs.load_config(workdir)
  first = runs.per_frame_run(config) if config.stage == "sequence" else config
  model = from_config.load_model(first)
  layout = from_config.layout_for(first, model)
  source = load_dataset(first, splits=(split,))[split]
  truth = per_frame.split_labels(source)
  mesh = devices.make_mesh()
  state = checkpoints.restore_state(workdir, checkpoint, mesh)
  if config.stage == "sequence":
    outputs = temporal.per_frame_outputs(workdir, config.per_frame_workdir, first,
                                         {split: source}, model, mesh)[split]
    network = from_config.sequence_network(config, model, layout, first)
    _, evaluate = steps.compile_steps(network, model, layout, loss_weights(config), None,
                                      mesh, inputs=steps.estimates_from_batch)
    predicted = temporal.predict_sequences(evaluate, state,
                                           temporal.window_arrays(outputs, truth),
                                           truth["clip"], config.window, config.batch_size, mesh)
    # Stage 1's time, measured when its predictions were cached (NaN in older caches).
    predicted["seconds"] += float(outputs.get("seconds", np.nan))
  elif config.stage == "cms":
    predicted = cms.predict(config, state, source, model, layout, truth["clip"], truth["frame"],
                            mesh, desc=f"predict {split}")
  else:
    network = from_config.per_frame_network(config, model, layout)
    _, evaluate = steps.compile_steps(network, model, layout, loss_weights(config), None,
                                      mesh)
    predicted = per_frame.predict_frames(evaluate, state, source, config.batch_size, mesh,
                                         desc=f"predict {split}")
  predicted["step"] = int(state.step)
  return model, layout, predicted, truth, runs.frame_rate(first)


def calibrate(workdir, checkpoint="best"):
  """(step, temperatures) of the uncertainty head of the run in ``workdir`` at
  ``checkpoint``, fitted on the validation split and saved (process 0) as its
  ``calibration.json``; None for a run without the head."""
  _, layout, predicted, truth, _ = predict_split(workdir, "validation", checkpoint)
  if not calibration.has_uncertainty(predicted):
    return None
  temperatures = calibration.fit(layout, predicted, truth)
  if jax.process_index() == 0:
    calibration.save(workdir, predicted["step"], temperatures)
  return predicted["step"], temperatures


def evaluate_run(workdir, split="test", checkpoint="best", out_dir=None, coordinate=None,
                 clip=None):
  """Writes the report of ``workdir``'s run on ``split`` into ``out_dir`` (default
  ``<workdir>/eval/<split>``); returns ``report.write_report``'s result."""
  model, layout, predicted, truth, rate = predict_split(workdir, split, checkpoint)
  axis, extent = metrics.body_extents(model)
  out_dir = out_dir or os.path.join(workdir, "eval", split)
  names = [model.coordinate_names[i] for i in layout.coordinates]
  result = report.write_report(stages.predictions(model, layout, predicted, truth), names,
                               model.body_names, axis, extent, out_dir, rate,
                               coordinate=coordinate, clip=clip,
                               frames_per_s=len(truth["clip"]) / predicted["seconds"])
  result["uncertainty"] = result["uncertainty_hard"] = None
  if calibration.has_uncertainty(predicted):
    calibrated = calibration.load(workdir)
    if calibrated is None or calibrated[0] != predicted["step"]:  # missing, or another step's
      calibrated = calibrate(workdir, checkpoint)
    rotational = [model.coordinate_types[i] == "rotational" for i in layout.coordinates]
    rows, summary, curve = calibration.judge(names, rotational, predicted, truth, layout,
                                             calibrated[1])
    result["paths"].update(report.write_table(
        out_dir, "uncertainty", rows, title=f"Uncertainty on {split} (calibrated on "
        f"validation; MAE in deg, or m for translations)"))
    result["paths"]["risk_coverage.png"] = calibration.plot_risk_coverage(
        os.path.join(out_dir, "risk_coverage.png"), curve)
    result["uncertainty"] = summary
    if "hard" in truth:  # the synthetic dataset's hard frames against its clean ones
      result["uncertainty_hard"] = _report_hard_frames(
          out_dir, split, result["paths"], calibration.judge_groups(
              rotational, predicted, truth, layout, calibrated[1],
              hard_cases.groups(truth["hard"])))
  return result


def _report_hard_frames(out_dir, split, paths, rows):
  """Writes the hard-vs-clean table as ``uncertainty_hard.csv``/``.md`` and appends it to
  ``uncertainty.md``; returns the rows."""
  paths.update(report.write_table(
      out_dir, "uncertainty_hard", rows, title=f"Uncertainty on {split}: hard frames against "
      "clean (MAE and SD of the angles in deg; coverage and rho over all coordinates)"))
  with open(paths["uncertainty.md"]) as f:
    text = f.read()
  with open(paths["uncertainty_hard.md"]) as f:
    text += "\n#" + f.read()  # a section of the uncertainty report
  with atomic_write(paths["uncertainty.md"]) as f:
    f.write(text)
  return rows
