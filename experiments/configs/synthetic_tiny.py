"""Per-frame D3KE on the tiny synthetic dataset (64 px): a small ResNeXt that trains on a
CPU in minutes. The README's first command."""

from experiments.configs import common


def get_config():
  model = {"stage_sizes": (1, 1, 1, 1), "groups": 4, "width_per_group": 4, "head_hidden": 128,
           "dtype": "float32"}
  config = common.per_frame("synthetic", "tiny", model, batch_size=32, epochs=12)
  config.optimizer = common.optimizer(1e-3, 1e-5)
  config.log_every_steps = 20
  config.checkpoint_every_steps = 100
  return config
