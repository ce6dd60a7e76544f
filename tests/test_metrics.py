"""Metrics against values computed by hand on small masked arrays, and validation against
the report on one masked split (float32, as the networks predict)."""

import numpy as np
import pytest

from d3ke_jax.skeleton import load_osim, make_layout, root_relative
from d3ke_jax.train import metrics, report
from d3ke_jax.train import stage as stages


def test_root_relative_subtracts_the_root_joint():
  joints = np.array([[[9.0, 9, 9], [1, 2, 3]], [[0, 0, 0], [5, 5, 5]]])  # (2 frames, 2 joints)
  points = np.array([[[2.0, 2, 2]], [[6, 6, 6]]])
  np.testing.assert_array_equal(root_relative(points, joints, 1), [[[1, 0, -1]], [[1, 1, 1]]])


def test_mpblpe_pools_the_valid_finite_labels():
  true = np.zeros((2, 3, 3))
  pred = np.zeros((2, 3, 3))
  pred[0, :, 0] = [0.003, 1.0, 0.005]  # marker 1's label is invalid
  pred[1, :, 0] = [0.010, 1.0, 1.0]  # marker 1 invalid, marker 2 has no label (NaN)
  true[1, 2] = np.nan
  valid = np.array([[True, False, True], [True, False, True]])
  # 3, 5 and 10 mm pooled (a mean of per-frame means would be 7).
  assert metrics.mpblpe(pred, true, valid) == pytest.approx(6.0)
  assert metrics.mpblpe(pred[:, :1], true[:, :1]) == pytest.approx(6.5)
  pred[0, 0, 1] = np.nan  # a prediction is never dropped
  assert np.isnan(metrics.mpblpe(pred, true, valid))
  assert np.isnan(metrics.mpblpe(pred, true, np.zeros((2, 3), bool)))  # nothing counts


def test_angle_errors_count_valid_coordinates_of_valid_frames():
  true = np.zeros((3, 2))
  pred = np.radians([[1.0, -3.0], [2.0, 40.0], [50.0, 50.0]])
  frame_valid = np.array([True, True, False])
  coordinate_valid = np.array([[True, True], [True, False], [True, True]])
  true[0, 1] = np.nan  # a missing label
  valid = metrics.angle_mask(true, frame_valid, coordinate_valid)
  np.testing.assert_array_equal(valid, [[True, False], [True, False], [False, False]])
  assert metrics.mae_angle(pred, true, valid) == pytest.approx(1.5)
  assert metrics.sd_angle(pred, true, valid) == pytest.approx(0.5)
  assert metrics.rmse_angle(pred, true, valid) == pytest.approx(np.sqrt(2.5))
  assert metrics.mae_angle(pred[:2, :1], true[:2, :1]) == pytest.approx(1.5)


def test_marker_mask_combines_frames_labels_and_missing_values():
  true = np.zeros((2, 3, 3))
  true[0, 2, 1] = np.nan
  mask = metrics.marker_mask(true, np.array([True, False]), np.array([[True, False, True]] * 2))
  np.testing.assert_array_equal(mask, [[True, False, False], [False, False, False]])
  np.testing.assert_array_equal(metrics.marker_mask(true, np.array([True, True])),
                                [[True, True, False], [True, True, True]])


def test_mean_velocity_equation_13_within_clips_over_counted_steps():
  # Rows out of order; clip 5 lacks frame 2; frame 1 of clip 7 is invalid for column 0.
  clip = np.array([7, 5, 5, 7, 7, 5])
  frame = np.array([1, 0, 3, 2, 0, 1])
  angles = np.radians([[40.0, 1], [0, 0], [30, 9], [1, 2], [0, 0], [2, 4]])
  valid = np.ones((6, 2), bool)
  valid[0, 0] = False
  # Counted steps: clip 5: 0->1 (2, 4 deg); clip 7: 0->1 (column 1: 1), 1->2 (column 1: 1).
  assert metrics.mean_velocity(angles, 10.0, clip, frame, valid) == pytest.approx(20.0)
  # Every row valid: clip 7's column 0 adds 40 and 39 deg.
  assert metrics.mean_velocity(angles, 10.0, clip, frame) == pytest.approx(
      10 * (2 + 4 + 40 + 1 + 39 + 1) / 6)
  points = np.zeros((6, 2, 3))
  points[[5, 0, 3], 0, 0] = [0.003, 0.004, 0.009]  # steps of 3, 4 and 5 mm
  points[:, 1] = np.nan  # a marker without labels never counts
  mask = np.isfinite(points).all(-1)
  assert metrics.mean_velocity(points, 10.0, clip, frame, mask, points=True) == pytest.approx(
      40.0)
  assert np.isnan(metrics.mean_velocity(angles[:1], 10.0, clip[:1], frame[:1]))


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
  pred = np.ones((2, model.num_bodies, 3))
  pred[0, femur, 1] = 1.1
  pred[1] = 3.0  # an invalid frame
  true = np.ones((2, model.num_bodies, 3))
  valid = np.array([True, False])
  assert metrics.mae_body(pred, true, axis, extent, valid) == pytest.approx(
      100 * extent[femur] / model.num_bodies)
  assert metrics.mae_body(pred[:1, [femur]], true[:1, [femur]], axis[[femur]],
                          extent[[femur]]) == pytest.approx(100 * extent[femur])
  assert metrics.rmse_body(pred, true, valid) == pytest.approx(np.sqrt(0.01 / pred[0].size))


