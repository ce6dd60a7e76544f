"""Trains D3KE: ``python -m experiments.train --config experiments/configs/X.py --workdir DIR``.

Any config value can be overridden on the command line, e.g. ``--config.epochs=2`` or
``--config.loss.lambda_marker=0``; unknown keys, wrong types and values out of range fail at
start-up. Runs resume from the last readable checkpoint in ``--workdir``, with the same
config (only epochs, max_steps, log_every_steps, checkpoint_every_steps and
dataset.data_dir may change); Ctrl-C stops cleanly and says the step to resume from. With
``--distributed`` every process of a multi-host job (started by the cluster: SLURM, Cloud
TPU, ...) joins through ``jax.distributed`` and reads its own share of the data.
"""

import jax
from absl import flags, logging

from d3ke_jax import cli
from d3ke_jax.train.trainer import train_and_evaluate


def define(values):
  flags.DEFINE_string("workdir", None, "directory for checkpoints and metrics",
                      flag_values=values, required=True)
  flags.DEFINE_bool("distributed", False, "initialise jax.distributed (multi-host training)",
                    flag_values=values)


def main(argv=None):
  args = cli.parse_flags(argv, define, __doc__, config_help="training config file")
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if args.distributed:
    jax.distributed.initialize()  # coordinator and process ids from the cluster environment
  train_and_evaluate(args.config, args.workdir)


if __name__ == "__main__":
  cli.run(main)
