"""``python -m experiments.ik`` as a user runs it."""

import numpy as np
import pytest

from d3ke_jax import cli
from d3ke_jax.io import MarkerTrajectories, read_mot, write_trc
from d3ke_jax.skeleton import default_model_path, forward_kinematics, load_osim
from d3ke_jax.skeleton.sampling import smooth_motion
from experiments import ik as ik_cli


def _write_trial(path, model, names, scale=1.0, frames=20, rate=30.0):
  coords = smooth_motion(model, frames, np.random.default_rng(0), limit=0.3)
  markers = np.asarray(forward_kinematics(model, coords).markers)
  positions = np.stack([markers[:, model.marker_index(n)] if n in model.marker_names
                        else markers[:, 0] + 0.1 for n in names], 1) * scale
  write_trc(path, MarkerTrajectories(tuple(names), np.arange(frames) / 30, positions, rate),
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


def _error(argv, capsys):
  """The one line a user sees on stderr for a refused command, which exits with 2."""
  with pytest.raises(SystemExit) as exit_info:
    cli.run(ik_cli.main, argv, prog="experiments.ik")
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err
  return err.strip().removeprefix("experiments.ik: ")


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
  """A short trial's .trc, and files a user might pass by mistake."""
  directory = tmp_path_factory.mktemp("trial")
  model = load_osim()
  _write_trial(directory / "trial.trc", model, list(model.marker_names), frames=4)
  _write_trial(directory / "other.trc", model, ["A", "B", "C"], frames=4)
  _write_trial(directory / "mm.trc", model, list(model.marker_names), scale=1000.0, frames=4)
  _write_trial(directory / "rate.trc", model, list(model.marker_names), frames=4, rate=0.0)
  (directory / "text.npy").write_text("1 1 1")
  np.save(directory / "row.npy", np.ones(3))
  for name, value in (("nan", np.nan), ("zero", 0.0), ("inf", np.inf), ("negative", -1.0),
                      ("tiny", 1e-3), ("huge", 1e3), ("complex", 1 + 0j)):
    scales = np.ones((model.num_bodies, 3), np.asarray(value).dtype)
    scales[1:, 1] = value  # every body but the pelvis, along y
    np.save(directory / f"{name}.npy", scales)
  (directory / "broken.osim").write_text("<OpenSimDocument><Model>")
  return directory


BAD_SCALES = "scale factors must be real numbers from 0.01 to 100; {body} y is "


@pytest.mark.parametrize("args, message", [
    (["--out", "{d}/trial.trc"], "--out {d}/trial.trc: is the input {d}/trial.trc; choose "
     "another file name"),
    (["--out", "{d}"], "--out {d}: a directory, not a .mot file name"),
    (["--out", ""], "--out '': give a file name (.mot)"),
    (["--out", "{d}/trial.trc/o.mot"], "{d}/trial.trc: not a directory (--out)"),
    (["--chunk", "0"], "argument --chunk: '0' is not an integer > 0"),
    (["--chunk", "-1"], "argument --chunk: '-1' is not an integer > 0"),
    (["--smoothing", "-1"], "argument --smoothing: '-1' is not a number >= 0"),
    (["--scales", "{d}/text.npy"], "{d}/text.npy: not a NumPy .npy array file (--scales)"),
    (["--scales", "{d}/row.npy"], "{d}/row.npy: scales must be numbers of shape (32, 3), one "
     "row per body of {model}; got float64 (3,)"),
    (["--scales", "{d}/nan.npy"], "{d}/nan.npy: " + BAD_SCALES + "nan (31 bad values)"),
    (["--scales", "{d}/zero.npy"], "{d}/zero.npy: " + BAD_SCALES + "0.0 (31 bad values)"),
    (["--scales", "{d}/inf.npy"], "{d}/inf.npy: " + BAD_SCALES + "inf (31 bad values)"),
    (["--scales", "{d}/negative.npy"], "{d}/negative.npy: " + BAD_SCALES + "-1.0 (31 bad "
     "values)"),
    (["--scales", "{d}/tiny.npy"], "{d}/tiny.npy: " + BAD_SCALES + "0.001 (31 bad values)"),
    (["--scales", "{d}/huge.npy"], "{d}/huge.npy: " + BAD_SCALES + "1000.0 (31 bad values)"),
    (["--scales", "{d}/complex.npy"], "{d}/complex.npy: scale factors must be real numbers "
     "from 0.01 to 100; pelvis x is (1+0j) (96 bad values)"),
    (["--scales", "{d}/none.npy"], "{d}/none.npy: no such file (--scales)"),
    (["--model", "{d}/none.osim"], "{d}/none.osim: no such OpenSim model file"),
    (["--trc", "{d}/none.trc"], "{d}/none.trc: no such .trc file"),
    (["--trc", "{d}/other.trc"], "{d}/other.trc: only 0 of its markers are in the model "
     "{model} (need at least 3); file markers: A, B, C"),
    (["--trc", "{d}/mm.trc"], "{d}/mm.trc: markers spread 554.9 m about their centre, the "
     "model 0.552 m; the file's Units header is probably wrong"),
    (["--trc", "{d}/rate.trc"], "{d}/rate.trc: DataRate 0 is not a positive number of frames "
     "per second (the temporal prior needs it; --smoothing 0 solves without it)"),
])
def test_user_errors_are_one_line(trial, capsys, args, message):
  argv = {"--trc": str(trial / "trial.trc"), "--out": str(trial / "out.mot")}
  argv.update(zip(args[::2], (a.format(d=trial) for a in args[1::2])))
  expected = message.format(d=trial, model=default_model_path(),
                            body=load_osim().body_names[1])
  assert _error([x for kv in argv.items() for x in kv], capsys) == expected
  assert not (trial / "out.mot").exists()


def test_broken_model_is_one_line(trial, capsys):
  message = _error(["--trc", str(trial / "trial.trc"), "--out", str(trial / "o.mot"),
                    "--model", str(trial / "broken.osim")], capsys)
  assert message.startswith(f"{trial}/broken.osim: not a well-formed XML file")
