"""Ablations: ``python -m experiments.ablate --config CONFIG --workdir DIR --sweep lambdas``.

Trains every variant of the sweep (``lambdas``: the config's loss weights, each term switched
off, each term scaled ten-fold, angle-only and pose-only objectives) into
``DIR/<variant>``, evaluates each one's best-on-validation checkpoint on ``--split`` (default
test) and writes ``DIR/<sweep>_<split>.md`` and ``.csv``.
Config overrides apply to every variant (e.g. ``--config.epochs=2``); re-running resumes.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from d3ke_jax.train import ablation
from d3ke_jax.train.runs import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for the variants and the table")
_SWEEP = flags.DEFINE_enum("sweep", "lambdas", sorted(ablation.SWEEPS), "what to vary")
_VARIANTS = flags.DEFINE_list("variants", None, "only these variants (default: all)")
_SPLIT = flags.DEFINE_enum("split", "test", ["validation", "test"],
                           "split the variants are compared on (checkpoints: best on validation)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  try:
    ablation.run_sweep(_CONFIG.value, _WORKDIR.value, _SWEEP.value, _VARIANTS.value,
                       _SPLIT.value)
  except ConfigError as e:
    raise app.UsageError(f"bad config: {e}") from None
  with open(ablation.table_path(_WORKDIR.value, _SWEEP.value, _SPLIT.value) + ".md") as f:
    print(f.read())


if __name__ == "__main__":
  app.run(main)
