"""``experiments.curves``: runs' metrics.jsonl -> one PNG of their curves; bad input is one line."""

import json
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from experiments import curves

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, name, rows):
  workdir = tmp_path / name
  workdir.mkdir()
  with open(workdir / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)
    f.write('{"step": 9')  # a line a killed run left unfinished
  return str(workdir)


def _train(step, loss):
  return {"step": step, "split": "train", "loss": loss, "learning_rate": 1e-3}


@pytest.fixture
def runs(tmp_path):
  d3ke = _run(tmp_path, "d3ke", [
      _train(1, 0.9), _train(2, 0.5),
      {"step": 2, "split": "validation", "mae_angle": 4.0, "mpblpe": 120.0,
       "mae_angle_mean_baseline": 4.8}])
  cms = _run(tmp_path, "cms", [_train(2, 0.3), _train(1, 0.4),
                               {"step": 2, "split": "validation", "mpblpe": 125.0}])
  return d3ke, cms


def test_curves_reads_each_split_in_step_order(runs):
  from d3ke_jax.train import summaries
  rows = summaries.read_metrics(runs[1])
  steps, values = curves.curves(rows, "train", "loss")
  np.testing.assert_array_equal(steps, [1, 2])
  np.testing.assert_array_equal(values, [0.4, 0.3])
  assert len(curves.curves(rows, "validation", "mae_angle")[0]) == 0


def test_plot_draws_a_panel_per_metric_logged(runs, tmp_path, capsys):
  out = tmp_path / "curves.png"
  curves.main([*runs, "--out", str(out), "--labels", "D3KE", "CMS"])
  assert capsys.readouterr().out.strip() == f"curves: {out}"
  width, height = PIL.Image.open(out).size
  # loss, MAE_angle and MPBLPE (no run logs the box IoU): three 4.5-inch panels at 100 dpi
  assert (width, height) == (1350, 350)


@pytest.mark.parametrize("args, message", [
    (["missing_run", "--out", "c.png"], "missing_run: no metrics.jsonl (not a training workdir)"),
    (["{d3ke}", "--out", "c.jpg"], "c.jpg: --out must be a .png file"),
    (["{d3ke}", "{cms}", "--out", "c.png", "--labels", "a"], "--labels: 1 labels for 2 runs"),
    (["{d3ke}", "{cms}", "--out", "c.png", "--labels", "a", "a"],
     "--labels: runs need distinct labels, got a a"),
])
def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, args, message):
  args = [a.format(d3ke=runs[0], cms=runs[1]) for a in args]
  result = subprocess.run([sys.executable, "-m", "experiments.curves", *args], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, check=False)
  assert result.returncode == 2
  assert result.stderr == f"experiments.curves: {message}\n"
  assert not os.path.exists(tmp_path / "c.png")
