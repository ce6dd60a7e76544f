"""Atomic file writes: write a temporary file beside the target, then rename over it."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path beside ``path``; it replaces ``path`` only if the block ends
  without an exception (so an interrupted write never leaves a half-written file)."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  name, ext = os.path.splitext(os.path.basename(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=f".tmp{ext}")
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    os.replace(tmp, path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_write(path, mode="w"):
  """Opens a temporary file that replaces ``path`` only if the block finishes."""
  with atomic_path(path) as tmp, open(tmp, mode) as f:
    yield f


def save_png(figure, path, dpi=100):
  """Writes a matplotlib figure to ``path`` as PNG, atomically; returns ``path``."""
  with atomic_path(path) as tmp:
    figure.savefig(tmp, format="png", dpi=dpi)
  return path
