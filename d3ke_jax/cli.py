"""What every command shares: user errors as one line and exit status 2, Ctrl-C as exit
status 130, and command-line parsing (argparse or absl flags with an ml_collections
``--config`` file) that reports mistakes as ``UserError``.

A command is ``main(argv=None)`` (``argv`` without the program name) run as
``cli.run(main)`` under ``if __name__ == "__main__"``.
"""

import argparse
import math
import os
import re
import sys

from absl import flags
from ml_collections import config_flags

from d3ke_jax.errors import Interrupted, Stopped, UserError, did_you_mean

USAGE = 2
INTERRUPTED = 130
HELP = ("-h", "--help", "--helpshort", "--helpfull")
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


def parse_flags(argv, define, doc, config_help=None):
  """Parses ``argv`` (None: ``sys.argv[1:]``) with absl flags, without global state:
  ``define(flag_values)`` defines the command's flags on a fresh ``FlagValues``, which is
  returned parsed. With ``config_help`` there is also a required ``--config FILE`` (a
  Python file with ``get_config()``), locked, overridable as ``--config.KEY=VALUE`` for its
  existing keys. ``--help`` prints ``doc`` and the flags, then exits 0; a bad flag, config
  file or config key raises ``UserError``."""
  argv = ["command"] + list(sys.argv[1:] if argv is None else argv)
  values = flags.FlagValues()
  if config_help:
    path = _value_of(argv, CONFIG)
    if path is not None and not os.path.isfile(path.split(":", 1)[0]):
      raise UserError(f"{path.split(':', 1)[0]}: no such config file (--{CONFIG})")
    _define_config(values, argv, config_help)
  define(values)
  if any(arg in HELP for arg in argv[1:]):
    print(f"{doc.strip()}\n\nflags:\n{values.get_help()}")
    sys.exit(0)
  try:
    rest = values(argv)
  except (flags.Error, OSError, SyntaxError, AttributeError, KeyError, TypeError) as e:
    if config_help:
      _check_config(argv)
    raise UserError(str(e)) from None
  if len(rest) > 1:
    raise UserError(f"unexpected argument {rest[1]!r}")
  return values


def _define_config(values, argv, help_string):
  # ml_collections loads the file into sys.modules["config_config"], keeping what an
  # earlier file defined there (a command run twice in one process would see it).
  sys.modules.pop(f"{CONFIG}_config", None)
  config_flags.DEFINE_config_file(CONFIG, None, help_string, lock_config=True,
                                  flag_values=values, sys_argv=argv)
  flags.mark_flag_as_required(CONFIG, flag_values=values)


def _check_config(argv):
  """Raises ``UserError`` for a missing or broken ``--config`` file or an override of a
  key the config does not have."""
  path = _value_of(argv, CONFIG)
  if path is None:
    return
  file = path.split(":", 1)[0]
  probe, plain = flags.FlagValues(), ["command", f"--{CONFIG}={path}"]
  _define_config(probe, plain, "")
  try:
    probe(plain)
    config = probe[CONFIG].value
  except Exception as e:  # pylint: disable=broad-except
    lines = str(e).strip().splitlines()
    raise UserError(f"{file}: not a usable config file ({lines[-1] if lines else e!r})") from None
  for arg in argv:
    match = re.match(rf"^--?(?:no)?{CONFIG}\.([^=]+)", arg)
    if match:
      _check_key(config, match.group(1))


def _value_of(argv, name):
  for i, arg in enumerate(argv):
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
  return None


def _check_key(config, key):
  """Raises ``UserError`` naming ``key`` when it is not a key of ``config``."""
  node, parts = config, key.split(".")
  for depth, part in enumerate(parts):
    if not hasattr(node, "keys") or part not in node:
      prefix = "".join(p + "." for p in parts[:depth])
      choices = _keys(node, prefix) if hasattr(node, "keys") else [prefix[:-1]]
      raise UserError(f"--{CONFIG}.{key}: no such config key{did_you_mean(key, choices)}")
    node = node[part]


def _keys(config, prefix=""):
  """Every dotted key of ``config``, nested ones included."""
  keys = []
  for key, value in config.items():
    keys.append(prefix + key)
    if hasattr(value, "keys"):
      keys.extend(_keys(value, f"{prefix}{key}."))
  return keys


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
