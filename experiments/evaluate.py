"""Evaluates a trained run: ``python -m experiments.evaluate --workdir DIR [--split test]``.

Writes the paper's metrics (Tables 1-4 and 6: per coordinate, movement, subject and view)
as CSV and Markdown, and PNG plots (per-coordinate MAE; predicted vs true angle over time),
into ``DIR/eval/<split>/``, and prints the summary. Works for per-frame and sequence runs.
An unreadable checkpoint is skipped for the newest readable one of the same kind.
"""

import os

from absl import flags, logging

from d3ke_jax import cli
from d3ke_jax.errors import UserError
from d3ke_jax.train.evaluation import evaluate_run


def define(values):
  flags.DEFINE_string("workdir", None, "workdir of a training run", flag_values=values,
                      required=True)
  flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "split to evaluate",
                    flag_values=values)
  flags.DEFINE_enum("checkpoint", "best", ["best", "latest"],
                    "the best-on-validation or the latest checkpoint", flag_values=values)
  flags.DEFINE_string("out", None, "output directory (default: WORKDIR/eval/SPLIT)",
                      flag_values=values)
  flags.DEFINE_string("coordinate", None,
                      "coordinate plotted over time (default: the most varying)",
                      flag_values=values)
  flags.DEFINE_integer("clip", None, "clip plotted over time (default: the longest)",
                       flag_values=values)


def main(argv=None):
  args = cli.parse_flags(argv, define, __doc__)
  logging.set_verbosity(logging.WARNING)
  if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
    raise UserError(f"{args.out}: not a directory (--out)")
  result = evaluate_run(args.workdir, args.split, args.checkpoint, args.out, args.coordinate,
                        args.clip)
  paths = result["paths"]
  with open(paths["summary.md"]) as f:
    print(f.read())
  print(f"report: {os.path.dirname(paths['summary.md'])} ({len(paths)} files)")


if __name__ == "__main__":
  cli.run(main)
