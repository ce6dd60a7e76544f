"""``experiments.bench_fk``: its plain formulation (the baseline of ``bench fk``) computes
the same markers as ``forward_kinematics``, and the command prints its table."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax import cli
from d3ke_jax.skeleton import default_model_path, forward_kinematics, load_osim
from d3ke_jax.skeleton.sampling import random_poses
from experiments import bench, bench_fk

MODELS = [default_model_path(), bench.REFERENCE_MODEL]


@pytest.mark.parametrize("path", MODELS, ids=["project", "reference"])
def test_plain_formulation_matches_forward_kinematics(path):
  if not os.path.exists(path):
    pytest.skip(f"{path} not found (../shared/reference is beside the checkout in CI)")
  model = load_osim(path)
  coords = jnp.asarray(random_poses(model, 6, np.random.default_rng(0)), jnp.float32)
  coords = coords.reshape(2, 3, -1)
  expected = forward_kinematics(model, coords).markers
  plain = bench_fk.matrix_markers(model, coords)
  assert plain.shape == expected.shape == (2, 3, model.num_markers, 3)
  # float32 rounding of two orders of composition over ~1 m chains: measured 6e-7 m.
  np.testing.assert_allclose(plain, expected, atol=5e-6)
  assert np.max(np.abs(plain - forward_kinematics(model, coords + 0.1).markers)) > 1e-3


def test_bench_fk_prints_its_table(capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.run(bench.main, ["fk", "--models", default_model_path(), "--batches", "2",
                         "--repeats", "1", "--opensim-poses", "2"], prog="cmd")
  assert exit_.value.code == 0
  rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| d3ke")]
  assert len(rows) == 1
  cells = [c.strip() for c in rows[0].strip("|").split("|")]
  assert cells[1] == "2" and all(float(c.replace(",", "")) > 0 for c in cells[2:4] + cells[5:7])
