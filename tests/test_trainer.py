"""The training loop: resuming after an interruption, and bad configs failing at start-up."""

import csv
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from d3ke_jax.train import ablation, evaluation, runs, trainer
from d3ke_jax.train import stage as stages
from experiments.configs import synthetic_tiny, transformer


def _config(data_dir, **overrides):
  config = synthetic_tiny.get_config()
  config.dataset.config = "micro"
  config.dataset.data_dir = data_dir
  config.model.head_hidden = 16
  config.batch_size = 8
  config.epochs = 2
  config.log_every_steps = 1
  config.checkpoint_every_steps = 3
  for key, value in overrides.items():
    config[key] = value
  return config


def _params(workdir):
  manager = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"))
  restored = manager.restore(manager.latest_step())
  return manager.latest_step(), restored["params"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def test_interrupted_run_resumes_to_the_same_result(tmp_path, data_dir):
  straight = tmp_path / "straight"
  trainer.train_and_evaluate(_config(data_dir, max_steps=6), str(straight))
  interrupted = tmp_path / "interrupted"
  trainer.train_and_evaluate(_config(data_dir, max_steps=3), str(interrupted))  # "killed"
  trainer.train_and_evaluate(_config(data_dir, max_steps=6), str(interrupted))  # restarted
  step_a, params_a = _params(straight)
  step_b, params_b = _params(interrupted)
  assert step_a == step_b == 6
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  lines = [json.loads(l) for l in open(interrupted / "metrics.jsonl")]
  assert [l["step"] for l in lines if l["split"] == "train"] == [1, 2, 3, 4, 5, 6]
  validation = [l for l in lines if l["split"] == "validation"]
  assert validation
  best = ocp.CheckpointManager(os.path.join(os.path.abspath(interrupted), "best"))
  kept = min(validation, key=lambda l: l["mae_angle"])["step"]
  assert best.all_steps() == [kept]


@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size=0), "batch_size=0"),
    (dict(epochs=0), "epochs=0"),
    (dict(stage="per-frame"), "stage='per-frame'"),
    (dict(loss={"lambda_joints": 1.0}), "loss.lambda_joints"),
    (dict(loss={"lambda_angle": -1.0}), "loss.lambda_angle=-1.0"),
])
def test_bad_values_fail_at_start_up(tmp_path, data_dir, overrides, message):
  with pytest.raises(trainer.ConfigError, match=message):
    trainer.train_and_evaluate(_config(data_dir, **overrides), str(tmp_path))


def test_unknown_dataset_is_named(tmp_path, data_dir):
  config = _config(data_dir)
  config.dataset.name = "movi"
  with pytest.raises(trainer.ConfigError, match="dataset.name='movi'"):
    trainer.train_and_evaluate(config, str(tmp_path))


def test_missing_key_is_named(tmp_path, data_dir):
  config = _config(data_dir)
  del config.optimizer["final_epochs"]
  with pytest.raises(trainer.ConfigError, match="optimizer.final_epochs: missing"):
    trainer.train_and_evaluate(config, str(tmp_path))


def test_paper_schedule_has_two_linear_phases():
  from experiments.configs import movi_d3ke  # pylint: disable=g-import-not-at-top
  _, schedule = trainer.make_optimizer(movi_d3ke.get_config().optimizer, 10, 30)
  np.testing.assert_allclose([schedule(0), schedule(280 - 1), schedule(280), schedule(300)],
                             [5e-4, 5e-4 + (3.33e-5 - 5e-4) * 279 / 280, 3.33e-6, 1e-6],
                             rtol=1e-5)


def _sequence_config(per_frame_workdir, **overrides):
  config = transformer.get_config()
  config.per_frame_workdir = str(per_frame_workdir)
  config.model.options = {"hidden": 16, "heads": 2, "feed_forward": 16, "layers": 1,
                          "dropout": 0.1}
  config.window = 8
  config.window_stride = 2
  config.batch_size = 4
  config.epochs = 1
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope="module")
def two_stages(tmp_path_factory, data_dir):
  """A per-frame run of 4 steps and a transformer run of 3 steps on its outputs."""
  root = tmp_path_factory.mktemp("runs")
  trainer.train_and_evaluate(_config(data_dir, max_steps=4), str(root / "per_frame"))
  result = trainer.train_and_evaluate(_sequence_config(root / "per_frame", max_steps=3),
                                      str(root / "transformer"))
  return root / "per_frame", root / "transformer", result


