"""The training loop and its commands: resuming after Ctrl-C or from a damaged checkpoint,
bad configs and files failing at start-up in one line."""

import csv
import json
import os
import shutil
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from d3ke_jax import calibration, checkpoints, cli, runs
from d3ke_jax.train import ablation, evaluation, trainer
from d3ke_jax.train.dataset import load_dataset
from experiments import evaluate, train
from experiments.configs import synthetic_tiny, transformer


# The tiny run every test trains, as config values and as the command line's overrides.
TINY_RUN = {"dataset.config": "micro", "model.head_hidden": 16, "batch_size": 8, "epochs": 2,
            "log_every_steps": 1, "checkpoint_every_steps": 3}


def _config(data_dir, **overrides):
  config = synthetic_tiny.get_config()
  for key, value in dict(TINY_RUN, **{"dataset.data_dir": data_dir}).items():
    parent, name = (config, key) if "." not in key else (config[key.split(".")[0]],
                                                         key.split(".")[1])
    parent[name] = value
  for key, value in overrides.items():
    config[key] = value
  return config


def _argv(data_dir, workdir, **overrides):
  """``experiments.train``'s command line for ``_config(data_dir, **overrides)``."""
  values = dict(TINY_RUN, **{"dataset.data_dir": data_dir}, **overrides)
  return (["--config", synthetic_tiny.__file__, "--workdir", str(workdir)] +
          [f"--config.{key}={value}" for key, value in values.items()])


def _command(main, argv, capsys):
  """(exit status, stderr lines) of a command run as ``cli.run`` runs it."""
  capsys.readouterr()  # what came before
  with pytest.raises(SystemExit) as exit_:
    cli.run(main, argv, prog="cmd")
  return exit_.value.code, capsys.readouterr().err.splitlines()


def _params(workdir):
  state = checkpoints.restore_state(workdir, "latest")
  return int(state.step), jax.tree.map(np.asarray, state.params)


def _train_steps(workdir):
  return [row["step"] for row in map(json.loads, open(workdir / "metrics.jsonl"))
          if row["split"] == "train"]


@pytest.fixture(scope="module")
def data_dir(micro_data):
  return micro_data


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir):
  """A run of 8 steps, never interrupted (checkpoints at steps 3, 6 and 8)."""
  workdir = tmp_path_factory.mktemp("straight")
  trainer.train_and_evaluate(_config(data_dir, max_steps=8), str(workdir))
  return workdir


class _Interrupting:
  """A stage's data whose batch for step ``step`` + 1 comes with a Ctrl-C: the signal
  (``signal``), or an immediate KeyboardInterrupt (a second Ctrl-C)."""

  def __init__(self, data, step, signal_=True):
    self.data, self.step, self.signal = data, step, signal_

  def batches(self, step, saved=None):
    for batch in self.data.batches(step, saved):
      if step == self.step:
        if not self.signal:
          raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGINT)
      step += 1
      yield batch


def _interrupted_at(make_stage, step, signal_=True):
  """``make_stage`` whose data interrupts the run at ``step`` (``_Interrupting``)."""
  def make(config, workdir, mesh):
    stage = make_stage(config, workdir, mesh)
    return stage._replace(data=_Interrupting(stage.data, step, signal_))
  return make


def _damage(path, size=100):
  with open(path, "r+b") as f:
    f.truncate(size)


