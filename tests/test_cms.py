"""The multi-step baseline (CMS): a marker network trained by ``experiments.train``, its
markers turned into angles and scales by scaling + IK, and the same evaluation table as
D3KE's."""

import csv
import json

import numpy as np
import pytest

from d3ke_jax import checkpoints, cli, devices, runs
from d3ke_jax.data.records import labels
from d3ke_jax.skeleton import load_osim
from d3ke_jax.nets import from_config
from d3ke_jax.train import cms, metrics, per_frame, trainer
from d3ke_jax.train.dataset import load_dataset
from d3ke_jax.train import stage as stages
from experiments import evaluate, train
from experiments.configs import cms_tiny

# Two steps on the micro dataset (32 px, 8-frame clips) with a tiny head, at a learning rate
# that keeps the markers near a pose of the model (a network trained two steps at 1e-3
# predicts markers no body has).
RUN = {"dataset.config": "micro", "model.head_hidden": 16, "batch_size": 8, "max_steps": 2,
       "log_every_steps": 1, "checkpoint_every_steps": 2, "optimizer.learning_rate": 1e-6,
       "optimizer.end_learning_rate": 1e-7}
TABLE = ("MAE_angle_deg", "SD_angle_deg", "MPBLPE_mm", "MAE_body_mm", "RMSE_body",
         "frames_per_s")


@pytest.fixture(scope="module")
def data_dir(micro_data):
  return micro_data


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
  """(workdir, the markers its validation predicted): a CMS run of two steps, trained
  through ``experiments.train``'s command line."""
  workdir = tmp_path_factory.mktemp("cms")
  argv = ["--config", cms_tiny.__file__, "--workdir", str(workdir),
          f"--config.dataset.data_dir={data_dir}"] + [f"--config.{k}={v}" for k, v in RUN.items()]
  validated = []

  def spy(*args, **kwargs):
    outputs = network_outputs(*args, **kwargs)
    validated.append(outputs[0][0])
    return outputs

  network_outputs = per_frame.network_outputs
  with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exit_:
    patch.setattr(per_frame, "network_outputs", spy)
    cli.run(train.main, argv, prog="train")
  assert exit_.value.code == 0
  return workdir, validated


def _labels(workdir, split):
  return labels(load_dataset(runs.load_config(str(workdir)), (split,))[split],
                per_frame.LABELS)


def test_training_keeps_the_checkpoint_of_lowest_marker_error(trained):
  trained, (markers,) = trained
  rows = [json.loads(line) for line in open(trained / "metrics.jsonl")]
  assert [row["step"] for row in rows if row["split"] == "train"] == [1, 2]
  validation = [row for row in rows if row["split"] == "validation"]
  # Validation's MPBLPE: the network's markers against the root-relative labels, in mm.
  truth = _labels(trained, "validation")
  true = truth["markers"] - truth["joints"][:, load_osim().root_joint, None]
  error = np.linalg.norm(markers - true, axis=-1)[truth["frame_valid"]]
  assert len(validation) == 1
  assert validation[0]["mpblpe"] == pytest.approx(1000 * error.mean(), rel=1e-6)
  assert validation[0]["frames"] == truth["frame_valid"].sum() == len(markers)
  # Marker loss alone: the loss is the marker term (lambda_marker = 1).
  assert all(row["loss"] == pytest.approx(row["loss_marker"]) for row in rows
             if row["split"] == "train")
  latest, best = checkpoints.managers(str(trained))
  assert best.all_steps() == [2] and latest.all_steps() == [2]


