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


@pytest.fixture
def no_reference(monkeypatch, tmp_path):
  """``../shared/reference`` absent: its model path points at nothing."""
  missing = str(tmp_path / "reference" / "full_body_wo_hands.osim")
  monkeypatch.setattr(bench, "REFERENCE_MODEL", missing)
  monkeypatch.setattr(bench_fk, "REFERENCE_MODEL", missing)
  return missing


def test_bench_fk_says_when_the_reference_model_is_skipped(capsys, no_reference):
  with pytest.raises(SystemExit) as exit_:
    cli.run(bench.main, ["fk", "--batches", "2", "--repeats", "1", "--opensim-poses", "2"],
            prog="cmd")
  assert exit_.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith(f"note: {no_reference} not found: the paper's full-body model skipped; "
                        "the project's model alone (--models PATH ... measures others)\n")
  assert [line.split("|")[1].strip() for line in out.splitlines()
          if line.startswith("| ")][1:] == ["d3ke_full_body"]


class _Loaded(Exception):
  """Stops ``bench ik`` at its first step after the note: loading the model."""


def test_bench_ik_says_when_the_reference_model_is_skipped(capsys, monkeypatch, no_reference):
  loaded = []

  def load_osim(path):
    loaded.append(path)
    raise _Loaded

  monkeypatch.setattr(bench, "load_osim", load_osim)
  with pytest.raises(_Loaded):
    bench.main(["ik", "--trials", "gait"])
  assert loaded == [default_model_path()]
  assert capsys.readouterr().out == (
      f"note: {no_reference} not found: the paper's full-body model skipped; the project's "
      "model instead (--model PATH.osim measures another)\n\n")
