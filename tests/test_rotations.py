"""Rotation helpers against SciPy's Rotation (an independent implementation)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from d3ke_jax.skeleton import rotations

RNG = np.random.default_rng(0)


def test_axis_angle_and_rotvec_match_scipy():
  rotvec = RNG.normal(size=(10, 3))
  expected = Rotation.from_rotvec(rotvec).as_matrix()
  np.testing.assert_allclose(rotations.rotvec_to_matrix(rotvec), expected, atol=1e-12)
  angle = np.linalg.norm(rotvec, axis=-1)
  np.testing.assert_allclose(rotations.axis_angle_to_matrix(rotvec / angle[:, None], angle),
                             expected, atol=1e-12)


def test_rotvec_round_trip_including_small_and_near_pi_angles():
  axes = RNG.normal(size=(6, 3))
  axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
  angles = np.array([1e-9, 1e-4, 0.5, 2.0, np.pi - 1e-7, 3.0])
  rotvec = axes * angles[:, None]
  back = rotations.matrix_to_rotvec(rotations.rotvec_to_matrix(rotvec))
  np.testing.assert_allclose(rotations.rotvec_to_matrix(back),
                             rotations.rotvec_to_matrix(rotvec), atol=1e-6)


@pytest.mark.parametrize("order", ["xyz", "zxy", "zyx"])
def test_body_fixed_euler_matches_scipy_intrinsic(order):
  angles = RNG.uniform(-1.5, 1.5, (8, 3))
  expected = Rotation.from_euler(order.upper(), angles).as_matrix()
  np.testing.assert_allclose(rotations.euler_body_fixed_to_matrix(angles, order), expected,
                             atol=1e-12)


def test_euler_xyz_round_trip():
  angles = RNG.uniform(-1.4, 1.4, (8, 3))
  matrix = rotations.euler_body_fixed_to_matrix(angles)
  np.testing.assert_allclose(rotations.matrix_to_euler_body_fixed_xyz(matrix), angles,
                             atol=1e-10)


def test_sixd_gives_proper_rotations_for_any_input():
  sixd = np.concatenate([RNG.normal(size=(20, 6)) * 100, RNG.normal(size=(5, 6)) * 1e-3])
  matrix = np.asarray(rotations.sixd_to_matrix(sixd))
  np.testing.assert_allclose(np.linalg.det(matrix), 1, atol=1e-9)
  np.testing.assert_allclose(matrix @ np.swapaxes(matrix, 1, 2), np.broadcast_to(
      np.eye(3), matrix.shape), atol=1e-9)


def test_sixd_round_trip():
  matrix = Rotation.random(7, random_state=1).as_matrix()
  np.testing.assert_allclose(rotations.sixd_to_matrix(rotations.matrix_to_sixd(matrix)),
                             matrix, atol=1e-12)
