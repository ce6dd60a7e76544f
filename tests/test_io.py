"""OpenSim file formats: .trc and .mot round trips, OpenSim reading our files, bad input."""

import os

import numpy as np
import pytest

from d3ke_jax.io import MarkerTrajectories, read_mot, read_trc, write_mot, write_trc
from d3ke_jax.io.atomic import atomic_write
from d3ke_jax.io.mot import MotError
from d3ke_jax.io.trc import TrcError


def _trajectories(rng, frames=5, markers=4):
  positions = rng.normal(size=(frames, markers, 3))
  positions[1, 2] = np.nan  # a missing marker
  return MarkerTrajectories(names=tuple(f"M{i}" for i in range(markers)),
                            time=np.arange(frames) / 100.0, positions=positions, rate=100.0)


@pytest.mark.parametrize("units", ["mm", "m"])
def test_trc_round_trip_in_metres(tmp_path, units):
  data = _trajectories(np.random.default_rng(0))
  write_trc(tmp_path / "a.trc", data, units=units)
  back = read_trc(tmp_path / "a.trc")
  assert back.names == data.names and back.rate == 100.0
  np.testing.assert_allclose(back.positions, data.positions, atol=1e-6)
  assert np.isnan(back.positions[1, 2]).all()
  np.testing.assert_allclose(back.time, data.time)


@pytest.mark.parametrize("name, shown", [("line\nend", "line?end"), ("tab\there", "tab?here"),
                                         ("cr\r", "cr?")])
def test_trc_named_with_control_characters_reads_back(tmp_path, name, shown):
  """The header's file name shows them as ``?``, so that its lines stay lines."""
  data = _trajectories(np.random.default_rng(0))
  write_trc(tmp_path / f"{name}.trc", data)
  np.testing.assert_allclose(read_trc(tmp_path / f"{name}.trc").positions, data.positions,
                             atol=1e-6)
  with open(tmp_path / f"{name}.trc") as f:
    assert f.readline() == f"PathFileType\t4\t(X/Y/Z)\t{shown}.trc\n"


def test_opensim_reads_our_trc_with_the_last_marker_missing(tmp_path):
  import opensim  # pylint: disable=g-import-not-at-top
  data = _trajectories(np.random.default_rng(1))
  data.positions[3, -1] = np.nan  # the last cells of a row
  write_trc(tmp_path / "a.trc", data, units="m")
  table = opensim.TimeSeriesTableVec3(str(tmp_path / "a.trc"))
  assert table.getNumRows() == 5 and table.getNumColumns() == 4
  last = table.getDependentColumn("M3")
  assert np.isnan(last[3].get(0)) and last[2].get(0) == pytest.approx(data.positions[2, 3, 0])


def test_trc_select_fills_absent_markers_with_nan():
  data = _trajectories(np.random.default_rng(1))
  picked = data.select(["M1", "nope"])
  np.testing.assert_array_equal(picked[:, 0], data.positions[:, 1])
  assert np.isnan(picked[:, 1]).all()


@pytest.mark.parametrize("text, message", [
    ("hello\n", "not a .trc file"),
    ("PathFileType\t4\t(X/Y/Z)\tx.trc\nDataRate\tNumMarkers\tUnits\n30\t1\tinches\n"
     "Frame#\tTime\tA\n\t\tX1\tY1\tZ1\n\n1\t0\t1\t2\t3\n", "unknown Units 'inches'"),
])
def test_trc_errors_name_the_file(tmp_path, text, message):
  path = tmp_path / "bad.trc"
  path.write_text(text)
  with pytest.raises(TrcError, match=message) as error:
    read_trc(path)
  assert str(path) in str(error.value)


def test_missing_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="no such .trc"):
    read_trc(tmp_path / "none.trc")
  with pytest.raises(FileNotFoundError, match="no such .mot"):
    read_mot(tmp_path / "none.mot")


def test_mot_round_trip_and_opensim_reads_it(tmp_path):
  opensim = pytest.importorskip("opensim")
  rng = np.random.default_rng(2)
  values = rng.normal(size=(6, 3))
  path = tmp_path / "q.mot"
  write_mot(path, np.arange(6) / 30, values, ["hip", "knee", "tx"], [True, True, False])
  back = read_mot(path, rotational_names={"hip", "knee"})
  np.testing.assert_allclose(back.values, values, atol=1e-7)
  storage = opensim.Storage(str(path))
  assert storage.isInDegrees() and storage.getSize() == 6
  labels = storage.getColumnLabels()
  assert [labels.get(i) for i in range(labels.getSize())] == ["time", "hip", "knee", "tx"]
  column = opensim.ArrayDouble()
  storage.getDataColumn("hip", column)
  np.testing.assert_allclose([column.get(i) for i in range(6)], np.degrees(values[:, 0]),
                             atol=1e-6)


def test_mot_without_endheader_is_rejected(tmp_path):
  path = tmp_path / "bad.mot"
  path.write_text("time\tx\n0\t1\n")
  with pytest.raises(MotError, match="endheader"):
    read_mot(path)


def test_written_files_get_the_usual_permissions(tmp_path):
  with atomic_write(tmp_path / "out.txt") as f:
    f.write("done")
  mask = os.umask(0)
  os.umask(mask)
  assert os.stat(tmp_path / "out.txt").st_mode & 0o777 == 0o666 & ~mask


def test_interrupted_write_leaves_no_file(tmp_path):
  path = tmp_path / "out.txt"
  with pytest.raises(RuntimeError):
    with atomic_write(path) as f:
      f.write("half")
      raise RuntimeError("interrupted")
  assert list(tmp_path.iterdir()) == []
