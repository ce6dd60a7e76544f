"""Per-frame D3KE on the tiny synthetic dataset: trains on a CPU in minutes."""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.dataset = ml_collections.ConfigDict(
      {"name": "synthetic", "config": "tiny", "data_dir": "data/tfds"})
  config.model = ml_collections.ConfigDict(
      {"stage_sizes": (1, 1, 1, 1), "groups": 4, "width_per_group": 4, "head_hidden": 128,
       "dtype": "float32", "share_mirrored": True})
  config.loss = ml_collections.ConfigDict(
      {"lambda_joint": 1.0, "lambda_marker": 2.0, "lambda_body": 0.1, "lambda_angle": 0.06})
  config.optimizer = ml_collections.ConfigDict(
      {"learning_rate": 1e-3, "end_learning_rate": 1e-5, "weight_decay": 1e-3})
  config.augmentation = True
  config.batch_size = 32
  config.epochs = 4
  config.seed = 0
  config.log_every_steps = 20
  config.checkpoint_every_steps = 100
  config.max_steps = -1  # stop early (for tests); -1 runs every epoch
  return config