def test_interrupted_run_resumes_to_the_same_result(straight, tmp_path, data_dir, monkeypatch,
                                                    capsys):
  workdir = tmp_path / "interrupted"
  # A second Ctrl-C (or one before training): pending writes finish, the last checkpoint is
  # where the run resumes.
  with monkeypatch.context() as patch:
    patch.setitem(trainer.STAGES, "per_frame",
                  _interrupted_at(trainer.STAGES["per_frame"], 7, signal_=False))
    code, err = _command(train.main, _argv(data_dir, workdir, max_steps=8), capsys)
  assert code == 130 and err[-1] == ("cmd: interrupted at step 7; run the same command to "
                                     "resume from step 6"), err
  assert not list(workdir.rglob("*tmp*")) and _train_steps(workdir) == list(range(1, 8))
  # The newest checkpoint is damaged (a truncated data file): the run resumes from step 3,
  # keeps the damaged one aside, replays steps 4-7 without logging them twice, and ends
  # where the uninterrupted run did. How often it checkpoints may change on resuming.
  damaged = workdir / "checkpoints" / "6"
  _damage(max((p for p in damaged.rglob("*") if p.is_file()), key=os.path.getsize), 1000)
  code, err = _command(train.main, _argv(data_dir, workdir, max_steps=8,
                                         checkpoint_every_steps=2), capsys)
  assert code == 0
  fallback = [line for line in err if "unreadable" in line]
  assert len(fallback) == 1 and fallback[0].startswith(
      f"{workdir}/checkpoints: checkpoint step(s) 6 unreadable (Exception: ") and fallback[
          0].endswith("; set aside as *.unreadable; using step 3"), err
  assert (workdir / "checkpoints" / "6.unreadable").is_dir()
  (step_a, params_a), (step_b, params_b) = _params(straight), _params(workdir)
  assert step_a == step_b == 8
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  assert _train_steps(workdir) == list(range(1, 9))
  validation = [l for l in rows if l["split"] == "validation"]
  best = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "best"))
  assert best.all_steps() == [min(validation, key=lambda l: l["mae_angle"])["step"]]
  # No readable checkpoint at all (truncated metadata): one line, for training and evaluation.
  for step in checkpoints.managers(workdir)[0].all_steps():
    _damage(workdir / "checkpoints" / str(step) / "state" / "_METADATA")
  code, err = _command(train.main, _argv(data_dir, workdir, max_steps=8), capsys)
  assert code == 2 and len(err) == 1 and err[0].startswith(
      f"cmd: {workdir}/checkpoints: no readable checkpoint (step 8: JSONDecodeError: "), err
  code, err = _command(evaluate.main, ["--workdir", str(workdir), "--checkpoint", "latest",
                                       "--split", "validation"], capsys)
  assert code == 2 and len(err) == 1 and "no readable checkpoint (step 8" in err[0], err


def test_ctrl_c_stops_after_a_step_with_a_checkpoint_of_it(straight, tmp_path, data_dir,
                                                          monkeypatch, capsys):
  workdir = tmp_path / "signalled"
  with monkeypatch.context() as patch:  # SIGINT while the batch for step 5 is read
    patch.setitem(trainer.STAGES, "per_frame", _interrupted_at(trainer.STAGES["per_frame"], 4))
    code, err = _command(train.main, _argv(data_dir, workdir, max_steps=8), capsys)
  latest, best = checkpoints.managers(workdir)
  saved = latest.latest_step()
  latest.close()
  best.close()
  # Batches are read ahead of the step that trains on them: the step trained when the signal
  # came is one of the few before step 5.
  assert code == 130 and 2 <= saved <= 5 and err[-1] == (
      f"cmd: interrupted at step {saved}: checkpoint saved; run the same command to resume"), err
  assert _train_steps(workdir) == list(range(1, saved + 1))
  code, _ = _command(train.main, _argv(data_dir, workdir, max_steps=8), capsys)
  assert code == 0
  (step_a, params_a), (step_b, params_b) = _params(straight), _params(workdir)
  assert step_a == step_b == 8
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(a, b)


def test_a_stop_at_the_end_of_an_epoch_still_validates_it(tmp_path, data_dir, monkeypatch,
                                                         capsys):
  workdir = tmp_path / "epochs"
  interrupted = _interrupted_at(trainer.STAGES["per_frame"], 2)

  def one_step_epochs(config, workdir, mesh):  # every step ends an epoch
    stage = interrupted(config, workdir, mesh)
    return stage._replace(steps_per_epoch=1)

  with monkeypatch.context() as patch:
    patch.setitem(trainer.STAGES, "per_frame", one_step_epochs)
    code, err = _command(train.main, _argv(data_dir, workdir, max_steps=6), capsys)
  assert code == 130, err
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  validated = [r["step"] for r in rows if r["split"] == "validation"]
  assert validated == _train_steps(workdir) == list(range(1, validated[-1] + 1)), rows
  assert err[-1] == (f"cmd: interrupted at step {validated[-1]}: checkpoint saved; run the "
                     "same command to resume"), err


