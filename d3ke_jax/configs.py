"""Config files: Python files whose ``get_config()`` returns an ``ml_collections.ConfigDict``,
and command-line overrides of their keys (``--config.KEY=VALUE``). Each mistake is a
``UserError`` naming the file or the key and the problem."""

import ast
import importlib.util
import os
import traceback

import ml_collections

from d3ke_jax.errors import UserError, did_you_mean

TRUE, FALSE = ("true", "t", "yes", "1"), ("false", "f", "no", "0")


def load(path):
  """The locked ``ConfigDict`` of the config file ``path``."""
  if not os.path.isfile(path):
    raise UserError(f"{path}: no such config file (--config)")
  spec = importlib.util.spec_from_file_location(f"config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
      raise UserError(f"{path}: not a config file (no get_config())")
    config = module.get_config()
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # any mistake in the user's file
    raise UserError(f"{path}: not a usable config file ({_where(e, path)}{type(e).__name__}: "
                    f"{_first_line(e)})") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"{path}: get_config() returned a {type(config).__name__}, not an "
                    "ml_collections.ConfigDict")
  config.lock()
  return config


def _where(error, path):
  """'line N: ' of the config file where ``error`` was raised, if it was raised there."""
  if isinstance(error, SyntaxError) and error.lineno:
    return f"line {error.lineno}: "
  frames = [f for f in traceback.extract_tb(error.__traceback__)
            if os.path.abspath(f.filename) == os.path.abspath(path)]
  return f"line {frames[-1].lineno}: " if frames else ""


def _first_line(error):
  lines = str(getattr(error, "msg", None) or error).strip().splitlines()
  return lines[0] if lines else ""


def keys(config, prefix=""):
  """Every dotted key of ``config``, nested ones included."""
  found = []
  for key, value in config.items():
    found.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      found.extend(keys(value, f"{prefix}{key}."))
  return found


def override(config, key, text):
  """Sets the dotted ``key`` of ``config`` to ``text`` (None: a boolean key alone, i.e.
  true), read as the type of the key's current value."""
  parent, name = config, key.split(".")
  for depth, part in enumerate(name):
    if not isinstance(parent, ml_collections.ConfigDict) or part not in parent:
      prefix = "".join(p + "." for p in name[:depth])
      choices = keys(parent, prefix) if isinstance(parent, ml_collections.ConfigDict) else []
      raise UserError(f"--config.{key}: no such config key{did_you_mean(key, choices)}")
    if depth < len(name) - 1:
      parent = parent[part]
  current = parent[name[-1]]
  if isinstance(current, ml_collections.ConfigDict):
    raise UserError(f"--config.{key}: a group of keys; set one of them (e.g. --config."
                    f"{key}.{next(iter(current.keys()), 'KEY')}=...)")
  parent[name[-1]] = _value(key, text, current)


def _value(key, text, current):
  """``text`` read as the type of ``current``."""
  shown = f"--config.{key}" + ("" if text is None else f"={text}")
  if isinstance(current, bool):
    if text is None or text.lower() in TRUE:
      return True
    if text.lower() in FALSE:
      return False
    raise UserError(f"{shown}: not true or false")
  if text is None:
    raise UserError(f"{shown}: needs a value")
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      raise UserError(f"{shown}: not an integer") from None
  if isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      raise UserError(f"{shown}: not a number") from None
  if isinstance(current, (tuple, list)):
    value = _literal(text)
    if not isinstance(value, (tuple, list)):
      raise UserError(f"{shown}: not a list, e.g. (1, 2)")
    return type(current)(value)
  if current is None:
    return _literal(text)
  return text


def _literal(text):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError, MemoryError, RecursionError):
    return text
