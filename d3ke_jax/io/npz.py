"""Reading users' ``.npz`` archives (AMASS motions, SMPL+H models): named arrays only.

Nothing is ever unpickled: an array of Python objects is refused, as is every kind of
download damage (a truncated or corrupt archive, a lone ``.npy``), with a ``UserError``
that names the file, and the key where one is at fault.
"""

import os
import zipfile
import zlib

import numpy as np

from d3ke_jax.errors import UserError

# What NumPy and zipfile raise on a damaged archive (BadZipFile and zlib.error are not
# OSErrors; a corrupt header can declare an array too large to allocate).
_DAMAGE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError)
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")  # an archive's first entry; an empty archive
_NPY = b"\x93NUMPY"
_KINDS = {"U": "text", "S": "bytes", "O": "Python objects", "b": "booleans",
          "c": "complex numbers", "V": "raw records", "M": "dates", "m": "time spans"}


def read_npz(path, kind, keys=None):
  """{key: array} of ``keys`` (default all) from the ``.npz`` archive ``path``, a ``kind``
  of file (e.g. "AMASS motion file"); other keys are not read. ``UserError`` for a missing
  or damaged file, a missing key or an array that is not plain data."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise UserError(f"{path}: no such {kind}")
  with open(path, "rb") as f:
    magic = f.read(len(_NPY))
  if magic == _NPY:
    raise UserError(f"{path}: a single .npy array, not an .npz archive of named arrays")
  if not magic.startswith(_ZIP):
    raise UserError(f"{path}: not a readable .npz {kind} "
                    f"({'an empty file' if not magic else 'not a zip archive'})")
  try:
    archive = np.load(path, allow_pickle=False)
  except _DAMAGE as e:
    raise UserError(f"{path}: not a readable .npz {kind} ({_reason(e)})") from None
  with archive:
    keys = archive.files if keys is None else keys
    for key in keys:
      if key not in archive.files:
        raise UserError(f"{path}: no {key!r} array (expected {', '.join(keys)})")
    return {key: _member(archive, path, key) for key in keys}


def _member(archive, path, key):
  try:
    return archive[key]
  except ValueError as e:
    if "allow_pickle" in str(e):  # NumPy refuses object arrays before unpickling anything
      raise UserError(f"{path}: {key!r} holds pickled Python objects, which are never "
                      "loaded; store it as a numeric array") from None
    raise UserError(f"{path}: {key!r} is damaged ({_reason(e)})") from None
  except _DAMAGE as e:
    raise UserError(f"{path}: {key!r} is damaged ({_reason(e)})") from None


def _reason(error):
  text = str(error).strip().splitlines()
  return text[0] if text else type(error).__name__


def numbers(path, key, array, integer=False):
  """``array`` if it holds finite real numbers (integers where ``integer``), else a
  ``UserError`` naming the file, the key and what it holds."""
  kinds = "iu" if integer else "iuf"
  if array.dtype.kind not in kinds:
    holds = _KINDS.get(array.dtype.kind, "floating-point numbers")
    raise UserError(f"{path}: {key!r} holds {holds} ({array.dtype}), expected "
                    f"{'integers' if integer else 'real numbers'}")
  if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
    raise UserError(f"{path}: {key!r} holds NaN or infinite values")
  return array