def test_a_run_keeps_its_config(straight, data_dir, capsys):
  saved = (straight / "config.json").read_bytes()
  code, err = _command(train.main, _argv(data_dir, straight, max_steps=8,
                                         **{"model.groups": 2, "seed": 1}), capsys)
  assert (code, err) == (2, [
      f"cmd: {straight}/config.json: the run in this workdir has another config: "
      "model.groups=4 there, 2 now; seed=0 there, 1 now; only epochs, max_steps, "
      "log_every_steps, checkpoint_every_steps, dataset.data_dir, dataset.manual_dir, "
      "input_workers, input_processes may change when resuming "
      "(start a new run in another --workdir)"])
  code, err = _command(train.main, _argv(data_dir, straight, log_every_steps=0), capsys)
  assert (code, err) == (2, ["cmd: log_every_steps=0: must be an integer >= 1"])
  assert (straight / "config.json").read_bytes() == saved


def test_a_damaged_dataset_file_is_named(tmp_path, data_dir, capsys):
  load_dataset(_config(data_dir))  # builds the dataset if no test has yet
  copy = tmp_path / "tfds"
  shutil.copytree(data_dir, copy)
  path = next(copy.rglob("*-train.array_record-00000-of-00001"))
  data = bytearray(path.read_bytes())
  data[200:2200] = bytes(2000)  # inside the chunk of the first record, read at start-up
  path.write_bytes(bytes(data))
  code, err = _command(train.main, _argv(str(copy), tmp_path / "w"), capsys)
  assert code == 2 and len(err) == 1, err
  assert err[0].startswith(f"cmd: {path}: record ") and err[0].endswith(
      f"; delete {path.parent} to build the dataset again"), err
  assert ": record 0 is damaged (Corrupted Riegeli/records file: chunk " in err[0], err
  assert not (tmp_path / "w").exists()


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
  config.dataset.name = "human36m"
  with pytest.raises(trainer.ConfigError, match="dataset.name='human36m'"):
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
  with open(second / runs.DATA_FILE) as f:  # stage 2 records the data of stage 1
    assert json.load(f) == runs.trained_on(str(first)) and runs.trained_on(str(first))["synthetic"]
  # Validation compares the refined sequence with the per-frame network's own estimates.
  assert {"mae_angle", "mae_angle_per_frame", "mv_angle", "mv_angle_per_frame"} <= set(result)
  assert os.listdir(second / "per_frame")  # stage-1 outputs cached
  lines = [json.loads(l) for l in open(second / "metrics.jsonl")]
  assert [l["step"] for l in lines if l["split"] == "train"] == [1, 2, 3]
  # Stage 2 reads stage 1's uncertainty (P + 3 G + 1 channels beside the kinematics' P +
  # 3 G + 6) and has its own head, trained and calibrated on validation.
  step, temperatures = calibration.load(second)
  best = checkpoints.restore_state(str(second), "best")
  assert step == int(best.step)
  assert all(np.all(np.isfinite(t)) and np.all(t > 0) for t in temperatures)
  p, g = len(temperatures.coords), len(temperatures.scales)
  assert best.params["sequence"]["embed"]["kernel"].shape[0] == 2 * p + 6 * g + 7
  assert all("loss_uncertainty" in l for l in lines if l["split"] == "train")
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
  # The summary's MAE_angle, computed here from the predictions and the labels.
  _, layout, predicted, truth, _ = evaluation.predict_split(str(workdir), "test")
  index = np.array(layout.coordinates)
  error = np.degrees(np.abs(predicted["coords"] - truth["coordinates"][:, index]))
  valid = truth["coordinate_valid"][:, index] & truth["frame_valid"][:, None]
  assert result["MAE_angle_deg"] == pytest.approx(error[valid].mean(), rel=1e-5)
  rows = list(csv.DictReader(open(out / "per_subject.csv")))
  assert sorted(int(r["subject"]) for r in rows) == sorted(set(truth["subject"].tolist()))
  # Both stages have an uncertainty head: hard frames against clean.
  rows = list(csv.DictReader(open(out / "uncertainty_hard.csv")))
  assert [r["group"] for r in rows] == ["clean", "occluded", "outside", "blurred", "hard",
                                        "all"]
  frames = {r["group"]: int(r["frames"]) for r in rows}
  assert frames["all"] == len(truth["hard"]) and frames["hard"] == np.sum(
      truth["hard"] != "none") > 0
  assert frames["clean"] + frames["hard"] == frames["all"]
  assert sum(frames[kind] for kind in ("occluded", "outside", "blurred")) == frames["hard"]
  for r in rows:
    assert float(r["SD_angle_deg"]) > 0 and np.isfinite(float(r["MAE_angle_deg"]))
  assert float(rows[-1]["MAE_angle_deg"]) == pytest.approx(result["uncertainty"]["MAE_all"],
                                                           rel=1e-4)
  assert "hard frames against clean" in (out / "uncertainty.md").read_text()
  assert result["uncertainty_hard"][0]["group"] == "clean"


