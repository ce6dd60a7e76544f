"""Inference uses a trained run through the shared layer (``d3ke_jax.runs``,
``d3ke_jax.checkpoints``, ``d3ke_jax.nets.from_config``), never through training's code."""

import ast
import glob
import os

import d3ke_jax

PACKAGE = os.path.dirname(d3ke_jax.__file__)


def _imports(path):
  """The dotted names of the modules ``path`` imports (``from a import b`` gives a and a.b)."""
  names = set()
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def test_inference_never_imports_training():
  paths = sorted(glob.glob(os.path.join(PACKAGE, "infer", "*.py")))
  assert paths
  found = {os.path.relpath(path, PACKAGE): sorted(
      name for name in _imports(path)
      if name == "d3ke_jax.train" or name.startswith("d3ke_jax.train."))
           for path in paths}
  assert not {path: names for path, names in found.items() if names}
