"""``python -m experiments.curves --out curves.png RUN [RUN ...]``: training runs' curves
side by side, from each workdir's ``metrics.jsonl``.

One panel for each run's training loss (its own objective: D3KE's weighted sum, CMS's
marker loss), then one for each validation metric the runs log: MAE_angle (deg), MPBLPE
(mm), the box IoU; dashed, a run's score for predicting the training mean where it logs
one (MAE_angle). A metric no run logs has no panel; a run that lacks one has no line in
it. Label runs with ``--labels`` (default: the workdirs' names).
"""

import os

import numpy as np
from matplotlib.figure import Figure

from d3ke_jax import cli
from d3ke_jax.errors import UserError
from d3ke_jax.train import report, summaries

# (split, key, axis label): the panels, in order, each drawn when any run logs it
PANELS = (("train", "loss", "training loss"),
          ("validation", "mae_angle", "validation MAE_angle (deg)"),
          ("validation", "mpblpe", "validation MPBLPE (mm)"),
          ("validation", "box_iou", "validation box IoU"))
BASELINE = "_mean_baseline"


def curves(rows, split, key):
  """(steps, values) of one scalar of one split, in step order."""
  points = sorted((row["step"], row[key]) for row in rows
                  if row.get("split") == split and key in row)
  return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def plot(runs, labels, path):
  """Writes the figure of ``runs`` ({label: rows}) to ``path`` (PNG, atomically)."""
  panels = [(split, key, title) for split, key, title in PANELS
            if any(len(curves(runs[label], split, key)[0]) for label in labels)]
  figure = Figure(figsize=(4.5 * len(panels), 3.5), layout="constrained")
  for i, (split, key, title) in enumerate(panels):
    axes = figure.add_subplot(1, len(panels), i + 1)
    for label in labels:
      steps, values = curves(runs[label], split, key)
      if len(steps):
        line, = axes.plot(steps, values, marker="o" if split == "validation" else None,
                          markersize=3, label=label)
        baseline = curves(runs[label], split, key + BASELINE)[1]
        if len(baseline):  # the same metric for predicting the training mean
          axes.axhline(baseline[-1], color=line.get_color(), linestyle="--", linewidth=1,
                       label=f"{label}: predicting the mean")
          axes.legend(fontsize="small")
    axes.set_xlabel("step")
    axes.set_title(title)
    axes.grid(alpha=0.3)
  figure.axes[0].legend(fontsize="small")
  return report.save_png(figure, path)


def main(argv=None):
  parser = cli.ArgumentParser(prog="experiments.curves", description=__doc__.split("\n")[0])
  parser.add_argument("runs", nargs="+", metavar="RUN", help="training workdirs")
  parser.add_argument("--out", required=True, help="the PNG to write")
  parser.add_argument("--labels", nargs="+", help="one label per run (default: their names)")
  args = parser.parse_args(argv)
  labels = args.labels or [os.path.basename(os.path.normpath(run)) for run in args.runs]
  if len(labels) != len(args.runs):
    raise UserError(f"--labels: {len(labels)} labels for {len(args.runs)} runs")
  if len(set(labels)) != len(labels):
    raise UserError(f"--labels: runs need distinct labels, got {' '.join(labels)}")
  if not args.out.lower().endswith(".png"):
    raise UserError(f"{args.out}: --out must be a .png file")
  if os.path.isdir(args.out):
    raise UserError(f"{args.out}: is a directory (--out)")
  runs = {}
  for label, run in zip(labels, args.runs):
    if not os.path.isfile(os.path.join(run, summaries.METRICS)):
      raise UserError(f"{run}: no {summaries.METRICS} (not a training workdir)")
    runs[label] = summaries.read_metrics(run)
    if not runs[label]:
      raise UserError(f"{os.path.join(run, summaries.METRICS)}: no metrics logged yet")
  print(f"curves: {plot(runs, labels, args.out)}")


if __name__ == "__main__":
  cli.run(main)
