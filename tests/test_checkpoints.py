"""Restoring a run's checkpoints."""

import logging

import numpy as np
from absl import logging as absl_logging

from d3ke_jax import checkpoints


def test_restoring_a_run_says_nothing(tmp_path, caplog):
  """A run's best checkpoint restores without orbax warnings (training restores it at the
  end of every run, to calibrate)."""
  _, best = checkpoints.managers(str(tmp_path), train=True)
  state = {"step": np.int32(4), "params": {"w": np.full(3, 2.0, np.float32)},
           "batch_stats": {"mean": np.zeros(3, np.float32)}}
  checkpoints.save(best, 4, state, metrics={"mae_angle": 1.0})
  best.wait_until_finished()
  best.close()
  level = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.WARNING)  # as experiments.train sets it
  try:
    with caplog.at_level(logging.WARNING):
      restored = checkpoints.restore_state(str(tmp_path), "best")
  finally:
    absl_logging.set_verbosity(level)
  assert int(restored.step) == 4
  np.testing.assert_array_equal(restored.params["w"], 2.0)
  assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
