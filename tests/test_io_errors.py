""".trc and .mot/.sto readers: real files are accepted; bad ones raise one error that names
the file, the line and the cell."""

import math

import numpy as np
import pytest

from d3ke_jax.io import MotError, TrcError, read_mot, read_trc

TRC_HEADER = ("PathFileType\t4\t(X/Y/Z)\tx.trc\n"
              "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\t"
              "OrigDataStartFrame\tOrigNumFrames\n"
              "100\t100\t3\t2\tmm\t100\t1\t3\n"
              "Frame#\tTime\tA\t\t\tB\t\t\t\n"
              "\t\tX1\tY1\tZ1\tX2\tY2\tZ2\t\n\n")
ROW = "1\t0\t1\t2\t3\t4\t5\t6\t\n"
ROW2 = "2\t0.01\t1\t2\t3\t4\t5\t6\t\n"


def _read_trc(tmp_path, text):
  path = tmp_path / "m.trc"
  path.write_bytes(text if isinstance(text, bytes) else text.encode())
  return read_trc(path), path


def test_trc_missing_markers_empty_nan_and_short_rows(tmp_path):
  """Empty cells, ``nan`` (OpenSim's own writer), a row that stops after a tab, a partly
  given marker: all missing; no trailing tab and CRLF line ends are fine too."""
  data, _ = _read_trc(tmp_path, TRC_HEADER + ROW + "2\t0.01\t1\t2\t3\tnan\tnan\tnan\t\n"
                      "3\t0.02\t1\t2\t3\t\r\n4\t0.03\t\t2\t3\t4\t5\t6")
  np.testing.assert_allclose(data.positions[:, 0], [[1e-3, 2e-3, 3e-3]] * 3 + [[np.nan] * 3])
  np.testing.assert_allclose(data.positions[:, 1], [[4e-3, 5e-3, 6e-3]] + [[np.nan] * 3] * 2
                             + [[4e-3, 5e-3, 6e-3]])
  np.testing.assert_allclose(data.time, [0, 0.01, 0.02, 0.03])


def test_trc_written_by_opensim_is_read(tmp_path):
  opensim = pytest.importorskip("opensim")
  table = opensim.TimeSeriesTableVec3()
  table.setColumnLabels(["A", "B"])
  for i in range(3):
    row = opensim.RowVectorVec3(2, opensim.Vec3(1, 2, 3))
    if i == 1:
      row[1] = opensim.Vec3(math.nan, math.nan, math.nan)
    table.appendRow(i / 100, row)
  table.addTableMetaDataString("DataRate", "100")
  table.addTableMetaDataString("Units", "mm")
  opensim.TRCFileAdapter.write(table, str(tmp_path / "o.trc"))
  data = read_trc(tmp_path / "o.trc")
  assert data.names == ("A", "B") and np.isnan(data.positions[1, 1]).all()
  np.testing.assert_allclose(data.positions[[0, 2]], np.full((2, 2, 3), [1e-3, 2e-3, 3e-3]))


def test_trc_latin1_marker_names(tmp_path):
  data, _ = _read_trc(tmp_path, (TRC_HEADER.replace("\tA\t", "\tMüller\t") + ROW)
                      .encode("latin-1"))
  assert data.names == ("Müller", "B")


@pytest.mark.parametrize("body, message", [
    (ROW.replace("\t2\t", "\tabc\t"), r"line 7, column 4 \(A Y\): 'abc' is not a number$"),
    (ROW.replace("\t2\t", "\t12,5\t"), r"line 7, column 4 \(A Y\): '12,5' is not a number "
     r"\(the decimal separator must be a point\)"),
    (ROW.replace("\t5\t", "\tinf\t"), r"line 7, column 7 \(B Y\): 'inf' is not a finite"),
    (ROW + ROW2[:-6], "line 8 is cut short"),  # the file ends inside a number
    (ROW + "2\t0.01\t1\t2\t3\t4\n", "line 8 has 6 cells, expected 8"),
    (ROW + "2\t0.01\t1\t2\t3\t4\t5\t6\t7\n", "line 8 has 9 cells, more than the 8"),
    (ROW + ROW2 + "3\t0.005\t1\t2\t3\t4\t5\t6\n",
     r"line 9: time 0.005 does not follow 0.01 of line 8 \(times must increase\)"),
    (ROW + "2\t\t1\t2\t3\t4\t5\t6\n", "line 8 has no time value"),
    ("1\t0\t\t\t\t\t\t\t\n2\t0.01\t\n", "no marker values"),
    ("1 0 1 2 3 4 5 6\n", "line 7 is separated by spaces; .trc fields must be separated by "
     "tabs"),
])
def test_trc_bad_data_names_file_and_line(tmp_path, body, message):
  with pytest.raises(TrcError, match=message) as error:
    _read_trc(tmp_path, TRC_HEADER + body)
  assert str(error.value).startswith(str(tmp_path / "m.trc") + ": ")