def test_summary_median_and_iqr_per_group():
  out = metrics.summarize([1, 2, 3, 4, 10, np.nan], ["a", "a", "a", "a", "b", "b"])
  assert out["a"]["median"] == pytest.approx(2.5) and out["a"]["iqr"] == pytest.approx(1.5)
  assert out["b"]["n"] == 1 and out["b"]["median"] == 10


RATE = 30.0


def _masked_split(model, layout):
  """Per-frame predictions (float32) and the labels of a split with every kind of gap:
  three clips, one missing a frame; an invalid frame; invalid coordinates; marker labels
  flagged invalid, and labels missing (NaN)."""
  rng = np.random.default_rng(0)
  clip = np.repeat([3, 4, 9], 6)
  frame = np.tile(np.arange(6), 3)
  keep = ~((clip == 4) & (frame == 2))
  clip, frame, n = clip[keep], frame[keep], int(keep.sum())
  f32 = lambda *shape, scale=1.0, offset=0.0: (offset + scale * rng.normal(size=shape)).astype(
      np.float32)
  coordinates = f32(n, model.num_coordinates, scale=0.5)
  joints = f32(n, model.num_joints, 3, scale=0.3, offset=3.0)
  markers = f32(n, model.num_markers, 3, scale=0.3, offset=3.0)
  markers[2, 5] = markers[7, :4] = np.nan  # no label
  truth = {
      "coordinates": coordinates, "scales": f32(n, model.num_bodies, 3, scale=0.05, offset=1),
      "joints": joints, "markers": markers, "frame_valid": np.arange(n) != 4,
      "coordinate_valid": rng.uniform(size=coordinates.shape) > 0.2,
      "markers_valid": rng.uniform(size=markers.shape[:2]) > 0.2,
      "subject": clip // 4, "clip": clip, "frame": frame,
      "movement": np.where(clip == 9, "walk", "squat"), "view": np.where(clip == 4, "a", "b")}
  index = np.array(layout.coordinates)
  predicted = {"coords": coordinates[:, index] + f32(n, len(index), scale=0.05),
               "scales": f32(n, layout.num_scale_groups, 3, scale=0.05, offset=1),
               "joints": f32(n, model.num_joints, 3, scale=0.3),
               "markers": f32(n, model.num_markers, 3, scale=0.3), "loss": 0.5}
  return predicted, truth


def test_validation_and_the_report_agree_on_masked_data(tmp_path):
  model = load_osim()
  layout = make_layout(model, include_root=False, share_mirrored=True)
  predicted, truth = _masked_split(model, layout)
  validation = stages.frame_metrics(model, layout, predicted, truth, RATE)
  axis, extent = metrics.body_extents(model)
  written = report.write_report(stages.predictions(model, layout, predicted, truth),
                                [model.coordinate_names[i] for i in layout.coordinates],
                                model.body_names, axis, extent, tmp_path, RATE)
  for name, key in stages.VALIDATION.items():
    assert np.isfinite(validation[name]) and validation[name] == written[key], name
  assert validation["loss"] == 0.5 and validation["frames"] == len(truth["clip"]) - 1
  # Two of the definitions by hand: MPBLPE pools the valid labels of valid frames ...
  root = model.root_joint
  error = np.linalg.norm((predicted["markers"] - predicted["joints"][:, root, None])
                         - (truth["markers"] - truth["joints"][:, root, None]), axis=-1)
  counted = truth["markers_valid"] & truth["frame_valid"][:, None] & np.isfinite(error)
  assert validation["mpblpe"] == pytest.approx(1000 * error[counted].mean(), rel=1e-6)
  # ... and MV_angle steps from frame t to t + 1 of a clip where both ends count.
  index = np.array(layout.coordinates)
  valid = truth["coordinate_valid"][:, index] & truth["frame_valid"][:, None]
  steps = [np.abs(np.float64(predicted["coords"][i + 1, j]) - predicted["coords"][i, j])
           for i in range(len(truth["clip"]) - 1) for j in range(len(index))
           if truth["clip"][i + 1] == truth["clip"][i]
           and truth["frame"][i + 1] == truth["frame"][i] + 1 and valid[i, j] and valid[i + 1, j]]
  assert validation["mv_angle"] == pytest.approx(np.degrees(np.mean(steps)) * RATE, rel=1e-12)
