"""Stage 2 with the TCN (243-frame receptive field): refines windows of a per-frame run's
outputs.

    python -m experiments.train --config experiments/configs/tcn.py --workdir DIR \
        --config.per_frame_workdir=STAGE1_DIR
(the tiny synthetic clips have 30 frames: add --config.window=27 there)."""

from experiments.configs import common


def get_config():
  return common.sequence("tcn")
