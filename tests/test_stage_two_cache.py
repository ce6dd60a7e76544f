"""Stage 2's cache of stage-1 predictions is keyed by the stage-1 checkpoint's content."""

import os
import shutil

import numpy as np
import pytest

from d3ke_jax import checkpoints, devices, runs
from d3ke_jax.skeleton import load_osim
from d3ke_jax.train import per_frame, temporal
from experiments.configs import synthetic_tiny


def _save_best(workdir, step, weight):
  """A stage-1 run's ``best/`` checkpoint at ``step`` whose variables hold ``weight``."""
  shutil.rmtree(os.path.join(workdir, "best"), ignore_errors=True)
  _, best = checkpoints.managers(workdir)
  state = {"step": np.int32(step), "params": {"w": np.full(3, weight, np.float32)},
           "batch_stats": {"mean": np.zeros(3, np.float32)}}
  checkpoints.save(best, step, state, metrics={"mae_angle": 1.0})
  best.wait_until_finished()


@pytest.fixture
def predictions(monkeypatch):
  """Records the stage-1 predictions made: the first parameter of each state used."""
  made = []

  def fake_predict(evaluate, state, source, batch_size, mesh, desc=None):
    del evaluate, batch_size, mesh, desc
    made.append(float(np.asarray(state.params["w"])[0]))
    return {"coords": np.full((len(source), 2), made[-1]), "loss": 0.0}

  monkeypatch.setattr(per_frame, "predict_frames", fake_predict)
  return made


def test_a_retrained_stage_one_run_is_predicted_again(tmp_path, predictions):
  first = synthetic_tiny.get_config()
  stage_one, stage_two = str(tmp_path / "stage1"), str(tmp_path / "stage2")
  os.makedirs(stage_one)
  runs.save_config(stage_one, first)
  model = load_osim()
  sources = {"validation": [None] * 5}
  mesh = devices.make_mesh()
  outputs = lambda: temporal.per_frame_outputs(stage_two, stage_one, first, sources, model, mesh)
  _save_best(stage_one, 4, 1.0)
  assert outputs()["validation"]["coords"][0, 0] == 1.0
  assert outputs()["validation"]["coords"][0, 0] == 1.0
  assert predictions == [1.0]  # the second call read the cache
  _save_best(stage_one, 4, 2.0)  # retrained: the same step, other weights
  assert outputs()["validation"]["coords"][0, 0] == 2.0
  assert predictions == [1.0, 2.0]
  cached = os.listdir(os.path.join(stage_two, "per_frame"))
  assert len(cached) == 1 and cached[0].startswith("validation_step4_")  # stale one removed
