"""OpenSim / Motion Analysis ``.trc`` marker trajectory files."""

import dataclasses
import os
from typing import Tuple

import numpy as np

from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import atomic_write
from d3ke_jax.io.text import (check_times, printable, read_lines, space_separated,
                              to_numbers, trimmed)

_UNITS = {"m": 1.0, "mm": 1e-3, "cm": 1e-2}


class TrcError(UserError, ValueError):
  """A .trc file that cannot be read."""


@dataclasses.dataclass(frozen=True)
class MarkerTrajectories:
  """Marker positions over time, in metres; NaN where a marker is missing."""
  names: Tuple[str, ...]
  time: np.ndarray  # (T,)
  positions: np.ndarray  # (T, M, 3)
  rate: float

  def select(self, names):
    """(T, len(names), 3) positions of the named markers, NaN for names not in the file."""
    out = np.full((len(self.time), len(names), 3), np.nan)
    for k, name in enumerate(names):
      if name in self.names:
        out[:, k] = self.positions[:, self.names.index(name)]
    return out


def read_trc(path):
  """Reads a .trc file; positions are converted to metres from the file's ``Units``.

  The format as OpenSim reads it: fields are separated by tabs (a file separated by spaces
  is refused, saying so); an empty or ``nan`` cell is a missing value, and a marker missing
  any coordinate is missing (NaN) as a whole. A row may stop early after an empty cell
  (a tab) when its last markers are missing. Anything else raises TrcError naming the file
  and line: a cell that is not a finite number (``inf`` included), a row with more or
  fewer cells, a last row cut short, a repeated marker name, times that do not increase,
  data without a single marker value.
  """
  path = os.fspath(path)
  lines, complete = read_lines(path, TrcError, ".trc")
  if not lines or not lines[0].startswith("PathFileType"):
    raise TrcError(f"{path}: not a .trc file (the first line must start with PathFileType)")
  if len(lines) < 5:
    raise TrcError(f"{path}: the header ends at line {len(lines)}; a .trc header has 5 lines")
  for number in (2, 3, 4):
    _check_tabs(path, lines, number)
  keys, values = ([c.strip() for c in line.split("\t") if c.strip()] for line in lines[1:3])
  if len(keys) != len(values):
    raise TrcError(f"{path}: line 2 names {len(keys)} header fields but line 3 has "
                   f"{len(values)} values")
  header = dict(zip(keys, values))
  units = header.get("Units", "")
  if units not in _UNITS:
    raise TrcError(f"{path}: unknown Units {units!r} (expected one of {sorted(_UNITS)})")
  try:
    rate = float(header.get("DataRate", "nan"))
    num_markers = int(header["NumMarkers"])
  except (KeyError, ValueError) as e:
    raise TrcError(f"{path}: malformed header line 3 ({e})") from None
  names, columns = [], {}
  for column, name in enumerate(lines[3].split("\t")[2:], start=3):
    name = name.strip()
    if name in columns:
      raise TrcError(f"{path}: line 4 names marker {name!r} twice (columns {columns[name]} "
                     f"and {column})")
    if name:
      names.append(name)
      columns[name] = column
  if len(names) != num_markers:
    raise TrcError(f"{path}: header says {num_markers} markers but names {len(names)}")
  rows, numbers = _data_rows(path, lines, complete, 2 + 3 * num_markers)
  if not rows:
    raise TrcError(f"{path}: no frames")
  label = lambda c: ("Frame#", "Time", *(f"{n} {a}" for n in names for a in "XYZ"))[c]
  error = lambda message: TrcError(f"{path}: {message}")
  data = to_numbers(rows, numbers, label, error)
  time = data[:, 1]
  check_times(time, numbers, error)
  positions = data[:, 2:].reshape(len(rows), num_markers, 3) * _UNITS[units]
  positions[np.isnan(positions).any(-1)] = np.nan
  if np.isnan(positions).all():
    raise TrcError(f"{path}: no marker values (every marker cell of its {len(rows)} rows "
                   "is empty)")
  return MarkerTrajectories(names=tuple(names), time=time, positions=positions, rate=rate)


def _check_tabs(path, lines, number):
  if space_separated(lines[number - 1]):
    raise TrcError(f"{path}: line {number} is separated by spaces; .trc fields must be "
                   "separated by tabs")


def _data_rows(path, lines, complete, width):
  """Cell texts of the data rows (line 6 on, blank lines skipped), padded to ``width``,
  and their line numbers."""
  rows, numbers, previous = [], [], None
  expected = f"Frame#, Time and X, Y, Z of {(width - 2) // 3} markers"
  for number, line in enumerate(lines[5:], start=6):
    if not line.strip():
      continue
    _check_tabs(path, lines, number)
    cells = line.split("\t")
    if number == len(lines) and not complete and previous and len(cells) < previous:
      raise TrcError(f"{path}: line {number} is cut short (the file ends in the middle of it)")
    previous = len(cells)
    cells = trimmed(cells, width)
    if len(cells) > width:
      raise TrcError(f"{path}: line {number} has {len(cells)} cells, more than the {width} "
                     f"of {expected}")
    if len(cells) < width and cells[-1].strip():
      raise TrcError(f"{path}: line {number} has {len(cells)} cells, expected {width} "
                     f"({expected})")
    rows.append(cells + [""] * (width - len(cells)))
    numbers.append(number)
  return rows, numbers


def write_trc(path, trajectories: MarkerTrajectories, units="mm", note=None):
  """Writes marker trajectories as a .trc file (atomically); missing values are written
  ``NaN`` (OpenSim's reader drops empty cells at the end of a row and then refuses it).
  The header names the file, then ``note`` if given (the first line's last field: OpenSim
  keeps that line as its ``header`` metadata and wants exactly its 8 keys on the next), with
  ``?`` for characters that cannot be printed (a line end, a tab)."""
  scale = 1.0 / _UNITS[units]
  names, time = trajectories.names, trajectories.time
  num_frames, num_markers = len(time), len(names)
  fields = [os.path.basename(os.fspath(path))] + ([note] if note else [])
  with atomic_write(path) as f:
    f.write("PathFileType\t4\t(X/Y/Z)\t" + "\t".join(map(printable, fields)) + "\n")
    f.write("DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\t"
            "OrigDataStartFrame\tOrigNumFrames\n")
    f.write(f"{trajectories.rate:g}\t{trajectories.rate:g}\t{num_frames}\t{num_markers}\t"
            f"{units}\t{trajectories.rate:g}\t1\t{num_frames}\n")
    f.write("Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t\n")
    f.write("\t\t" + "\t".join(f"X{k}\tY{k}\tZ{k}" for k in range(1, num_markers + 1)) + "\n\n")
    for t in range(num_frames):
      values = trajectories.positions[t].reshape(-1) * scale
      cells = ["NaN" if np.isnan(v) else f"{v:.6f}" for v in values]
      f.write(f"{t + 1}\t{time[t]:.6f}\t" + "\t".join(cells) + "\n")
