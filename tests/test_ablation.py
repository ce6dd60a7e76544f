"""The ablation selects each variant's checkpoint on validation and reports the test split."""

import csv

from d3ke_jax.train import ablation, evaluation, trainer
from experiments.configs import synthetic_tiny


def test_sweep_reports_the_test_split_of_best_on_validation_checkpoints(tmp_path, monkeypatch):
  trained, evaluated = [], []
  monkeypatch.setattr(trainer, "train_and_evaluate",
                      lambda config, workdir: trained.append(workdir))

  def evaluate_run(workdir, split="test", checkpoint="best", **unused):
    del unused
    evaluated.append((workdir, split, checkpoint))
    return {column: 1.0 for column in ablation.COLUMNS}

  monkeypatch.setattr(evaluation, "evaluate_run", evaluate_run)
  rows = ablation.run_sweep(synthetic_tiny.get_config(), str(tmp_path),
                            variants=["no_angle", "angle_only"])
  assert [r["variant"] for r in rows] == ["no_angle", "angle_only"]
  assert evaluated == [(str(tmp_path / "no_angle"), "test", "best"),
                       (str(tmp_path / "angle_only"), "test", "best")]
  assert ablation.table_path(str(tmp_path), "lambdas", "test") == str(tmp_path / "lambdas_test")
  table = (tmp_path / "lambdas_test.md").read_text().splitlines()
  assert table[0] == ("# lambdas sweep: metrics on the test split, each variant's checkpoint "
                      "selected on the validation split")
  assert table[2].startswith("| variant | lambda_joint |") and "| no_angle |" in table[4]
  assert [r["variant"] for r in csv.DictReader(open(tmp_path / "lambdas_test.csv"))] == [
      "no_angle", "angle_only"]
