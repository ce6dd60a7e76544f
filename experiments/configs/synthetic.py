"""Per-frame D3KE, full ResNeXt-50 (32x4d) on 256-px synthetic frames (the ``paper``
config: 90 subjects), with the paper's stage-1 optimisation (see ``movi_d3ke``)."""

from experiments.configs import common, movi_d3ke


def get_config():
  config = common.per_frame("synthetic", "paper", common.RESNEXT50, batch_size=64, epochs=30)
  config.optimizer = movi_d3ke.get_config().optimizer
  return config
