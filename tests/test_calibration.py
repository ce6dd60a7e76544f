"""Calibrating the uncertainty head and judging it, on synthetic errors whose answers are
known: Laplace errors of known scales, and scales and errors from a Gaussian copula."""

import json
import os
import types

import numpy as np
import pytest

from d3ke_jax.nets.uncertainty import Uncertainty
from d3ke_jax import calibration
from d3ke_jax.runs import ConfigError

N, P, G = 20000, 4, 2
LOW, HIGH = 0.02, 0.2  # the true scales' range (radians)
TEMPERATURES = np.array([0.5, 1.0, 2.0, 3.0])  # true scale / predicted scale per coordinate
LAYOUT = types.SimpleNamespace(coordinates=[1, 2, 3, 4], body_groups=[(0,), (2, 1)])


def _split(seed):
  """(predicted arrays, truth) of a head predicting its true Laplace scales divided by
  ``TEMPERATURES``; every coordinate of a frame shares its true scale."""
  rng = np.random.default_rng(seed)
  true_b = rng.uniform(LOW, HIGH, (N, 1)) * np.ones(P)
  coords = rng.normal(0, 0.5, (N, 6)).astype(np.float32)
  scales = rng.uniform(0.9, 1.1, (N, 3, 3)).astype(np.float32)
  predicted_scales = scales[:, [0, 2]] + rng.laplace(0, 0.01, (N, G, 3))
  truth = {"coordinates": coords, "coordinate_valid": rng.uniform(size=(N, 6)) > 0.1,
           "frame_valid": rng.uniform(size=N) > 0.05, "scales": scales}
  predicted = {"coords": coords[:, 1:5] + rng.laplace(0, true_b),
               "scales": predicted_scales, "rotation": np.broadcast_to(np.eye(3), (N, 3, 3)),
               "uncertainty_coords": (true_b / TEMPERATURES).astype(np.float32),
               "uncertainty_scales": np.full((N, G, 3), 0.02, np.float32),
               "uncertainty_rotation": np.full(N, 0.1, np.float32)}
  return predicted, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitted_temperatures_are_the_true_ones_and_calibrated_intervals_hold(seed):
  predicted, truth = _split(seed)
  assert calibration.has_uncertainty(predicted)
  fitted = calibration.fit(LAYOUT, predicted, truth)
  # mean |e| / b over ~17000 errors: relative sampling error ~1/sqrt(n) < 1 %.
  np.testing.assert_allclose(fitted.coords, TEMPERATURES, rtol=0.03)
  np.testing.assert_allclose(fitted.scales, 0.5, rtol=0.03)  # errors of scale 0.01
  np.testing.assert_array_equal(fitted.rotation, 1.0)  # no rotation labels: kept at 1
  assert all(t.dtype == np.float32 for t in fitted)
  rows, summary, curve = calibration.judge(
      [f"c{j}" for j in range(P)], [True] * P, *_split(seed + 10), LAYOUT, fitted)
  for row in rows:
    assert abs(row["coverage_50"] - 0.5) < 0.02 and abs(row["coverage_90"] - 0.9) < 0.015
  # Uncalibrated, the too-narrow intervals cover too little (temperature 3: 1 - 0.5^(1/3)).
  _, uncalibrated, _ = calibration.judge(
      [f"c{j}" for j in range(P)], [True] * P, *_split(seed + 10), LAYOUT,
      Uncertainty(np.ones(P), np.ones((G, 3)), np.ones(())))
  assert uncalibrated["coverage_50"] < 0.45
  # The most confident half of the frames: true scales in [LOW, (LOW + HIGH) / 2], mean error
  # (LOW + (HIGH - LOW) / 4) rad; all frames: (LOW + HIGH) / 2.
  np.testing.assert_allclose(summary["MAE_confident_half"],
                             np.degrees(LOW + (HIGH - LOW) / 4), rtol=0.04)
  np.testing.assert_allclose(summary["MAE_all"], np.degrees((LOW + HIGH) / 2), rtol=0.03)
  np.testing.assert_allclose(curve[-1], summary["MAE_all"], rtol=1e-9)
  assert np.all(np.diff(curve) > 0)  # surer frames, smaller errors


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("r", [0.0, 0.5, 0.9])
def test_spearman_is_that_of_a_gaussian_copula(seed, r):
  """Scales and errors monotone in a bivariate normal of correlation r: Spearman's rho is
  (6 / pi) arcsin(r / 2)."""
  rng = np.random.default_rng(seed)
  z = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], (N, P))
  b, error = 0.05 * np.exp(z[..., 0]), 0.01 * np.exp(z[..., 1])
  valid = rng.uniform(size=(N, P)) > 0.2
  rho, mean = calibration.spearman(b, error, valid)
  expected = 6 / np.pi * np.arcsin(r / 2)
  np.testing.assert_allclose(rho, expected, atol=0.03)  # rho's sd ~ 1 / sqrt(n) ~ 0.008
  np.testing.assert_allclose(mean, np.mean(rho))


