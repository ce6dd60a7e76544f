"""OpenSim / Motion Analysis ``.trc`` marker trajectory files."""

import dataclasses
import os
from typing import Tuple

import numpy as np

from d3ke_jax.io.atomic import atomic_write

_UNITS = {"m": 1.0, "mm": 1e-3, "cm": 1e-2}


class TrcError(ValueError):
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
  """Reads a .trc file; positions are converted to metres from the file's ``Units``."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such .trc file")
  with open(path) as f:
    lines = f.read().splitlines()
  if len(lines) < 5 or not lines[0].startswith("PathFileType"):
    raise TrcError(f"{path}: not a .trc file (the first line must start with PathFileType)")
  keys, values = lines[1].split("\t"), lines[2].split("\t")
  header = dict(zip((k.strip() for k in keys), (v.strip() for v in values)))
  units = header.get("Units", "")
  if units not in _UNITS:
    raise TrcError(f"{path}: unknown Units {units!r} (expected one of {sorted(_UNITS)})")
  try:
    rate = float(header.get("DataRate", "nan"))
    num_markers = int(header["NumMarkers"])
  except (KeyError, ValueError) as e:
    raise TrcError(f"{path}: malformed header line 3 ({e})") from None
  columns = lines[3].split("\t")
  names = tuple(c.strip() for c in columns[2:] if c.strip())
  if len(names) != num_markers:
    raise TrcError(f"{path}: header says {num_markers} markers but names {len(names)}")
  rows = []
  for number, line in enumerate(lines[5:], start=6):
    if not line.strip():
      continue
    fields = line.split("\t")
    values = [_number(v) for v in fields[:2 + 3 * num_markers]]
    values += [np.nan] * (2 + 3 * num_markers - len(values))
    if np.isnan(values[1]):
      raise TrcError(f"{path}: line {number} has no time value")
    rows.append(values)
  if not rows:
    raise TrcError(f"{path}: no frames")
  data = np.array(rows)
  return MarkerTrajectories(names=names, time=data[:, 1],
                            positions=data[:, 2:].reshape(len(rows), num_markers, 3)
                            * _UNITS[units], rate=rate)


def _number(text):
  text = text.strip()
  try:
    return float(text) if text else np.nan
  except ValueError:
    return np.nan


def write_trc(path, trajectories: MarkerTrajectories, units="mm"):
  """Writes marker trajectories as a .trc file (atomically); missing values stay empty."""
  scale = 1.0 / _UNITS[units]
  names, time = trajectories.names, trajectories.time
  num_frames, num_markers = len(time), len(names)
  with atomic_write(path) as f:
    f.write(f"PathFileType\t4\t(X/Y/Z)\t{os.path.basename(os.fspath(path))}\n")
    f.write("DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\t"
            "OrigDataStartFrame\tOrigNumFrames\n")
    f.write(f"{trajectories.rate:g}\t{trajectories.rate:g}\t{num_frames}\t{num_markers}\t"
            f"{units}\t{trajectories.rate:g}\t1\t{num_frames}\n")
    f.write("Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t\n")
    f.write("\t\t" + "\t".join(f"X{k}\tY{k}\tZ{k}" for k in range(1, num_markers + 1)) + "\n\n")
    for t in range(num_frames):
      values = trajectories.positions[t].reshape(-1) * scale
      cells = ["" if np.isnan(v) else f"{v:.6f}" for v in values]
      f.write(f"{t + 1}\t{time[t]:.6f}\t" + "\t".join(cells) + "\n")
