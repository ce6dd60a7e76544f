"""Per-frame D3KE, full ResNeXt-50 (32x4d) on 256-px synthetic frames (the ``paper``
config: 90 subjects), with the paper's stage-1 optimisation (see ``movi_d3ke``).

Starting from ImageNet weights, as the paper does: ``--config.model.pretrained=PATH`` with
torchvision's ``resnext50_32x4d`` state dict (e.g. ``resnext50_32x4d-7cdf4587.pth``, or a
``.npz`` of its keys); the input is normalised as torchvision's (``model.input_normalisation``).
"""

from experiments.configs import common, movi_d3ke


def get_config():
  config = common.per_frame("synthetic", "paper", common.RESNEXT50, batch_size=64, epochs=30)
  config.optimizer = movi_d3ke.get_config().optimizer
  return config
