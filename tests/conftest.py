"""Shared test setup: the float64 opt-in and paths to ../shared/reference.

Tests run in float32, as users run the library. A test that compares with OpenSim's double
precision (or needs it, as finite differences do) opts in with ``@pytest.mark.float64``
(a whole module: ``pytestmark = pytest.mark.float64``); JAX then makes 64-bit arrays for
that test only. Code wider or narrower than one test uses ``with float64():``. A test that
leaves 64-bit arrays switched on for the whole session fails.
"""

import contextlib
import os

import jax
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.environ.get("D3KE_REFERENCE", os.path.join(REPO, os.pardir, "shared", "reference"))


def pytest_configure(config):
  config.addinivalue_line("markers", "float64: run the test with 64-bit JAX arrays, for "
                          "comparisons with OpenSim's double precision")


@contextlib.contextmanager
def float64():
  """64-bit JAX arrays inside the block (``jax.enable_x64``).

  JAX's jit caches keep what was traced in the other mode, and using it fails (e.g. "lax.add
  requires arguments to have the same dtypes, got int32, int64" on indexing with a NumPy
  array); switching modes in one process is unsupported (jax-ml/jax#5982, #11092), so the
  caches are cleared on the way in and out.
  """
  jax.clear_caches()
  try:
    with jax.enable_x64(True):
      yield
  finally:
    jax.clear_caches()


_marked_last = [False]  # whether the previous test ran with 64-bit arrays


def _fail_if_x64_is_global(when):
  if jax.config.jax_enable_x64:
    jax.config.update("jax_enable_x64", False)  # so that only this test fails
    jax.clear_caches()
    pytest.fail(f"64-bit JAX arrays were switched on for the whole session {when} (e.g. by "
                "jax.config.update or a CLI's --float64); use @pytest.mark.float64 or "
                "conftest.float64()", pytrace=False)


@pytest.fixture(autouse=True)
def _float64_when_marked(request):
  _fail_if_x64_is_global("before this test (at import?)")
  marked = request.node.get_closest_marker("float64") is not None
  if marked != _marked_last[0]:
    jax.clear_caches()  # consecutive tests of one mode share the caches (see float64)
    _marked_last[0] = marked
  with jax.enable_x64(True) if marked else contextlib.nullcontext():
    yield
  _fail_if_x64_is_global("by this test")


def reference_file(*parts):
  """Path of a file in ../shared/reference; skips the test when it is absent."""
  path = os.path.join(REFERENCE, *parts)
  if not os.path.exists(path):
    pytest.skip(f"reference data not found: {path} (set D3KE_REFERENCE to ../shared/reference)")
  return path


@pytest.fixture(scope="session")
def micro_data(tmp_path_factory):
  """The ``data_dir`` of the micro synthetic dataset (32 px, 160 frames), built once for the
  whole session; tests that damage it work on a copy."""
  from d3ke_jax.train.dataset import load_dataset  # pylint: disable=g-import-not-at-top
  from experiments.configs import synthetic_tiny  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  config = synthetic_tiny.get_config()
  config.dataset.config, config.dataset.data_dir = "micro", data_dir
  load_dataset(config, splits=("train",))
  return data_dir