def test_evaluate_reports_the_table_after_scaling_and_ik(trained, capsys, monkeypatch):
  trained, _ = trained
  solved = []

  def spy(model, layout, markers, clip, frame, rate):
    result = markers_to_kinematics(model, layout, markers, clip, frame, rate)
    solved.append((model, markers, result[0]))
    return result

  markers_to_kinematics = cms.markers_to_kinematics
  monkeypatch.setattr(cms, "markers_to_kinematics", spy)
  with pytest.raises(SystemExit) as exit_:
    cli.run(evaluate.main, ["--workdir", str(trained), "--split", "test"], prog="evaluate")
  assert exit_.value.code == 0
  printed = capsys.readouterr().out
  assert all(column in printed for column in TABLE)
  summary = {k: float(v) for k, v in next(csv.DictReader(
      open(trained / "eval" / "test" / "summary.csv"))).items()}
  assert summary["frames_per_s"] > 0
  # IK ran on the network's markers: the fitted model's markers are within a cm of them
  # (measured 6 mm; 5-9 mm on the labels' own markers, the scaling's residual).
  (model, network_markers, predicted), = solved
  root = lambda pose: pose["joints"][:, model.root_joint, None]
  fitted = predicted["markers"] - root(predicted)
  assert np.linalg.norm(fitted - network_markers, axis=-1).mean() < 0.01
  # The report's numbers are those of the fitted model, computed here from the labels.
  truth = _labels(trained, "test")
  valid = truth["frame_valid"]
  error = np.linalg.norm(fitted - (truth["markers"] - root(truth)), axis=-1)[valid]
  assert summary["MPBLPE_mm"] == pytest.approx(1000 * error.mean(), rel=1e-6)
  layout = from_config.layout_for(runs.load_config(str(trained)), model)
  index = np.array(layout.coordinates)
  angle = np.degrees(predicted["coords"] - truth["coordinates"][:, index])[
      truth["coordinate_valid"][:, index] & valid[:, None]]
  assert summary["MAE_angle_deg"] == pytest.approx(np.abs(angle).mean(), rel=1e-6)
  assert summary["SD_angle_deg"] == pytest.approx(angle.std(), rel=1e-6)
  scales = np.ones_like(truth["scales"])
  for g, members in enumerate(layout.body_groups):
    scales[:, list(members)] = predicted["scales"][:, g, None]
  scale_error = (scales - truth["scales"])[valid]
  assert summary["RMSE_body"] == pytest.approx(np.sqrt(np.mean(scale_error**2)), rel=1e-6)
  axis, extent = metrics.body_extents(model)
  along = scale_error[:, np.arange(model.num_bodies), axis]
  assert summary["MAE_body_mm"] == pytest.approx(1000 * np.mean(np.abs(along) * extent),
                                                 rel=1e-6)


def test_scaling_and_ik_recover_true_kinematics_from_true_markers(data_dir):
  """The post-processing alone, on the labels' own markers (root-relative, camera
  orientation): angles and scales close to the labels' (independent of any network)."""
  config = cms_tiny.get_config()
  config.dataset.config, config.dataset.data_dir = "micro", data_dir
  model = load_osim()
  layout = from_config.layout_for(config, model)
  source = load_dataset(config, splits=("test",))["test"]
  truth = labels(source, per_frame.LABELS)
  root = truth["joints"][:, model.root_joint, None]
  predicted, seconds = cms.markers_to_kinematics(model, layout, truth["markers"] - root,
                                                 truth["clip"], truth["frame"],
                                                 runs.frame_rate(config))
  assert seconds > 0
  error = stages.mae_angle_of(predicted["coords"], truth, layout)
  assert error < 1.5, error  # measured 0.93 deg
  scales = stages.relative_scales(model, layout, predicted["scales"])
  assert np.abs(scales - truth["scales"]).mean() < 0.03  # measured 0.022
  fitted = predicted["markers"] - predicted["joints"][:, model.root_joint, None]
  error = np.linalg.norm(fitted - (truth["markers"] - root), axis=-1).mean()
  assert error < 0.012, error  # measured 7.3 mm


def test_the_stage_trains_markers_alone(data_dir):
  config = cms_tiny.get_config()
  config.dataset.config, config.dataset.data_dir = "micro", data_dir
  config.loss.lambda_joint = 1.0
  with pytest.raises(runs.ConfigError, match=r"loss.lambda_joint=1.0: the cms stage trains "
                     r"markers alone \(only loss.lambda_marker\)"):
    trainer.STAGES["cms"](config, "unused", devices.make_mesh())
