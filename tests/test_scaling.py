"""Scale factors from marker distances (OpenSim's measurement method) and scaled models.

Markers come from float32 forward kinematics, as users' data would; the scaled model OpenSim
writes is compared in float64. Tolerances: measured errors times 2-4."""

import numpy as np
import pytest

from d3ke_jax.skeleton import default_model_path, forward_kinematics, load_osim
from d3ke_jax.skeleton import ik, scaling
from d3ke_jax.skeleton.sampling import random_poses


def test_measurements_recover_known_factors():
  model = load_osim()
  rng = np.random.default_rng(0)
  true = np.repeat(rng.uniform(0.85, 1.15, (model.num_bodies, 1)), 3, axis=1)
  static = forward_kinematics(
      model, np.asarray(model.coordinate_defaults, np.float32)[None].repeat(3, 0),
      scales=true.astype(np.float32)).markers
  scales = scaling.measurement_scales(model, static)
  measured = [model.body_index(m.name) for m in scaling.default_measurements(model)]
  assert len(measured) >= 15
  np.testing.assert_allclose(scales[measured], true[measured], rtol=2e-6)  # measured: 5.8e-7


def test_bodies_without_markers_inherit_their_parent():
  model = load_osim()
  standing = forward_kinematics(model, np.asarray(model.coordinate_defaults, np.float32))
  scales = scaling.measurement_scales(model, np.asarray(standing.markers) * 1.1)
  np.testing.assert_allclose(scales[model.body_index("lumbar5")], 1.1, rtol=1e-8)  # 2.4e-9


def test_joint_fit_improves_on_measurements_for_anisotropic_bodies():
  model = load_osim()
  rng = np.random.default_rng(1)
  true = rng.uniform(0.9, 1.1, (model.num_bodies, 3))
  frames = np.asarray(forward_kinematics(
      model, random_poses(model, 4, rng, limit=0.1).astype(np.float32),
      scales=true.astype(np.float32)).markers)
  measured = scaling.measurement_scales(model, frames)
  before = ik.inverse_kinematics(model, frames, scales=measured, sequence=False)
  scales, after = scaling.fit_scales(model, frames, initial_scales=measured, rounds=2)
  assert np.median(after.rms_error) < 0.8 * np.median(before.rms_error)  # measured: 0.41
  # And the fitted factors are nearer the true ones (measured: median error 0.026 vs 0.047).
  assert np.median(np.abs(scales - true)) < 0.7 * np.median(np.abs(measured - true))


@pytest.mark.float64  # OpenSim's Model.scale against forward_kinematics(scales=...)
def test_written_model_equals_scaled_forward_kinematics(tmp_path):
  model = load_osim()
  rng = np.random.default_rng(2)
  factors = rng.uniform(0.8, 1.2, (model.num_bodies, 3))
  path = scaling.write_scaled_osim(default_model_path(), factors, tmp_path / "subject.osim")
  scaled = load_osim(path)
  q = random_poses(model, 3, rng)
  np.testing.assert_allclose(forward_kinematics(scaled, q).markers,
                             forward_kinematics(model, q, scales=factors).markers, rtol=0,
                             atol=1e-15)  # measured: 0
  assert [p.name for p in tmp_path.iterdir()] == ["subject.osim"]
