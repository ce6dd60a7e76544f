"""The training loop: resuming after an interruption, and bad configs failing at start-up."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from d3ke_jax.train import trainer
from experiments.configs import synthetic_tiny


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
])
def test_bad_values_fail_at_start_up(tmp_path, data_dir, overrides, message):
  with pytest.raises(trainer.ConfigError, match=message):
    trainer.train_and_evaluate(_config(data_dir, **overrides), str(tmp_path))


def test_unknown_dataset_is_named(tmp_path, data_dir):
  config = _config(data_dir)
  config.dataset.name = "movi"
  with pytest.raises(trainer.ConfigError, match="dataset.name='movi'"):
    trainer.train_and_evaluate(config, str(tmp_path))


def test_command_line_rejects_unknown_keys_and_wrong_types(tmp_path):
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  for override, message in (("--config.optimzer.learning_rate=1", "optimzer"),
                            ("--config.epochs=two", "epochs")):
    result = subprocess.run([sys.executable, "-m", "experiments.train", "--config",
                             synthetic_tiny.__file__, "--workdir", str(tmp_path), override],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
