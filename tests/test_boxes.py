"""Square boxes (``d3ke_jax.boxes``): the same numbers from NumPy, JAX and jitted JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax import boxes

KINDS = {  # how a test's arrays reach the function, and what comes back
    "numpy": (lambda f: lambda *a: f(*(np.asarray(x) for x in a)), (np.ndarray, np.generic)),
    "jax": (lambda f: lambda *a: f(*(jnp.asarray(x) for x in a)), jax.Array),
    "jit": (lambda f: lambda *a: jax.jit(f)(*(jnp.asarray(x) for x in a)), jax.Array),
}


@pytest.fixture(params=sorted(KINDS))
def call(request):
  wrap, kind = KINDS[request.param]

  def run(function, *args):
    out = wrap(function)(*args)
    assert isinstance(out, kind), type(out)
    return np.asarray(out)
  return run


def test_square_around_the_valid_points(call):
  """Extent 20 x 40 centred at (20, 40); margin 0.1: side 48. Points not valid are left
  out, and without ``valid`` those with a NaN."""
  points = np.array([[[10.0, 20.0], [30.0, 60.0], [np.nan, np.nan], [500.0, 500.0]],
                     [[0.0, 0.0], [4.0, 2.0], [2.0, 1.0], [9.0, 9.0]]], np.float32)
  valid = np.array([[True, True, False, False], [True, True, True, False]])
  np.testing.assert_allclose(call(boxes.square, points, 0.1, valid),
                             [[-4, 16, 48], [-0.4, -1.4, 4.8]], rtol=1e-6)
  np.testing.assert_allclose(call(boxes.square, points[0, :3], 0.1), [-4, 16, 48], rtol=1e-6)


def test_corner_boxes_and_centres(call):
  corners = np.array([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 4.0, 2.0]], np.float32)
  square = call(boxes.from_corners, corners, 0.1)
  np.testing.assert_allclose(square, [[-4, 16, 48], [-0.4, -1.4, 4.8]], rtol=1e-6)
  np.testing.assert_allclose(call(boxes.centre, square), [[20, 40], [2, 1]], rtol=1e-6)
  np.testing.assert_allclose(call(boxes.from_centre, [[20.0, 40.0]], [[48.0]]), [[-4, 16, 48]])
  np.testing.assert_allclose(call(boxes.corners, [1.0, 2.0, 3.0]),
                             [[1, 2], [4, 2], [4, 5], [1, 5]])


def test_fractions_of_a_crop_in_frame_pixels(call):
  """The right half of the crop (10, 20, 40), a quarter of its side from its top."""
  np.testing.assert_allclose(call(boxes.in_frame, [[0.5, 0.25, 0.5]], [[10.0, 20.0, 40.0]]),
                             [[30, 30, 20]])


@pytest.mark.parametrize("b, expected", [((0, 0, 2), 1.0), ((1, 0, 2), 1 / 3),
                                         ((2, 2, 2), 0.0), ((0.5, 0.5, 1), 0.25)])
def test_iou(call, b, expected):
  np.testing.assert_allclose(call(boxes.iou, [0.0, 0.0, 2.0], np.asarray(b, np.float32)),
                             expected, rtol=1e-6)


def test_the_gate(call):
  """Against (0, 0, 10): a centre up to ``GATE`` sides away (5 px) and a side within a
  factor ``SIZE_RATIO`` pass; a wider reach lets a farther box pass."""
  reference = np.array([0.0, 0.0, 10.0], np.float32)
  candidates = np.array([[0, 0, 10], [5, 0, 10], [3, 4, 10], [5.5, 0, 10], [0, 0, 15],
                         [0, 0, 16], [0, 0, 7], [0, 0, 6]], np.float32)
  np.testing.assert_array_equal(call(boxes.passes_gate, candidates, reference),
                                [True, True, True, False, True, False, True, False])
  np.testing.assert_allclose(call(boxes.distance, candidates[:3], reference), [0, 5, 5])
  np.testing.assert_array_equal(call(boxes.passes_gate, candidates[3], reference, 0.6), True)
