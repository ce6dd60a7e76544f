"""OpenSim Storage files (``.mot`` / ``.sto``) of coordinate values over time."""

import dataclasses
import os
from typing import Sequence, Tuple

import numpy as np

from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import atomic_write
from d3ke_jax.io.text import check_times, printable, read_lines, to_numbers, trimmed


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
              in_degrees=True, title="Coordinates", notes: Sequence[str] = ()):
  """Writes coordinates as an OpenSim .mot file (atomically).

  Args:
    path: output file.
    time: (T,) seconds.
    values: (T, C) coordinate values in radians and metres.
    names: C coordinate names.
    rotational: C flags; rotational values are written in degrees when ``in_degrees``.
    notes: lines for the header after the title (OpenSim keeps them in its ``header``
      metadata), ``?`` for characters that cannot be printed.
  """
  time = np.asarray(time, float)
  values = np.array(values, float)
  if values.shape != (len(time), len(names)):
    raise ValueError(f"{path}: values must be (frames, {len(names)}), got {values.shape}")
  if in_degrees:
    values[:, np.asarray(rotational, bool)] = np.degrees(values[:, np.asarray(rotational, bool)])
  with atomic_write(path) as f:
    f.write(f"{title}\n" + "".join(printable(note) + "\n" for note in notes))
    f.write(f"version=1\nnRows={len(time)}\nnColumns={len(names) + 1}\n"
            f"inDegrees={'yes' if in_degrees else 'no'}\n\n"
            "Units are S.I. units (second, meters, Newtons, ...)\n"
            "If the header above contains a line with 'inDegrees', this indicates whether "
            "rotational values are in degrees (yes) or radians (no).\n\nendheader\n")
    f.write("time\t" + "\t".join(names) + "\n")
    for t, row in zip(time, values):
      f.write(f"{t:.8f}\t" + "\t".join(f"{v:.8f}" for v in row) + "\n")


def read_mot(path, rotational_names=None):
  """Reads a .mot/.sto file. With ``rotational_names``, those columns come back in radians
  when the file says ``inDegrees=yes``.

  Cells are separated by tabs or, where the column labels hold no tab, by spaces (older
  files); an empty or ``nan`` cell is NaN. Raises MotError naming the file and line for a
  cell that is not a finite number, a row with more or fewer cells than there are labels,
  a repeated label, ``nRows`` / ``nColumns`` that disagree with the table, times that do
  not increase.
  """
  path = os.fspath(path)
  lines, complete = read_lines(path, MotError, ".mot/.sto")
  error = lambda message: MotError(f"{path}: {message}")
  try:
    end = next(i for i, line in enumerate(lines) if line.strip().lower() == "endheader")
  except StopIteration:
    raise MotError(f"{path}: no 'endheader' line") from None
  header = {}
  for line in lines[:end]:
    key, equals, value = line.partition("=")
    if equals:
      header[key.strip().lower()] = value.strip()
  labels_at = next((i for i in range(end + 1, len(lines)) if lines[i].strip()), None)
  if labels_at is None:
    raise error(f"no column labels after 'endheader' (line {end + 1})")
  split = (lambda line: line.split("\t")) if "\t" in lines[labels_at] else str.split
  labels = trimmed([c.strip() for c in split(lines[labels_at])], 0)
  if labels[0].lower() != "time":
    raise error(f"line {labels_at + 1}: the first column after endheader must be 'time'")
  for k, label in enumerate(labels):
    if label in labels[:k]:
      raise error(f"line {labels_at + 1} labels column {label!r} twice (columns "
                  f"{labels.index(label) + 1} and {k + 1})")
  _check_count(header, "nColumns", len(labels),
               f"line {labels_at + 1} labels {len(labels)} columns", error)
  rows, numbers, previous = [], [], None
  for number, line in enumerate(lines[labels_at + 1:], start=labels_at + 2):
    if not line.strip():
      continue
    cells = split(line)
    if number == len(lines) and not complete and previous and len(cells) < previous:
      raise error(f"line {number} is cut short (the file ends in the middle of it)")
    previous = len(cells)
    cells = trimmed(cells, len(labels))
    if len(cells) != len(labels):
      raise error(f"line {number} has {len(cells)} cells but line {labels_at + 1} labels "
                  f"{len(labels)} columns")
    rows.append(cells)
    numbers.append(number)
  if not rows:
    raise error("no data rows")
  _check_count(header, "nRows", len(rows), f"there are {len(rows)} data rows", error)
  data = to_numbers(rows, numbers, lambda c: labels[c], error)
  check_times(data[:, 0], numbers, error)
  names = tuple(labels[1:])
  values = data[:, 1:]
  if header.get("indegrees", "").lower() == "yes" and rotational_names is not None:
    for k, name in enumerate(names):
      if name in rotational_names:
        values[:, k] = np.radians(values[:, k])
  return MotionTable(names=names, time=data[:, 0], values=values)


def _check_count(header, key, count, actual, error):
  """The header's ``key`` (nRows, nColumns), where present, must be ``count``."""
  if key.lower() not in header:
    return
  try:
    stated = int(header[key.lower()])
  except ValueError:
    raise error(f"the header's {key} is {header[key.lower()]!r}, not a whole number") from None
  if stated != count:
    raise error(f"the header says {key}={stated} but {actual}")
