"""Shared test setup: float64 available, paths to ../shared/reference."""

import os

import jax
import pytest

jax.config.update("jax_enable_x64", True)  # tests pick float32 or float64 explicitly

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.environ.get("D3KE_REFERENCE", os.path.join(REPO, os.pardir, "shared", "reference"))


def reference_file(*parts):
  """Path of a file in ../shared/reference; skips the test when it is absent."""
  path = os.path.join(REFERENCE, *parts)
  if not os.path.exists(path):
    pytest.skip(f"reference data not found: {path} (set D3KE_REFERENCE to ../shared/reference)")
  return path
