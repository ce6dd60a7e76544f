"""Ablations: ``python -m experiments.ablate --config CONFIG --workdir DIR --sweep lambdas``.

Trains every variant of the sweep (``lambdas``: the config's loss weights, each term switched
off, each term scaled ten-fold, angle-only and pose-only objectives) into
``DIR/<variant>``, evaluates each one's best-on-validation checkpoint on ``--split`` (default
test) and writes ``DIR/<sweep>_<split>.md`` and ``.csv``.
Config overrides apply to every variant (e.g. ``--config.epochs=2``); re-running resumes.
"""

import os

from absl import logging

from d3ke_jax import cli
from d3ke_jax.errors import UserError
from d3ke_jax.train import ablation


def parse(argv):
  parser = cli.ArgumentParser(prog="python -m experiments.ablate", description=__doc__)
  cli.add_config(parser, "training config file")
  parser.add_argument("--workdir", required=True,
                      help="directory for the variants and the table")
  parser.add_argument("--sweep", choices=sorted(ablation.SWEEPS), default="lambdas",
                      help="what to vary (default: lambdas)")
  parser.add_argument("--variants", type=lambda text: text.split(","),
                      help="only these variants, comma-separated (default: all)")
  parser.add_argument("--split", choices=("validation", "test"), default="test",
                      help="split the variants are compared on (checkpoints: best on "
                      "validation)")
  return cli.parse(parser, argv)


def main(argv=None):
  args = parse(argv)
  logging.set_verbosity(logging.WARNING)
  if os.path.exists(args.workdir) and not os.path.isdir(args.workdir):
    raise UserError(f"{args.workdir}: not a directory (--workdir)")
  ablation.run_sweep(args.config, args.workdir, args.sweep, args.variants, args.split)
  with open(ablation.table_path(args.workdir, args.sweep, args.split) + ".md") as f:
    print(f.read())


if __name__ == "__main__":
  cli.run(main)
