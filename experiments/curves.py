"""``python -m experiments.curves RUN [RUN ...] --out curves.png``: training runs' curves
side by side, from each workdir's ``metrics.jsonl``.

One panel for each run's training loss (its own objective: D3KE's weighted sum, CMS's
marker loss), then one for each validation metric the runs log: MAE_angle (deg), MPBLPE
(mm), the box IoU; dashed, a run's score for predicting the training mean where it logs
one (MAE_angle). A metric no run logs has no panel; a run that lacks one has no line in
it. Each run keeps one colour in every panel. Label runs with ``--labels`` (default: the
workdirs' names).
"""

import json
import math
import numbers
import os

import numpy as np
from matplotlib.figure import Figure

from d3ke_jax import cli
from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import save_png
from d3ke_jax.train import summaries

# (split, key, axis label): the panels, in order, each drawn when any run logs it
PANELS = (("train", "loss", "training loss"),
          ("validation", "mae_angle", "validation MAE_angle (deg)"),
          ("validation", "mpblpe", "validation MPBLPE (mm)"),
          ("validation", "box_iou", "validation box IoU"))
BASELINE = "_mean_baseline"
PLOTTED = {key for _, key, _ in PANELS} | {key + BASELINE for _, key, _ in PANELS}


def read_rows(run):
  """The rows of ``run``'s ``metrics.jsonl``, checked: each a JSON object with an integer
  ``step``, a ``split`` and numbers (or null) for the plotted scalars. Only an unfinished
  last line (a killed run's) is skipped; any other bad line is a ``UserError`` naming it."""
  path = os.path.join(run, summaries.METRICS)
  if not os.path.isdir(run):
    raise UserError(f"{run}: {'not a directory' if os.path.exists(run) else 'no such directory'}")
  if not os.path.isfile(path):
    raise UserError(f"{run}: no {summaries.METRICS} (not a training workdir)")
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except UnicodeDecodeError:
    raise UserError(f"{path}: not a text file") from None
  rows = []
  for number, line in enumerate(lines, 1):
    try:
      row = json.loads(line)
    except ValueError:
      if number == len(lines):
        continue  # a line a killed run left unfinished
      raise UserError(f"{path}:{number}: not a JSON line") from None
    problem = _problem(row)
    if problem:
      raise UserError(f"{path}:{number}: {problem}")
    rows.append(row)
  if not rows:
    raise UserError(f"{path}: no metrics logged yet")
  return rows


def _problem(row):
  if not isinstance(row, dict):
    return "not a JSON object"
  if not isinstance(row.get("step"), int) or isinstance(row.get("step"), bool):
    return "no integer 'step'"
  if not isinstance(row.get("split"), str):
    return "no 'split'"
  for key in PLOTTED & set(row):
    value = row[key]
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
      return f"{key!r} is {value!r}, not a number"
  return None


def curves(rows, split, key):
  """(steps, values) of one scalar of one split, in step order (null values as NaN)."""
  points = sorted((row["step"], math.nan if row[key] is None else row[key]) for row in rows
                  if row["split"] == split and key in row)
  return np.array([p[0] for p in points]), np.array([p[1] for p in points], float)


def plot(runs, path):
  """Writes the figure of ``runs`` ({label: rows}, in order) to ``path`` (PNG, atomically)."""
  panels = [(split, key, title) for split, key, title in PANELS
            if any(len(curves(rows, split, key)[0]) for rows in runs.values())]
  if not panels:
    raise UserError("no run logs any of: " + ", ".join(f"{split} {key}"
                                                      for split, key, _ in PANELS))
  figure = Figure(figsize=(4.5 * len(panels), 3.5), layout="constrained")
  for i, (split, key, title) in enumerate(panels):
    axes = figure.add_subplot(1, len(panels), i + 1)
    for colour, (label, rows) in enumerate(runs.items()):
      steps, values = curves(rows, split, key)
      if len(steps):
        axes.plot(steps, values, color=f"C{colour}", label=label, markersize=3,
                  marker="o" if split == "validation" or len(steps) == 1 else None)
      baseline = curves(rows, split, key + BASELINE)[1]
      if len(baseline):  # the same metric for predicting the training mean
        axes.axhline(baseline[-1], color=f"C{colour}", linestyle="--", linewidth=1,
                     label=f"{label}: predicting the mean")
    axes.set_xlabel("step")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if i == 0 or any(line.get_linestyle() == "--" for line in axes.get_lines()):
      axes.legend(fontsize="small")
  return save_png(figure, path)


def main(argv=None):
  parser = cli.ArgumentParser(
      prog="experiments.curves",
      description="Draws training runs' curves side by side from their metrics.jsonl: "
      "training loss, validation MAE_angle (dashed: predicting the mean), MPBLPE and box "
      "IoU, one panel each where any run logs it.")
  parser.add_argument("runs", nargs="+", metavar="RUN", help="training workdirs")
  parser.add_argument("--out", required=True, help="the PNG to write")
  parser.add_argument("--labels", nargs="+", help="one label per run (default: their names)")
  args = parser.parse_args(argv)
  paths = [os.path.realpath(run) for run in args.runs]
  for i, path in enumerate(paths):
    if path in paths[:i]:
      raise UserError(f"{args.runs[i]}: the same run given twice")
  if args.labels is not None and len(args.labels) != len(args.runs):
    raise UserError(f"--labels: {len(args.labels)} labels for {len(args.runs)} runs")
  labels = args.labels or [os.path.basename(path) for path in paths]
  if not all(labels) or len(set(labels)) != len(labels):
    raise UserError(f"runs need distinct, non-empty labels, got {labels}"
                    + ("" if args.labels else ": give them with --labels"))
  if not args.out.lower().endswith(".png"):
    raise UserError(f"{args.out}: --out must be a .png file")
  if os.path.isdir(args.out):
    raise UserError(f"{args.out}: is a directory (--out)")
  parent = os.path.dirname(os.path.abspath(args.out))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UserError(f"{parent}: not a directory (--out {args.out})")
  runs = {label: read_rows(run) for label, run in zip(labels, args.runs)}
  print(f"curves: {plot(runs, args.out)}")


if __name__ == "__main__":
  cli.run(main)
