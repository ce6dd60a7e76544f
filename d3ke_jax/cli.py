"""What every command shares: user errors as one line and exit status 2, Ctrl-C as exit
status 130, and command-line parsing (argparse, with an ml_collections ``--config`` file
and its overrides) that reports mistakes as ``UserError``.

A command is ``main(argv=None)`` (``argv`` without the program name) run as
``cli.run(main)`` under ``if __name__ == "__main__"``.
"""

import argparse
import math
import os
import sys

from d3ke_jax import configs
from d3ke_jax.errors import Interrupted, Stopped, UserError

USAGE = 2
INTERRUPTED = 130
CONFIG = "config"
FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
               PermissionError)


def run(main, argv=None, prog=None):
  """Runs ``main(argv)`` and exits with its return value (None: 0). A ``UserError``, or a
  missing, existing or forbidden file (``FILE_ERRORS``), prints ``prog: message`` on
  stderr and exits 2; Ctrl-C prints ``prog: interrupted`` (or the ``Interrupted``
  message) and exits 130; a run ``Stopped`` on a signal prints its message and exits with
  its status. ``prog`` defaults to the module run with ``python -m``.
  Compiled programs are kept between runs (``enable_compilation_cache``)."""
  prog = prog or _prog()
  enable_compilation_cache()
  try:
    code = main(argv)
  except UserError as e:
    _fail(prog, str(e), USAGE)
  except FILE_ERRORS as e:
    _fail(prog, f"{e.filename}: {e.strerror}" if e.filename is not None else str(e), USAGE)
  except KeyboardInterrupt as e:
    _fail(prog, str(e) if isinstance(e, Interrupted) and str(e) else "interrupted",
          INTERRUPTED)
  except Stopped as e:
    _fail(prog, str(e), e.status)
  sys.exit(code or 0)


def enable_compilation_cache():
  """Keeps XLA's compiled programs on disk so that the next run of a command skips most of
  its compilation: in ``$JAX_COMPILATION_CACHE_DIR`` if set, else
  ``$XDG_CACHE_HOME/d3ke_jax/xla`` (default ``~/.cache/d3ke_jax/xla``)."""
  import jax  # pylint: disable=g-import-not-at-top
  if not jax.config.jax_compilation_cache_dir:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    jax.config.update("jax_compilation_cache_dir", os.path.join(cache, "d3ke_jax", "xla"))


def _prog():
  spec = getattr(sys.modules["__main__"], "__spec__", None)
  return spec.name if spec is not None else os.path.basename(sys.argv[0])


def _fail(prog, message, code):
  print(f"{prog}: {'; '.join(filter(None, message.splitlines()))}", file=sys.stderr)
  sys.exit(code)


class ArgumentParser(argparse.ArgumentParser):
  """``argparse.ArgumentParser`` whose usage errors raise ``UserError`` (one line)."""

  def error(self, message):
    raise UserError(message)


def add_config(parser, help_string):
  """Adds a required ``--config FILE`` (a Python file with ``get_config()``) to ``parser``;
  ``parse`` loads it and applies ``--config.KEY=VALUE`` overrides of its keys."""
  parser.add_argument("--config", required=True, metavar="FILE", help=help_string +
                      "; override its keys as --config.KEY=VALUE")


def parse(parser, argv=None):
  """``parser``'s arguments from ``argv`` (None: ``sys.argv[1:]``); with ``add_config``,
  ``args.config`` is the loaded config with the ``--config.KEY=VALUE`` (or ``--config.KEY
  VALUE``; a boolean key alone is true) overrides applied. Mistakes raise ``UserError``."""
  args, rest = parser.parse_known_args(argv)
  overrides, unknown = [], []
  while rest:
    arg = rest.pop(0)
    if not arg.startswith(f"--{CONFIG}."):
      unknown.append(arg)
    elif "=" in arg:
      overrides.append(tuple(arg[len(CONFIG) + 3:].split("=", 1)))
    else:
      value = rest.pop(0) if rest and not rest[0].startswith("--") else None
      overrides.append((arg[len(CONFIG) + 3:], value))
  if unknown:
    raise UserError(f"unrecognized arguments: {' '.join(unknown)}")
  if not hasattr(args, CONFIG):
    if overrides:
      raise UserError(f"--{CONFIG}.{overrides[0][0]}: this command takes no --{CONFIG}")
    return args
  args.config = configs.load(args.config)
  for key, value in overrides:
    configs.override(args.config, key, value)
  return args


def number(kind, low, inclusive=False):
  """An argparse type: a ``kind`` (int or float) above ``low`` (or equal, if inclusive)."""
  def parse(text):
    try:
      value = kind(text)
    except ValueError:
      value = None
    if (value is None or not math.isfinite(value)
        or not (value >= low if inclusive else value > low)):
      raise argparse.ArgumentTypeError(
          f"{text!r} is not {'an integer' if kind is int else 'a number'} "
          f"{'>=' if inclusive else '>'} {low:g}")
    return value
  return parse


def check_writable_directory(path, flag):
  """Raises UserError unless ``path`` is a directory this user may write in, or one that
  can be made (its nearest existing ancestor is such a directory)."""
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    where = "" if existing == os.path.abspath(path) else f" ({existing} is a file)"
    raise UserError(f"{path}: not a directory{where} ({flag})")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UserError(f"{path}: no permission to write in {existing} ({flag})")
