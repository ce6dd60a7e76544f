"""Evaluates a trained run: ``python -m experiments.evaluate --workdir DIR [--split test]``.

Writes the paper's metrics (Tables 1-4 and 6: per coordinate, movement, subject and view)
as CSV and Markdown, and PNG plots (per-coordinate MAE; predicted vs true angle over time),
into ``DIR/eval/<split>/``, and prints the summary. Works for per-frame and sequence runs.
"""

import os

from absl import app, flags, logging

from d3ke_jax.train.evaluation import evaluate_run
from d3ke_jax.train.runs import ConfigError

_WORKDIR = flags.DEFINE_string("workdir", None, "workdir of a training run")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "split to evaluate")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"],
                                "the best-on-validation or the latest checkpoint")
_OUT = flags.DEFINE_string("out", None, "output directory (default: WORKDIR/eval/SPLIT)")
_COORDINATE = flags.DEFINE_string("coordinate", None,
                                  "coordinate plotted over time (default: the most varying)")
_CLIP = flags.DEFINE_integer("clip", None, "clip plotted over time (default: the longest)")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  try:
    result = evaluate_run(_WORKDIR.value, _SPLIT.value, _CHECKPOINT.value, _OUT.value,
                          _COORDINATE.value, _CLIP.value)
  except (ConfigError, FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e)) from None
  paths = result["paths"]
  with open(paths["summary.md"]) as f:
    print(f.read())
  print(f"report: {os.path.dirname(paths['summary.md'])} ({len(paths)} files)")


if __name__ == "__main__":
  app.run(main)
