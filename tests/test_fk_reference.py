"""Forward kinematics against OpenSim 4.6's own numbers on the golden fixtures.

Expected values: ../shared/reference/opensim_fk/*.npz, computed by OpenSim 4.6 (PyPI) on the
D3KE paper's full-body models (random poses; and a copy scaled by ``Model.scale`` with known
per-body factors). Measured errors (both models): float64 <= 1.4e-15 m on positions and
2.7e-15 on rotation entries; float32 <= 1.2e-6 m and 1.9e-6. Tolerances are 2-4x those.
"""

import functools

import chex
import numpy as np
import pytest

from d3ke_jax.skeleton import forward_kinematics, load_osim
from conftest import reference_file

MODELS = ["full_body_wo_hands", "full_body"]
POSITION_TOL = 5e-15  # metres, float64 (OpenSim computes in double precision)
ROTATION_TOL = 1e-14
FLOAT32_POSITION_TOL = 3e-6  # metres
FLOAT32_ROTATION_TOL = 4e-6


@functools.lru_cache(maxsize=None)
def _case(name):
  model = load_osim(reference_file("models", f"{name}.osim"))
  golden = dict(np.load(reference_file("opensim_fk", f"{name}.npz")))
  return model, golden


def _assert_close(out, golden, prefix, pos_tol, rot_tol):
  np.testing.assert_allclose(out.markers, golden[prefix + "markers"], rtol=0, atol=pos_tol)
  np.testing.assert_allclose(out.joint_origins, golden[prefix + "joint_origins"], rtol=0,
                             atol=pos_tol)
  transforms = np.asarray(out.body_transforms)
  expected = golden[prefix + "body_transforms"]
  np.testing.assert_allclose(transforms[..., :3, 3], expected[..., :3, 3], rtol=0, atol=pos_tol)
  np.testing.assert_allclose(transforms[..., :3, :3], expected[..., :3, :3], rtol=0,
                             atol=rot_tol)
  np.testing.assert_array_equal(transforms[..., 3, :], expected[..., 3, :])


@pytest.mark.parametrize("name", MODELS)
def test_names_follow_opensim_order(name):
  model, golden = _case(name)
  assert model.coordinate_names == tuple(golden["coordinate_names"])
  assert model.body_names == tuple(golden["body_names"])
  assert model.joint_names == tuple(golden["joint_names"])
  assert model.marker_names == tuple(golden["marker_names"])


@pytest.mark.float64
@pytest.mark.parametrize("name", MODELS)
def test_unscaled_poses_match_opensim_float64(name):
  model, golden = _case(name)
  out = forward_kinematics(model, np.asarray(golden["coordinates"], np.float64))
  chex.assert_type(out.markers, np.float64)
  _assert_close(out, golden, "", POSITION_TOL, ROTATION_TOL)


@pytest.mark.float64
@pytest.mark.parametrize("name", MODELS)
def test_scaled_poses_match_opensim_float64(name):
  model, golden = _case(name)
  out = forward_kinematics(model, golden["scaled_coordinates"].astype(np.float64),
                           scales=golden["scale_factors"])
  chex.assert_type(out.markers, np.float64)
  _assert_close(out, golden, "scaled_", POSITION_TOL, ROTATION_TOL)


@pytest.mark.parametrize("prefix", ["", "scaled_"])
@pytest.mark.parametrize("name", MODELS)
def test_float32_error_is_small(name, prefix):
  model, golden = _case(name)
  out = forward_kinematics(model, golden[prefix + "coordinates"].astype(np.float32),
                           scales=golden["scale_factors"].astype(np.float32) if prefix else None)
  chex.assert_type([out.markers, out.joint_origins, out.body_transforms], np.float32)
  _assert_close(out, golden, prefix, FLOAT32_POSITION_TOL, FLOAT32_ROTATION_TOL)
