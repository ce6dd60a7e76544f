"""Atomic file writes: write a temporary file beside the target, then rename over it."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode="w"):
  """Opens a temporary file that replaces ``path`` only if the block finishes."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, mode) as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise
