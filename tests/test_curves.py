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


def _line(row):
  return json.dumps(row) + "\n"


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
  rows = curves.read_rows(runs[1])
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
    (["missing_run", "--out", "c.png"], "missing_run: no such directory"),
    (["{d3ke}/metrics.jsonl", "--out", "c.png"], "{d3ke}/metrics.jsonl: not a directory"),
    (["{d3ke}", "--out", "c.jpg"], "c.jpg: --out must be a .png file"),
    (["{d3ke}", "{cms}", "--out", "c.png", "--labels", "a"], "--labels: 1 labels for 2 runs"),
    (["{d3ke}", "{cms}", "--out", "c.png", "--labels", "a", "a"],
     "runs need distinct, non-empty labels, got ['a', 'a']"),
    (["{d3ke}", "{d3ke}/", "--out", "c.png"], "{d3ke}/: the same run given twice"),
    (["{d3ke}", "{other}/d3ke", "--out", "c.png"],
     "runs need distinct, non-empty labels, got ['d3ke', 'd3ke']: give them with --labels"),
    (["{bad}/step", "--out", "c.png"], "{bad}/step/metrics.jsonl:1: no integer 'step'"),
    (["{bad}/value", "--out", "c.png"],
     "{bad}/value/metrics.jsonl:2: 'loss' is 'abc', not a number"),
    (["{bad}/list", "--out", "c.png"], "{bad}/list/metrics.jsonl:1: not a JSON object"),
    (["{bad}/middle", "--out", "c.png"], "{bad}/middle/metrics.jsonl:1: not a JSON line"),
    (["{bad}/empty", "--out", "c.png"], "{bad}/empty/metrics.jsonl: no metrics logged yet"),
    (["{bad}/nothing", "--out", "c.png"],
     "no run logs any of: train loss, validation mae_angle, validation mpblpe, "
     "validation box_iou"),
])
def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, args, message):
  bad = tmp_path / "bad"
  for name, text in {"step": '{"split": "train", "loss": 1}\n',
                     "value": _line(_train(1, 0.5)) + _line(_train(2, "abc")),
                     "list": "[1, 2]\n", "middle": '{"step"\n' + _line(_train(1, 0.5)),
                     "empty": "", "nothing": '{"step": 1, "split": "train", "lr": 1}\n'
                     }.items():
    (bad / name).mkdir(parents=True)
    (bad / name / "metrics.jsonl").write_text(text)
  (tmp_path / "other" / "d3ke").mkdir(parents=True)
  (tmp_path / "other" / "d3ke" / "metrics.jsonl").write_text(_line(_train(1, 0.5)))
  names = dict(d3ke=runs[0], cms=runs[1], bad=bad, other=tmp_path / "other")
  args, message = [a.format(**names) for a in args], message.format(**names)
  result = subprocess.run([sys.executable, "-m", "experiments.curves", *args], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, check=False)
  assert result.returncode == 2
  assert result.stderr == f"experiments.curves: {message}\n"
  assert not os.path.exists(tmp_path / "c.png")