def test_evaluate_command_line(two_stages, capsys):
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  result = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--workdir",
                           str(two_stages[0]), "--split", "validation"],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "MPBLPE" in result.stdout and "eval/validation" in result.stdout
  assert "hard frames vs clean" in result.stdout and "  occluded " in result.stdout
  missing = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--workdir",
                            str(two_stages[0] / "nothing")],
                           capture_output=True, text=True, timeout=300, check=False)
  assert missing.returncode == 2 and missing.stderr == (
      f"experiments.evaluate: {two_stages[0] / 'nothing'}: no such directory; is it the workdir "
      "of a training run?\n")
  for flag, message in (("--coordinate=knee", "coordinate 'knee' is not a predicted coordinate"),
                        ("--clip=999", "clip 999 is not in the predictions; clips: ")):
    code, err = _command(evaluate.main, ["--workdir", str(two_stages[0]), "--split",
                                         "validation", flag], capsys)
    assert code == 2 and err[-1].startswith(f"cmd: {message}"), err


def test_stage_two_names_what_is_missing(tmp_path, data_dir):
  with pytest.raises(trainer.ConfigError, match="per_frame_workdir: set it"):
    trainer.train_and_evaluate(_sequence_config(""), str(tmp_path / "a"))
  with pytest.raises(trainer.ConfigError, match="nothing: no such directory"):
    trainer.train_and_evaluate(_sequence_config(tmp_path / "nothing"), str(tmp_path / "b"))
  (tmp_path / "c").mkdir()
  with pytest.raises(trainer.ConfigError, match="config.json: not found"):
    trainer.train_and_evaluate(_sequence_config(tmp_path / "c"), str(tmp_path / "b"))


def test_command_line_rejects_unknown_keys_and_wrong_types(tmp_path):
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  for override, message in (
      ("--config.optimzer.learning_rate=1", "--config.optimzer.learning_rate: no such config "
                                            "key (did you mean 'optimizer.learning_rate'?)"),
      ("--config.epochs=two", "--config.epochs=two: not an integer")):
    result = subprocess.run([sys.executable, "-m", "experiments.train", "--config",
                             synthetic_tiny.__file__, "--workdir", str(tmp_path), override],
                            capture_output=True, text=True, timeout=120, check=False)
    assert (result.returncode, result.stderr) == (2, f"experiments.train: {message}\n")


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


@pytest.mark.slow  # about 1-2 minutes on 2 cores: ``pytest -m slow``
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
  for row in rows:  # each variant's report on the test split, as written by evaluate
    summary = next(csv.DictReader(open(tmp_path / row["variant"] / "eval" / "test" /
                                       "summary.csv")))
    assert float(row["MAE_angle_deg"]) == pytest.approx(float(summary["MAE_angle_deg"]))
  assert "| no_angle |" in (tmp_path / "lambdas_test.md").read_text()
  bad = subprocess.run(command[:-4] + ["--variants", "no_angels"], capture_output=True,
                       text=True, timeout=300, check=False)
  assert bad.returncode == 2 and bad.stderr.startswith(
      "experiments.ablate: variants ['no_angels']: unknown") and bad.stderr.count("\n") == 1