@pytest.mark.parametrize("text, message", [
    (TRC_HEADER.replace("\tB\t", "\tA\t") + ROW, r"line 4 names marker 'A' twice \(columns 3 "
     r"and 6\)"),
    (TRC_HEADER.replace("\t", " ") + ROW, "line 2 is separated by spaces"),
    (bytes(range(256)), "not a text .trc file"),
])
def test_trc_bad_headers_and_binary(tmp_path, text, message):
  with pytest.raises(TrcError, match=message):
    _read_trc(tmp_path, text)


MOT = ("Coordinates\nversion=1\nnRows=3\nnColumns=3\ninDegrees=yes\nendheader\n"
       "time\thip\ttx\n0\t10\t0.5\n0.1\t20\t0.5\t\n0.2\t\t0.5\n")


def test_mot_reads_trailing_tabs_empty_cells_and_space_separated_files(tmp_path):
  (tmp_path / "a.mot").write_text(MOT)
  table = read_mot(tmp_path / "a.mot", rotational_names={"hip"})
  np.testing.assert_allclose(table.column("hip"), np.radians([10, 20, np.nan]))
  (tmp_path / "b.mot").write_text("name b\ndatacolumns 2\nendheader\ntime  hip\n0  1\n1  2\n")
  np.testing.assert_allclose(read_mot(tmp_path / "b.mot").column("hip"), [1, 2])


@pytest.mark.parametrize("old, new, message", [
    ("\t20\t", "\tx\t", r"line 9, column 2 \(hip\): 'x' is not a number"),
    ("\t20\t", "\t-inf\t", "'-inf' is not a finite number"),
    ("0.1\t20\t0.5\t\n", "0.1\t20\n", "line 9 has 2 cells but line 7 labels 3 columns"),
    ("0.1\t20\t0.5\t\n", "0.1\t20\t0.5\t1\n", "line 9 has 4 cells"),
    ("0.2\t\t0.5\n", "0.2\t\t0.", "line 10 is cut short"),
    ("nRows=3", "nRows=4", "the header says nRows=4 but there are 3 data rows"),
    ("nColumns=3", "nColumns=2", "the header says nColumns=2 but line 7 labels 3 columns"),
    ("\ttx\n", "\thip\n", r"line 7 labels column 'hip' twice \(columns 2 and 3\)"),
    ("0.2\t", "0.1\t", "line 10: time 0.1 does not follow 0.1 of line 9"),
])
def test_mot_bad_data_names_file_and_line(tmp_path, old, new, message):
  path = tmp_path / "bad.mot"
  path.write_text(MOT.replace(old, new, 1))
  with pytest.raises(MotError, match=message) as error:
    read_mot(path)
  assert str(error.value).startswith(f"{path}: ")


def test_mot_written_by_opensim_is_read(tmp_path):
  """Both of OpenSim's writers: STOFileAdapter (no nRows) and Storage (padded cells)."""
  opensim = pytest.importorskip("opensim")
  table = opensim.TimeSeriesTable()
  table.setColumnLabels(["hip", "tx"])
  for i in range(3):
    table.appendRow(i / 10, opensim.RowVector([10.0 * i, math.nan]))
  table.addTableMetaDataString("inDegrees", "yes")
  opensim.STOFileAdapter.write(table, str(tmp_path / "a.sto"))
  storage = opensim.Storage(str(tmp_path / "a.sto"))
  storage.printResult(storage, "b", str(tmp_path), -1, ".mot")
  for name in ("a.sto", "b.mot"):
    back = read_mot(tmp_path / name, rotational_names={"hip"})
    np.testing.assert_allclose(back.time, [0, 0.1, 0.2])
    np.testing.assert_allclose(back.values, [[0, np.nan], [np.radians(10), np.nan],
                                             [np.radians(20), np.nan]], atol=1e-12)


def test_mot_binary(tmp_path):
  (tmp_path / "b.mot").write_bytes(bytes(range(256)))
  with pytest.raises(MotError, match="not a text .mot/.sto file"):
    read_mot(tmp_path / "b.mot")
