"""OpenSim Storage files (``.mot`` / ``.sto``) of coordinate values over time."""

import dataclasses
import os
from typing import Sequence, Tuple

import numpy as np

from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import atomic_write


class MotError(UserError, ValueError):
  """A .mot/.sto file that cannot be read."""


@dataclasses.dataclass(frozen=True)
class MotionTable:
  """Columns over time; rotational values in radians once read."""
  names: Tuple[str, ...]
  time: np.ndarray  # (T,)
  values: np.ndarray  # (T, len(names))

  def column(self, name):
    if name not in self.names:
      raise KeyError(f"no column {name!r}")
    return self.values[:, self.names.index(name)]


def write_mot(path, time, values, names: Sequence[str], rotational: Sequence[bool],
              in_degrees=True, title="Coordinates"):
  """Writes coordinates as an OpenSim .mot file (atomically).

  Args:
    path: output file.
    time: (T,) seconds.
    values: (T, C) coordinate values in radians and metres.
    names: C coordinate names.
    rotational: C flags; rotational values are written in degrees when ``in_degrees``.
  """
  time = np.asarray(time, float)
  values = np.array(values, float)
  if values.shape != (len(time), len(names)):
    raise ValueError(f"{path}: values must be (frames, {len(names)}), got {values.shape}")
  if in_degrees:
    values[:, np.asarray(rotational, bool)] = np.degrees(values[:, np.asarray(rotational, bool)])
  with atomic_write(path) as f:
    f.write(f"{title}\nversion=1\nnRows={len(time)}\nnColumns={len(names) + 1}\n"
            f"inDegrees={'yes' if in_degrees else 'no'}\n\n"
            "Units are S.I. units (second, meters, Newtons, ...)\n"
            "If the header above contains a line with 'inDegrees', this indicates whether "
            "rotational values are in degrees (yes) or radians (no).\n\nendheader\n")
    f.write("time\t" + "\t".join(names) + "\n")
    for t, row in zip(time, values):
      f.write(f"{t:.8f}\t" + "\t".join(f"{v:.8f}" for v in row) + "\n")


def read_mot(path, rotational_names=None):
  """Reads a .mot/.sto file. With ``rotational_names``, those columns come back in radians
  when the file says ``inDegrees=yes``."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such .mot/.sto file")
  with open(path) as f:
    lines = f.read().splitlines()
  try:
    end = next(i for i, line in enumerate(lines) if line.strip().lower() == "endheader")
  except StopIteration:
    raise MotError(f"{path}: no 'endheader' line") from None
  in_degrees = any(line.replace(" ", "").lower() == "indegrees=yes" for line in lines[:end])
  columns = lines[end + 1].split("\t")
  if columns[0].strip().lower() != "time":
    raise MotError(f"{path}: the first column after endheader must be 'time'")
  try:
    data = np.array([[float(v) for v in line.split("\t")] for line in lines[end + 2:]
                     if line.strip()]).reshape(-1, len(columns))
  except ValueError as e:
    raise MotError(f"{path}: malformed data row ({e})") from None
  names = tuple(c.strip() for c in columns[1:])
  values = data[:, 1:]
  if in_degrees and rotational_names is not None:
    for k, name in enumerate(names):
      if name in rotational_names:
        values[:, k] = np.radians(values[:, k])
  return MotionTable(names=names, time=data[:, 0], values=values)
