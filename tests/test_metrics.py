"""Metrics against values computed by hand on small arrays."""

import numpy as np
import pytest

from d3ke_jax.skeleton import load_osim
from d3ke_jax.train import metrics


def test_mpblpe_aligns_roots_and_reports_mm():
  true = np.zeros((1, 2, 3))
  pred = np.array([[[0.003, 0.004, 0.0], [0.0, 0.0, 0.0]]]) + 5.0  # shifted root
  assert metrics.mpblpe(pred, true, np.full((1, 3), 5.0), np.zeros((1, 3))) == pytest.approx(2.5)


def test_angle_errors_in_degrees():
  true = np.zeros((2, 2))
  pred = np.radians([[1.0, -3.0], [2.0, 4.0]])
  assert metrics.mae_angle(pred, true) == pytest.approx(2.5)
  assert metrics.sd_angle(pred, true) == pytest.approx(np.std([1, -3, 2, 4]))


def test_mean_velocity_equation_13():
  angles = np.radians([[0.0], [1.0], [3.0]])  # steps of 1 and 2 degrees
  assert metrics.mean_velocity(angles, dt=0.5) == pytest.approx(3.0)  # (2 + 4) / 2 deg/s
  points = np.array([[[0, 0, 0]], [[0.003, 0.004, 0]]], float)  # 5 mm in 0.1 s
  assert metrics.mean_velocity(points, dt=0.1, points=True) == pytest.approx(50.0)


def test_pearson_per_column():
  t = np.arange(5.0)
  pred = np.stack([2 * t + 1, -t, np.ones(5)], 1)
  true = np.stack([t, t, t], 1)
  rho = metrics.pearson(pred, true)
  np.testing.assert_allclose(rho[:2], [1.0, -1.0])
  assert np.isnan(rho[2])


def test_body_scale_errors():
  model = load_osim()
  axis, extent = metrics.body_extents(model)
  femur = model.body_index("femur_r")
  assert axis[femur] == 1 and 0.40 < extent[femur] < 0.50  # femur length along y
  pred = np.ones((1, model.num_bodies, 3))
  pred[0, femur, 1] = 1.1
  true = np.ones((1, model.num_bodies, 3))
  assert metrics.mae_body(model, pred, true, bodies=[femur]) == pytest.approx(
      100 * extent[femur])
  assert metrics.rmse_body(pred, true) == pytest.approx(np.sqrt(0.01 / pred.size))


def test_summary_median_and_iqr_per_group():
  out = metrics.summarize([1, 2, 3, 4, 10, np.nan], ["a", "a", "a", "a", "b", "b"])
  assert out["a"]["median"] == pytest.approx(2.5) and out["a"]["iqr"] == pytest.approx(1.5)
  assert out["b"]["n"] == 1 and out["b"]["median"] == 10