def test_stage_two_trains_on_stage_one_outputs_and_logs_tensorboard(two_stages):
  first, second, result = two_stages
  assert runs.load_config(first).stage == "per_frame"
  # Validation compares the refined sequence with the per-frame network's own estimates.
  assert {"mae_angle", "mae_angle_per_frame", "mv_angle", "mv_angle_per_frame"} <= set(result)
  assert os.listdir(second / "per_frame")  # stage-1 outputs cached
  lines = [json.loads(l) for l in open(second / "metrics.jsonl")]
  assert [l["step"] for l in lines if l["split"] == "train"] == [1, 2, 3]
  # TensorBoard event files for both splits; stage 1 also logged skeleton images.
  for run, split in ((second, "train"), (second, "validation"), (first, "validation")):
    assert any(f.startswith("events.out.tfevents")
               for f in os.listdir(run / "tensorboard" / split))
  events = open(next((first / "tensorboard" / "validation").iterdir()), "rb").read()
  assert b"skeleton" in events and b"mae_angle" in events


@pytest.mark.parametrize("stage", ["per_frame", "sequence"])
def test_evaluate_writes_the_report_of_either_stage(two_stages, stage):
  workdir = two_stages[0] if stage == "per_frame" else two_stages[1]
  result = evaluation.evaluate_run(str(workdir), split="test", coordinate="knee_angle_r")
  out = workdir / "eval" / "test"
  for name in ("summary", "per_coordinate", "per_movement", "per_subject", "per_view",
               "per_body", "table6"):
    assert (out / f"{name}.csv").stat().st_size > 0 and (out / f"{name}.md").exists()
  assert (out / "angle_over_time.png").read_bytes()[:4] == b"\x89PNG"
  # The summary agrees with the per-frame metrics computed independently.
  model, layout, predicted, truth, _ = evaluation.predict_split(str(workdir), "test")
  assert result["MAE_angle_deg"] == pytest.approx(stages.mae_angle_of(predicted["coords"], truth,
                                                                      layout), rel=1e-5)
  rows = list(csv.DictReader(open(out / "per_subject.csv")))
  assert sorted(int(r["subject"]) for r in rows) == sorted(set(truth["subject"].tolist()))


def test_evaluate_command_line(two_stages):
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  result = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--workdir",
                           str(two_stages[0]), "--split", "validation"],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "MPBLPE" in result.stdout and "eval/validation" in result.stdout
  missing = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--workdir",
                            str(two_stages[0] / "nothing")],
                           capture_output=True, text=True, timeout=300, check=False)
  assert missing.returncode != 0 and "config.json: not found" in missing.stderr


def test_stage_two_names_what_is_missing(tmp_path, data_dir):
  with pytest.raises(trainer.ConfigError, match="per_frame_workdir: set it"):
    trainer.train_and_evaluate(_sequence_config(""), str(tmp_path / "a"))
  with pytest.raises(trainer.ConfigError, match="config.json: not found"):
    trainer.train_and_evaluate(_sequence_config(tmp_path / "nothing"), str(tmp_path / "b"))


def test_command_line_rejects_unknown_keys_and_wrong_types(tmp_path):
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  for override, message in (("--config.optimzer.learning_rate=1", "optimzer"),
                            ("--config.epochs=two", "epochs")):
    result = subprocess.run([sys.executable, "-m", "experiments.train", "--config",
                             synthetic_tiny.__file__, "--workdir", str(tmp_path), override],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]


def test_lambda_sweep_switches_terms_off_scales_them_and_isolates_objectives():
  variants = ablation.lambda_variants(synthetic_tiny.get_config().loss)
  assert variants["config"] == {"lambda_joint": 1.0, "lambda_marker": 2.0, "lambda_body": 0.1,
                                "lambda_angle": 0.06}
  assert variants["no_marker"]["lambda_marker"] == 0 and variants["no_marker"]["lambda_joint"] == 1
  assert variants["angle_x10"]["lambda_angle"] == pytest.approx(0.6)
  assert [k for k, v in variants["angle_only"].items() if v] == ["lambda_angle"]
  assert sorted(k for k, v in variants["pose_only"].items() if v) == ["lambda_joint",
                                                                       "lambda_marker"]
  assert len(variants) == 11


def test_ablate_command_trains_variants_into_one_table(tmp_path, data_dir):
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  command = [sys.executable, "-m", "experiments.ablate", "--config", synthetic_tiny.__file__,
             "--workdir", str(tmp_path), "--variants", "no_angle,angle_only",
             "--config.dataset.config=micro", f"--config.dataset.data_dir={data_dir}",
             "--config.batch_size=8", "--config.max_steps=2", "--config.model.head_hidden=16"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = list(csv.DictReader(open(tmp_path / "lambdas_test.csv")))
  assert [r["variant"] for r in rows] == ["no_angle", "angle_only"]
  assert float(rows[0]["lambda_angle"]) == 0 and float(rows[1]["lambda_joint"]) == 0
  assert all(float(r["MAE_angle_deg"]) > 0 for r in rows)
  assert "| no_angle |" in (tmp_path / "lambdas_test.md").read_text()
  bad = subprocess.run(command[:-4] + ["--variants", "no_angels"], capture_output=True,
                       text=True, timeout=300, check=False)
  assert bad.returncode != 0 and "no_angels" in bad.stderr
