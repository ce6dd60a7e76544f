"""Trains D3KE: ``python -m experiments.train --config experiments/configs/X.py --workdir DIR``.

Any config value can be overridden on the command line, e.g. ``--config.epochs=2`` or
``--config.loss.lambda_marker=0``; unknown keys and wrong types fail at start-up. Runs
resume from the last checkpoint in ``--workdir``. With ``--distributed`` every process of a
multi-host job (started by the cluster: SLURM, Cloud TPU, ...) joins through
``jax.distributed`` and reads its own share of the data.
"""

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from d3ke_jax.train.trainer import ConfigError, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints and metrics")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "initialise jax.distributed (multi-host training)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if _DISTRIBUTED.value:
    jax.distributed.initialize()  # coordinator and process ids from the cluster environment
  try:
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except ConfigError as e:
    raise app.UsageError(f"bad config: {e}") from None


if __name__ == "__main__":
  app.run(main)
