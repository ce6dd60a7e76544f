"""``python -m experiments.ik`` as a user runs it."""

import numpy as np
import pytest

from d3ke_jax.io import MarkerTrajectories, read_mot, write_trc
from d3ke_jax.skeleton import forward_kinematics, load_osim
from d3ke_jax.skeleton.sampling import smooth_motion
from experiments import ik as ik_cli


def _write_trial(path, model, names, scale=1.0, frames=20):
  coords = smooth_motion(model, frames, np.random.default_rng(0), limit=0.3)
  markers = np.asarray(forward_kinematics(model, coords).markers)
  positions = np.stack([markers[:, model.marker_index(n)] if n in model.marker_names
                        else markers[:, 0] + 0.1 for n in names], 1) * scale
  write_trc(path, MarkerTrajectories(tuple(names), np.arange(frames) / 30, positions, 30.0),
            units="mm")
  return coords


def test_writes_a_mot_with_every_coordinate(tmp_path, capsys):
  model = load_osim()
  names = list(model.marker_names[:-1]) + ["EXTRA"]
  coords = _write_trial(tmp_path / "trial.trc", model, names)
  ik_cli.main(["--trc", str(tmp_path / "trial.trc"), "--out", str(tmp_path / "out.mot")])
  out = capsys.readouterr().out
  assert "ignored (not in the model): EXTRA" in out
  assert f"missing from the file: {model.marker_names[-1]}" in out
  assert "marker error: RMS median" in out
  table = read_mot(tmp_path / "out.mot", rotational_names=set(model.coordinate_names))
  assert table.names == model.coordinate_names
  hip = model.coordinate_index("hip_flexion_r")
  np.testing.assert_allclose(table.values[:, hip], coords[:, hip], atol=0.01)


def test_file_without_model_markers_is_refused(tmp_path):
  model = load_osim()
  _write_trial(tmp_path / "other.trc", model, ["A", "B", "C"])
  with pytest.raises(SystemExit, match="only 0 of its markers are in the model"):
    ik_cli.main(["--trc", str(tmp_path / "other.trc"), "--out", str(tmp_path / "o.mot")])


def test_wrong_units_are_refused(tmp_path):
  model = load_osim()
  _write_trial(tmp_path / "mm.trc", model, list(model.marker_names), scale=1000.0)
  with pytest.raises(SystemExit, match="Units header is probably wrong"):
    ik_cli.main(["--trc", str(tmp_path / "mm.trc"), "--out", str(tmp_path / "o.mot")])
