"""The uncertainty head through a run: training ends with the calibration, evaluate reports
the head on the test split (fitting the calibration where it is missing), and a run saved
before the head (no ``model.uncertainty_head`` key) still evaluates and infers; likewise for
the sequence stage, over stage-1 runs with and without the head."""

import csv
import json
import os

import jax
import numpy as np
import pytest

from d3ke_jax import cli
from d3ke_jax.infer import pipeline
from d3ke_jax import calibration, checkpoints, runs
from d3ke_jax.nets.d3ke import Estimates
from d3ke_jax.train import trainer
from experiments import evaluate, occluded_arm
from experiments.configs import synthetic_tiny, transformer


def _train(root, data_dir, head):
  config = synthetic_tiny.get_config()
  config.dataset.config, config.dataset.data_dir = "micro", data_dir
  config.model.head_hidden, config.batch_size, config.max_steps = 16, 8, 2
  if not head:
    del config.model["uncertainty_head"]  # as runs saved before the key
  trainer.train_and_evaluate(config, str(root))
  return str(root)


@pytest.fixture(scope="module")
def with_head(tmp_path_factory, micro_data):
  return _train(tmp_path_factory.mktemp("head") / "run", micro_data, True)


@pytest.fixture(scope="module")
def old_run(tmp_path_factory, micro_data):
  return _train(tmp_path_factory.mktemp("old") / "run", micro_data, False)


def _evaluate(argv, capsys):
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_:
    cli.run(evaluate.main, argv, prog="evaluate")
  return exit_.value.code, capsys.readouterr().out


@pytest.mark.slow  # a whole run with the head; every trainer test calibrates too
def test_training_ends_with_the_calibration_of_the_best_checkpoint(with_head):
  assert runs.load_config(with_head).model.uncertainty_head
  step, temperatures = calibration.load(with_head)
  assert step == 2
  with open(os.path.join(with_head, calibration.CALIBRATION_FILE)) as f:
    assert json.load(f)["split"] == "validation"
  layout_size = len(temperatures.coords)
  assert layout_size > 10 and temperatures.scales.shape[1:] == (3,)
  assert temperatures.rotation.shape == ()
  for t in temperatures:
    assert np.all(np.isfinite(t)) and np.all(t > 0)


@pytest.mark.slow  # a whole run with the head; every trainer test calibrates too
def test_evaluate_reports_the_head_and_fits_a_missing_calibration(with_head, capsys):
  path = os.path.join(with_head, calibration.CALIBRATION_FILE)
  saved = calibration.load(with_head)
  os.remove(path)
  code, out = _evaluate(["--workdir", with_head, "--split", "test"], capsys)
  assert code == 0 and "uncertainty (calibrated): coverage" in out, out
  step, fitted = calibration.load(with_head)  # fitted again, the same
  assert step == saved[0]
  np.testing.assert_allclose(fitted.coords, saved[1].coords, rtol=1e-5)
  out_dir = os.path.join(with_head, "eval", "test")
  with open(os.path.join(out_dir, "uncertainty.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 1 + len(fitted.coords) and rows[-1]["coordinate"] == "all"
  summary = {k: float(v) for k, v in rows[-1].items() if k != "coordinate"}
  assert 0 <= summary["coverage_50"] <= summary["coverage_90"] <= 1
  assert np.isfinite(summary["MAE_all"]) and np.isfinite(summary["MAE_confident_half"])
  with open(os.path.join(out_dir, "risk_coverage.png"), "rb") as f:
    assert f.read(4) == b"\x89PNG"


def test_a_run_saved_without_the_head_evaluates_and_infers(old_run, capsys):
  with open(os.path.join(old_run, runs.CONFIG_FILE)) as f:
    assert "uncertainty_head" not in json.load(f)["model"]
  assert runs.load_config(old_run).model.uncertainty_head is False
  assert not os.path.exists(os.path.join(old_run, calibration.CALIBRATION_FILE))
  code, out = _evaluate(["--workdir", old_run, "--split", "test"], capsys)
  assert code == 0 and "uncertainty: not available" in out, out
  assert not os.path.exists(os.path.join(old_run, "eval", "test", "uncertainty.csv"))
  predictor = pipeline.load_predictor(old_run)
  assert predictor.temperatures is None
  count = predictor.mesh.devices.size
  outputs = predictor.frames(np.zeros((count, 48, 48, 3), np.uint8),
                             np.tile([[4.0, 4.0, 40.0]], (count, 1)))
  assert len(outputs) == 3 and np.all(np.isfinite(outputs[0].coords))


@pytest.mark.slow  # a whole run with the head
def test_the_occluded_arm_check_runs(with_head, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(occluded_arm, "FRAMES", 4)
  occluded_arm.main(["--workdir", with_head, "--out", str(tmp_path)])
  out = capsys.readouterr().out
  assert "| occluded | right |" in out and "| clean | left |" in out
  for name in ("clean", "occluded"):
    assert os.path.isfile(tmp_path / name / f"{name}_overlay.mp4")
  assert (tmp_path / "frame.png").is_file()


def _train_sequence(root, per_frame_workdir, head):
  """A transformer run of 2 steps on 8-frame windows of a stage-1 run's outputs."""
  config = transformer.get_config()
  config.per_frame_workdir = per_frame_workdir
  config.model.options = {"hidden": 16, "heads": 2, "feed_forward": 16, "layers": 1,
                          "dropout": 0.1}
  config.window, config.window_stride, config.batch_size, config.max_steps = 8, 4, 4, 2
  if not head:
    del config.model["uncertainty_head"]  # as runs saved before the key
  trainer.train_and_evaluate(config, str(root))
  return str(root)


@pytest.mark.slow  # two more sequence runs, over the run with the head
def test_sequence_runs_over_stage_one_runs_without_the_head_and_from_before_the_key(
    old_run, with_head, tmp_path):
  """A sequence run with the head over a stage-1 run without one has no uncertainty inputs
  but its own head, calibrated; one saved before the key (none), over a stage-1 run with
  the head, still loads for inference: no inputs, no uncertainty."""
  new = _train_sequence(tmp_path / "new", old_run, True)
  old = _train_sequence(tmp_path / "old", with_head, False)
  with open(os.path.join(old, runs.CONFIG_FILE)) as f:
    assert "uncertainty_head" not in json.load(f)["model"]
  assert runs.load_config(old).model.uncertainty_head is False
  assert not os.path.exists(os.path.join(old, calibration.CALIBRATION_FILE))
  assert calibration.load(new)[0] == 2
  for workdir, head in ((new, True), (old, False)):
    params = checkpoints.restore_state(workdir, "best").params
    assert ("uncertainty_head" in params) == head
    predictor = pipeline.load_predictor(workdir)
    assert predictor.uncertain == head and (predictor.temperatures is not None) == head
    count = predictor.mesh.devices.size
    kinematics, _, _, *scales = predictor.frames(np.zeros((count, 48, 48, 3), np.uint8),
                                                 np.tile([[4.0, 4.0, 40.0]], (count, 1)))
    assert len(scales) == (workdir == old)  # stage 1's, where its run has the head
    windows = jax.tree.map(lambda x: np.repeat(x[:, None], predictor.window, 1),
                           Estimates(kinematics, *scales))
    outputs = predictor.windows(windows)
    assert len(outputs) == 2 + head and np.all(np.isfinite(outputs[0].coords))
    # The sequence network's input: the kinematics alone (P + 3 G + 6 channels).
    p, g = kinematics.coords.shape[-1], kinematics.scales.shape[-2]
    assert params["sequence"]["embed"]["kernel"].shape[0] == p + 3 * g + 6
