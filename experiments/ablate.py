"""Ablations: ``python -m experiments.ablate --config CONFIG --workdir DIR --sweep lambdas``.

Trains every variant of the sweep (``lambdas``: the config's loss weights, each term switched
off, each term scaled ten-fold, angle-only and pose-only objectives) into
``DIR/<variant>``, evaluates each one's best-on-validation checkpoint on ``--split`` (default
test) and writes ``DIR/<sweep>_<split>.md`` and ``.csv``.
Config overrides apply to every variant (e.g. ``--config.epochs=2``); re-running resumes.
"""

import os

from absl import flags, logging

from d3ke_jax import cli
from d3ke_jax.errors import UserError
from d3ke_jax.train import ablation


def define(values):
  flags.DEFINE_string("workdir", None, "directory for the variants and the table",
                      flag_values=values, required=True)
  flags.DEFINE_enum("sweep", "lambdas", sorted(ablation.SWEEPS), "what to vary",
                    flag_values=values)
  flags.DEFINE_list("variants", None, "only these variants (default: all)", flag_values=values)
  flags.DEFINE_enum("split", "test", ["validation", "test"],
                    "split the variants are compared on (checkpoints: best on validation)",
                    flag_values=values)


def main(argv=None):
  args = cli.parse_flags(argv, define, __doc__, config_help="training config file")
  logging.set_verbosity(logging.WARNING)
  if os.path.exists(args.workdir) and not os.path.isdir(args.workdir):
    raise UserError(f"{args.workdir}: not a directory (--workdir)")
  ablation.run_sweep(args.config, args.workdir, args.sweep, args.variants, args.split)
  with open(ablation.table_path(args.workdir, args.sweep, args.split) + ".md") as f:
    print(f.read())


if __name__ == "__main__":
  cli.run(main)