def test_calibration_file_round_trip_and_damage(tmp_path):
  temperatures = Uncertainty(np.array([1.5, 2.0], np.float32), np.ones((G, 3), np.float32),
                             np.float32(0.7))
  assert calibration.load(str(tmp_path)) is None
  calibration.save(str(tmp_path), 12, temperatures)
  assert os.listdir(tmp_path) == [calibration.CALIBRATION_FILE]  # no temporary file left
  step, loaded = calibration.load(str(tmp_path))
  assert step == 12
  for a, b in zip(loaded, temperatures):
    np.testing.assert_array_equal(a, b)
  with open(tmp_path / calibration.CALIBRATION_FILE) as f:
    assert json.load(f)["split"] == "validation"
  (tmp_path / calibration.CALIBRATION_FILE).write_text("{\"step\": 3}")
  with pytest.raises(ConfigError, match="calibration.json: not a calibration"):
    calibration.load(str(tmp_path))


def test_frame_sd_is_the_median_over_rotational_coordinates_in_degrees():
  b = np.array([[0.1, 0.2, 5.0, 0.3]])
  np.testing.assert_allclose(calibration.frame_sd_deg(b, [True, True, False, True]),
                             np.degrees(np.sqrt(2) * 0.2))


def test_risk_coverage_plot(tmp_path):
  path = calibration.plot_risk_coverage(str(tmp_path / "rc.png"),
                                        np.linspace(1, 2, len(calibration.COVERAGES)))
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_groups_report_larger_sd_and_error_where_the_frames_are_harder():
  """Frames whose true scale is in the upper half are the "hard" group: their calibrated SD
  and error are larger, their intervals still hold; the "all" group is ``judge``'s overall
  row."""
  predicted, truth = _split(4)
  true_b = predicted["uncertainty_coords"][:, 0] * TEMPERATURES[0]
  hard = true_b > (LOW + HIGH) / 2
  groups = {"clean": ~hard, "hard": hard, "all": np.ones(N, bool)}
  temperatures = Uncertainty(TEMPERATURES, np.ones((G, 3)), np.ones(()))
  rows = calibration.judge_groups([True] * P, predicted, truth, LAYOUT, temperatures, groups)
  by = {row["group"]: row for row in rows}
  assert [row["group"] for row in rows] == ["clean", "hard", "all"]
  assert by["clean"]["frames"] + by["hard"]["frames"] == by["all"]["frames"]
  counts = truth["frame_valid"] & truth["coordinate_valid"][:, LAYOUT.coordinates].any(1)
  assert by["all"]["frames"] == np.sum(counts)  # frames with a coordinate that counts
  for name, members in groups.items():
    counted = members & truth["frame_valid"]
    # The mean SD is sqrt(2) times the mean true scale (every coordinate shares it).
    np.testing.assert_allclose(by[name]["SD_angle_deg"],
                               np.degrees(np.sqrt(2) * true_b[counted].mean()), rtol=0.02)
    assert abs(by[name]["coverage_50"] - 0.5) < 0.03
    assert abs(by[name]["coverage_90"] - 0.9) < 0.02
  assert by["hard"]["SD_angle_deg"] > 1.5 * by["clean"]["SD_angle_deg"]
  assert by["hard"]["MAE_angle_deg"] > 1.5 * by["clean"]["MAE_angle_deg"]
  _, summary, _ = calibration.judge([f"c{j}" for j in range(P)], [True] * P, predicted, truth,
                                    LAYOUT, temperatures)
  for key in ("coverage_50", "coverage_90", "rho_scale_error"):
    assert by["all"][key] == pytest.approx(summary[key])
  assert by["all"]["MAE_angle_deg"] == pytest.approx(summary["MAE_all"])
