"""Evaluates a trained run: ``python -m experiments.evaluate --workdir DIR [--split test]``.

Writes the paper's metrics (Tables 1-4 and 6: per coordinate, movement, subject and view)
as CSV and Markdown, and PNG plots (per-coordinate MAE; predicted vs true angle over time),
into ``DIR/eval/<split>/``, and prints the summary. Works for per-frame and sequence runs.
A run with an uncertainty head also gets ``uncertainty.csv``/``.md`` (per coordinate and
overall: coverage of the calibrated 50 % and 90 % Laplace intervals, Spearman's rho of
scale and error, MAE on the most confident half of the frames and on all) and
``risk_coverage.png``; its calibration (``WORKDIR/calibration.json``) is fitted on the
validation split first if missing. On the synthetic dataset (whose records mark hard
frames: occluded, limbs outside the crop, blurred) the same report per group of frames, clean
against each hard kind and all hard ones (frames, MAE_angle, mean calibrated SD of the angles,
coverage, Spearman's rho), goes to ``uncertainty_hard.csv`` and into ``uncertainty.md``.
An unreadable checkpoint is skipped for the newest readable one of the same kind.
"""

import os

from absl import logging

from d3ke_jax import cli
from d3ke_jax.errors import UserError
from d3ke_jax.train.evaluation import evaluate_run


def parse(argv):
  parser = cli.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__)
  parser.add_argument("--workdir", required=True, help="workdir of a training run")
  parser.add_argument("--split", choices=("train", "validation", "test"), default="test",
                      help="split to evaluate (default: test)")
  parser.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                      help="the best-on-validation (default) or the latest checkpoint")
  parser.add_argument("--out", help="output directory (default: WORKDIR/eval/SPLIT)")
  parser.add_argument("--coordinate", help="coordinate plotted over time (default: the most "
                      "varying)")
  parser.add_argument("--clip", type=int, help="clip plotted over time (default: the longest)")
  return cli.parse(parser, argv)


def hard_summary(rows):
  """Lines comparing the hard frames' predicted SD and error with the clean frames'."""
  lines = ["hard frames vs clean: calibrated SD of the angles, MAE_angle, coverage of the 90 % "
           "intervals"]
  for row in rows:
    if row["group"] != "all":
      lines.append(f"  {row['group']:<9} {row['frames']:>6} frames  SD {row['SD_angle_deg']:6.2f} "
                   f"deg  MAE {row['MAE_angle_deg']:6.2f} deg  coverage_90 "
                   f"{row['coverage_90']:.2f}")
  return "\n".join(lines)


def main(argv=None):
  args = parse(argv)
  logging.set_verbosity(logging.WARNING)
  if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
    raise UserError(f"{args.out}: not a directory (--out)")
  result = evaluate_run(args.workdir, args.split, args.checkpoint, args.out, args.coordinate,
                        args.clip)
  paths = result["paths"]
  with open(paths["summary.md"]) as f:
    print(f.read())
  summary = result["uncertainty"]
  if summary is None:
    print("uncertainty: not available (the run has no uncertainty head)")
  else:
    print(f"uncertainty (calibrated): coverage {summary['coverage_50']:.2f} of the 50 % and "
          f"{summary['coverage_90']:.2f} of the 90 % intervals, Spearman rho(scale, |error|) "
          f"{summary['rho_scale_error']:.2f}, MAE_angle {summary['MAE_confident_half']:.2f} deg "
          f"on the surer half of the frames vs {summary['MAE_all']:.2f} on all")
  if result.get("uncertainty_hard"):
    print(hard_summary(result["uncertainty_hard"]))
  print(f"report: {os.path.dirname(paths['summary.md'])} ({len(paths)} files)")


if __name__ == "__main__":
  cli.run(main)
