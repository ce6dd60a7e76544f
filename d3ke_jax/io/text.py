"""Reading the tabular text formats (.trc, .mot/.sto): bytes to lines, cells to numbers."""

import os

import numpy as np


def printable(text):
  """``text`` with ``?`` for characters that cannot be printed (a line end, a tab), for one
  header field or line."""
  return "".join(c if c.isprintable() else "?" for c in text)


def read_lines(path, error, kind):
  """The lines of a text file without their line ends, and whether the last one ended.

  Text is UTF-8 or, failing that, Latin-1 (marker names from Windows tools); a file holding
  NUL bytes raises ``error`` naming it. A missing file raises FileNotFoundError.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such {kind} file")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise error(f"{path}: cannot read the file ({e.strerror})") from None
  if b"\0" in data:
    raise error(f"{path}: not a text {kind} file (it holds binary data)")
  try:
    text = data.decode("utf-8-sig")
  except UnicodeDecodeError:
    text = data.decode("latin-1")
  lines = [line.rstrip("\r") for line in text.split("\n")]
  complete = lines[-1] == ""
  return lines[:-1] if complete else lines, complete


def space_separated(line):
  """Whether a line holds several fields but no tab."""
  return "\t" not in line and len(line.split()) > 1


def trimmed(cells, width):
  """``cells`` without the empty ones at its end beyond the first ``width`` (a row's
  trailing tabs)."""
  while len(cells) > width and not cells[-1].strip():
    cells = cells[:-1]
  return cells


def to_numbers(rows, line_numbers, label, error):
  """(R, C) float array of rows of C cell texts; an empty cell or ``nan`` is NaN.

  Raises ``error(message)`` for the first cell that is not a finite number; the message
  names its line, its column (``label(c)`` names the 0-based column c) and its text.
  """
  cells = np.array([[c.strip() or "nan" for c in row] for row in rows], dtype=str)
  try:
    data = cells.astype(float)
  except ValueError:
    r, c = next((r, c) for r, row in enumerate(cells) for c, text in enumerate(row)
                if not _parses(text))
    text = str(cells[r, c])
    hint = " (the decimal separator must be a point)" if "," in text else ""
    raise error(f"line {line_numbers[r]}, column {c + 1} ({label(c)}): {text!r} is not a "
                f"number{hint}") from None
  infinite = np.argwhere(np.isinf(data))
  if len(infinite):
    r, c = infinite[0]
    raise error(f"line {line_numbers[r]}, column {c + 1} ({label(c)}): {str(cells[r, c])!r} "
                "is not a finite number")
  return data


def check_times(time, line_numbers, error):
  """Raises ``error(message)`` naming the line of a missing time or of one that does not
  follow the time before it."""
  if np.isnan(time).any():
    raise error(f"line {line_numbers[np.argmax(np.isnan(time))]} has no time value")
  back = np.nonzero(np.diff(time) <= 0)[0]
  if back.size:
    k = back[0] + 1
    raise error(f"line {line_numbers[k]}: time {time[k]:g} does not follow {time[k - 1]:g} "
                f"of line {line_numbers[k - 1]} (times must increase)")


def _parses(text):
  try:
    np.array(text).astype(float)
    return True
  except ValueError:
    return False
