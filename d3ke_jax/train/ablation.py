"""Ablations: train variants of one config and compare them in one table."""

import copy
import os
import time

from d3ke_jax import runs
from d3ke_jax.train import evaluation, report, trainer
from d3ke_jax.train.losses import PAPER_WEIGHTS

COLUMNS = ("MAE_angle_deg", "SD_angle_deg", "MPBLPE_mm", "MAE_body_mm", "RMSE_body")


def lambda_variants(loss, scale=10.0):
  """{name: loss config}: the config's weights; each term switched off; each term scaled
  by ``scale``; the angle-only objective; the pose-only objective (joints and markers)."""
  weights = {term: loss[f"lambda_{term}"] for term in PAPER_WEIGHTS}
  variants = {"config": dict(weights)}
  for term in PAPER_WEIGHTS:
    variants[f"no_{term}"] = dict(weights, **{term: 0.0})
  for term in PAPER_WEIGHTS:
    variants[f"{term}_x{scale:g}"] = dict(weights, **{term: weights[term] * scale})
  variants["angle_only"] = {term: weights[term] if term == "angle" else 0.0
                            for term in PAPER_WEIGHTS}
  variants["pose_only"] = {term: weights[term] if term in ("joint", "marker") else 0.0
                           for term in PAPER_WEIGHTS}
  return {name: {f"lambda_{k}": float(v) for k, v in w.items()} for name, w in variants.items()}


SWEEPS = {"lambdas": lambda_variants}


def table_path(workdir, sweep, split):
  """Path (without .csv / .md) of a sweep's table: the split its metrics are on is named."""
  return os.path.join(workdir, f"{sweep}_{split}")


def run_sweep(config, workdir, sweep="lambdas", variants=None, split="test"):
  """Trains every variant of ``sweep`` into ``workdir/<variant>`` (resuming finished or
  interrupted ones), takes each one's checkpoint selected on validation (``best/``),
  evaluates it on ``split`` (by default the test split, not the one it was selected on) and
  writes ``table_path(workdir, sweep, split)`` .csv and .md; returns the table's rows."""
  if sweep not in SWEEPS:
    raise runs.ConfigError(f"sweep {sweep!r}: unknown (choose from {sorted(SWEEPS)})")
  trainer.check_config(config)
  losses = SWEEPS[sweep](config.loss)
  unknown = sorted(set(variants or ()) - set(losses))
  if unknown:
    raise runs.ConfigError(f"variants {unknown}: unknown (choose from {sorted(losses)})")
  rows = []
  for name in variants or losses:
    variant = copy.deepcopy(config)
    with variant.unlocked():
      variant.loss = losses[name]
    start = time.perf_counter()
    print(f"--- {sweep}: {name} {losses[name]}")
    trainer.train_and_evaluate(variant, os.path.join(workdir, name))
    seconds = time.perf_counter() - start
    result = evaluation.evaluate_run(os.path.join(workdir, name), split, checkpoint="best")
    rows.append({"variant": name, **losses[name],
                 **{column: result[column] for column in COLUMNS},
                 "train_minutes": seconds / 60})  # this invocation's: short if already trained
  path = table_path(workdir, sweep, split)
  report.write_table(os.path.dirname(path), os.path.basename(path), rows,
                     title=f"{sweep} sweep: metrics on the {split} split, each variant's "
                     "checkpoint selected on the validation split")
  return rows
