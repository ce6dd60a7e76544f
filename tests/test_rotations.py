"""Rotation helpers in float32 (as the head and the skeletal layer use them) against SciPy's
Rotation (an independent implementation, float64). Tolerances: measured errors times 2-3."""

import chex
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from d3ke_jax.skeleton import rotations

RNG = np.random.default_rng(0)


def _f32(x):
  return np.asarray(x, np.float32)


def test_axis_angle_and_rotvec_match_scipy():
  rotvec = RNG.normal(size=(10, 3))
  expected = Rotation.from_rotvec(rotvec).as_matrix()
  matrix = rotations.rotvec_to_matrix(_f32(rotvec))
  chex.assert_type(matrix, np.float32)
  np.testing.assert_allclose(matrix, expected, rtol=0, atol=5e-7)  # measured: 2.0e-7
  angle = np.linalg.norm(rotvec, axis=-1)
  np.testing.assert_allclose(rotations.axis_angle_to_matrix(_f32(rotvec / angle[:, None]),
                                                            _f32(angle)),
                             expected, rtol=0, atol=5e-7)  # measured: 1.5e-7


def test_rotvec_round_trip_including_small_and_near_pi_angles():
  axes = RNG.normal(size=(6, 3))
  axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
  angles = np.array([1e-9, 1e-4, 0.5, 2.0, np.pi - 1e-7, 3.0])
  rotvec = _f32(axes * angles[:, None])
  back = rotations.matrix_to_rotvec(rotations.rotvec_to_matrix(rotvec))
  chex.assert_type(back, np.float32)
  # Measured: <= 4.3e-7, except 2.1e-5 at 3.0 rad: in float32, matrix_to_rotvec loses
  # accuracy between ~3 rad and its near-pi branch (sin < 1e-6).
  np.testing.assert_allclose(rotations.rotvec_to_matrix(back),
                             rotations.rotvec_to_matrix(rotvec), rtol=0, atol=5e-5)


@pytest.mark.parametrize("order", ["xyz", "zxy", "zyx"])
def test_body_fixed_euler_matches_scipy_intrinsic(order):
  angles = RNG.uniform(-1.5, 1.5, (8, 3))
  expected = Rotation.from_euler(order.upper(), angles).as_matrix()
  matrix = rotations.euler_body_fixed_to_matrix(_f32(angles), order)
  chex.assert_type(matrix, np.float32)
  np.testing.assert_allclose(matrix, expected, rtol=0, atol=3e-7)  # measured: <= 1.1e-7


def test_euler_xyz_round_trip():
  angles = RNG.uniform(-1.4, 1.4, (8, 3))
  matrix = rotations.euler_body_fixed_to_matrix(_f32(angles))
  np.testing.assert_allclose(rotations.matrix_to_euler_body_fixed_xyz(matrix), angles, rtol=0,
                             atol=3e-7)  # measured: 7.5e-8


def test_sixd_gives_proper_rotations_for_any_input():
  sixd = np.concatenate([RNG.normal(size=(20, 6)) * 100, RNG.normal(size=(5, 6)) * 1e-3])
  matrix = rotations.sixd_to_matrix(_f32(sixd))
  chex.assert_type(matrix, np.float32)
  matrix = np.asarray(matrix, np.float64)
  # Measured: 3.4e-7 (determinant), 3.8e-7 (orthonormality).
  np.testing.assert_allclose(np.linalg.det(matrix), 1, atol=1e-6)
  np.testing.assert_allclose(matrix @ np.swapaxes(matrix, 1, 2), np.broadcast_to(
      np.eye(3), matrix.shape), atol=1e-6)


def test_sixd_round_trip():
  matrix = Rotation.random(7, random_state=1).as_matrix()
  np.testing.assert_allclose(rotations.sixd_to_matrix(rotations.matrix_to_sixd(_f32(matrix))),
                             matrix, rtol=0, atol=3e-7)  # measured: 1.0e-7
