"""The evaluation report on synthetic splits whose metrics are known by construction."""

import csv
import dataclasses
import itertools

import numpy as np
import pytest

from d3ke_jax.errors import UserError
from d3ke_jax.train.metrics import Predictions
from d3ke_jax.train.report import write_report

FPS = 50.0
FRAMES = 20
KEYS = list(itertools.product((7, 8), ("walk", "squat"), ("frontal", "sagittal")))  # one per clip
COORDINATES = ("hip_flexion_r", "knee_angle_r", "ankle_angle_r")
BODIES, BODY_AXIS, BODY_EXTENT = ("femur_r", "tibia_r"), (1, 0), (0.4, 0.25)  # metres
INVALID_FRAMES = (5, 3 * FRAMES + 10)  # frame 5 of clip 0, frame 10 of clip 3
INVALID_ENTRY = (FRAMES + 7, 2)  # frame 7 of clip 1, ankle


def make_split():
  """Perfect predictions: angles ramp by 1 deg and markers by 10 mm (along x) per frame, each
  clip starting elsewhere (so differencing across clips would show); scales all 1."""
  clip = np.repeat(np.arange(len(KEYS)), FRAMES)
  frame = np.tile(np.arange(FRAMES), len(KEYS))
  subject, movement, view = (np.array([key[i] for key in KEYS]).repeat(FRAMES) for i in range(3))
  coords = np.radians(np.repeat(frame + 30.0 * clip, 3).reshape(-1, 3))
  markers = np.zeros((len(clip), 4, 3))
  markers[..., 0] = 0.01 * frame[:, None] + clip[:, None]
  markers[..., 1] = 0.1 * np.arange(4)
  frame_valid = np.ones(len(clip), bool)
  frame_valid[list(INVALID_FRAMES)] = False
  coordinate_valid = np.ones(coords.shape, bool)
  coordinate_valid[INVALID_ENTRY] = False
  return Predictions(pred_coords=coords.copy(), true_coords=coords,
                     coordinate_valid=coordinate_valid, frame_valid=frame_valid,
                     marker_valid=np.ones(markers.shape[:2], bool), pred_markers=markers.copy(), true_markers=markers,
                     pred_scales=np.ones((len(clip), 2, 3)), true_scales=np.ones((len(clip), 2, 3)),
                     subject=subject, movement=movement, view=view, clip=clip, frame=frame)


def write(split, out_dir, **kwargs):
  """write_report after filling the invalid frames and coordinates with huge errors."""
  invalid = ~split.coordinate_valid | ~split.frame_valid[:, None]
  split.pred_coords[invalid] = 1e3
  split.true_coords[invalid] = -1e3
  split.pred_markers[~split.frame_valid] = 1e2
  split.pred_scales[~split.frame_valid] = 50.0
  return write_report(split, COORDINATES, BODIES, BODY_AXIS, BODY_EXTENT, out_dir, FPS,
                      **kwargs)


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def read_markdown(path):
  with open(path) as f:
    lines = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in f]
  assert set(lines[1]) == {"---"}
  return [dict(zip(lines[0], cells)) for cells in lines[2:]]


def rows_by(rows, *keys):
  return {tuple(row[key] for key in keys): row for row in rows}


def test_angle_errors_per_coordinate_exclude_invalid_frames(tmp_path):
  split = make_split()
  split.pred_coords[:, 0] += np.radians(2.0)
  result = write(split, tmp_path)
  errors = np.r_[np.full(158, 2.0), np.zeros(2 * 158 - 1)]  # valid hip, knee, ankle entries
  assert result["MAE_angle_deg"] == pytest.approx(errors.mean())
  assert result["SD_angle_deg"] == pytest.approx(errors.std())
  assert result["frames"] == len(split.clip) - len(INVALID_FRAMES)
  table = rows_by(read_csv(tmp_path / "per_coordinate.csv"), "coordinate", "view")
  for view in ("all", "frontal", "sagittal"):
    for name, error in zip(COORDINATES, (2.0, 0.0, 0.0)):
      row = table[name, view]
      assert float(row["MAE_deg"]) == pytest.approx(error, abs=1e-9)
      assert float(row["RMSE_deg"]) == pytest.approx(error, abs=1e-9)
      assert float(row["rho"]) == pytest.approx(1.0)
  assert int(table["hip_flexion_r", "all"]["frames"]) == 158
  assert int(table["ankle_angle_r", "all"]["frames"]) == 157
  assert int(table["hip_flexion_r", "frontal"]["frames"]) == 79
  markdown = rows_by(read_markdown(tmp_path / "per_coordinate.md"), "coordinate", "view")
  assert markdown["hip_flexion_r", "sagittal"]["MAE_deg"] == "2.00"
  assert markdown["hip_flexion_r", "sagittal"]["rho"] == "1.000"
  summary = read_markdown(tmp_path / "summary.md")[0]
  assert summary["MAE_angle_deg"] == "0.67" and summary["frames"] == "158"


def test_group_tables_split_errors_by_movement_subject_and_view(tmp_path):
  split = make_split()
  error = np.where(split.movement == "squat", 4.0, 1.0) * np.where(split.view == "sagittal", 2, 1)
  split.pred_coords += np.radians(error)[:, None]
  marker_error = np.where(split.view == "sagittal", 2, 1)[:, None, None] * [0.0018, 0.0024, 0]
  split.pred_markers += marker_error  # 3 mm frontal, 6 mm sagittal
  split.frame_valid[:] = True  # frontal and sagittal frames weigh the same
  split.coordinate_valid[:] = True
  write(split, tmp_path)
  movement = rows_by(read_csv(tmp_path / "per_movement.csv"), "movement")
  assert float(movement["walk",]["MAE_deg"]) == pytest.approx(1.5)  # 1 frontal, 2 sagittal
  assert float(movement["squat",]["MAE_deg"]) == pytest.approx(6.0)
  assert float(movement["walk",]["RMSE_deg"]) == pytest.approx(np.sqrt(2.5))
  assert float(movement["walk",]["MPBLPE_mm"]) == pytest.approx(4.5)
  view = rows_by(read_csv(tmp_path / "per_view.csv"), "view")
  assert float(view["frontal",]["MAE_deg"]) == pytest.approx(2.5)  # walk 1, squat 4
  assert float(view["sagittal",]["MAE_deg"]) == pytest.approx(5.0)
  assert float(view["sagittal",]["MPBLPE_mm"]) == pytest.approx(6.0)
  subject = rows_by(read_csv(tmp_path / "per_subject.csv"), "subject")
  assert set(subject) == {("7",), ("8",)}
  assert int(subject["7",]["frames"]) == 80 and int(subject["8",]["frames"]) == 80
  assert read_markdown(tmp_path / "per_movement.md")[0]["MPBLPE_mm"] == "4.50"


def test_summary_marker_and_body_scale_errors(tmp_path):
  split = make_split()
  split.pred_markers += np.array([0.0018, 0.0024, 0.0])  # 3 mm from the truth
  split.pred_scales[:, 0, 1] = 1.1  # femur along its longest axis (y): 10% of 400 mm
  split.pred_scales[:, 1, 2] = 1.2  # tibia off its longest axis: no MAE_body, but RMSE
  result = write(split, tmp_path)
  assert result["MPBLPE_mm"] == pytest.approx(3.0)
  assert result["MAE_body_mm"] == pytest.approx(20.0)
  assert result["RMSE_body"] == pytest.approx(np.sqrt((0.01 + 0.04) / 6))
  summary = read_csv(tmp_path / "summary.csv")[0]
  assert float(summary["MPBLPE_mm"]) == pytest.approx(3.0)
  for row in read_csv(tmp_path / "per_view.csv"):  # both views hold an invalid frame
    assert float(row["MPBLPE_mm"]) == pytest.approx(3.0)
  bodies = rows_by(read_csv(tmp_path / "per_body.csv"), "body")
  assert float(bodies["femur_r",]["MAE_body_mm"]) == pytest.approx(40.0)
  assert float(bodies["tibia_r",]["MAE_body_mm"]) == pytest.approx(0.0)
  assert float(bodies["femur_r",]["RMSE_body"]) == pytest.approx(np.sqrt(0.01 / 3))
  assert float(bodies["tibia_r",]["RMSE_body"]) == pytest.approx(np.sqrt(0.04 / 3))
  markdown = rows_by(read_markdown(tmp_path / "per_body.md"), "body")
  assert markdown["femur_r",]["RMSE_body"] == "0.058"
  assert markdown["femur_r",]["MAE_body_mm"] == "40.00"


def test_mean_velocity_within_clips_over_valid_steps(tmp_path):
  split = make_split()
  split.pred_coords *= 2.0  # twice the true angular velocity
  split.pred_markers[..., 0] *= 3.0  # three times the true marker velocity
  result = write(split, tmp_path)
  assert result["MV_angle_true_deg_s"] == pytest.approx(1.0 * FPS)  # 50 deg/s
  assert result["MV_angle_deg_s"] == pytest.approx(2.0 * FPS)
  assert result["MV_BL_true_mm_s"] == pytest.approx(10.0 * FPS)  # 500 mm/s
  assert result["MV_BL_mm_s"] == pytest.approx(30.0 * FPS)
  summary = read_csv(tmp_path / "summary.csv")[0]
  assert float(summary["MV_BL_true_mm_s"]) == pytest.approx(500.0)


def test_rho_is_the_mean_of_per_clip_correlations(tmp_path):
  split = make_split()
  clip_offset = np.radians(-50.0 * split.clip)  # per clip ρ stays 1, a pooled ρ is negative
  split.pred_coords[:, 0] += clip_offset
  split.pred_coords[:, 1] = split.true_coords[:, 1] * -1  # anticorrelated in every clip
  split.pred_coords[split.clip == 0, 2] = 0.5  # constant: no correlation in clip 0
  split.pred_coords[split.clip == 1, 2] *= -1  # anticorrelated in clip 1
  write(split, tmp_path)
  table = rows_by(read_csv(tmp_path / "per_coordinate.csv"), "coordinate", "view")
  assert float(table["hip_flexion_r", "all"]["rho"]) == pytest.approx(1.0)
  assert float(table["knee_angle_r", "all"]["rho"]) == pytest.approx(-1.0)
  assert float(table["ankle_angle_r", "all"]["rho"]) == pytest.approx((6 - 1) / 7)
  assert float(table["ankle_angle_r", "sagittal"]["rho"]) == pytest.approx((3 - 1) / 4)
  assert float(table["ankle_angle_r", "frontal"]["rho"]) == pytest.approx(1.0)


def test_table6_median_and_iqr_across_items(tmp_path):
  split = make_split()
  subject_index = (split.subject == 8).astype(float)
  movement_index = (split.movement == "squat").astype(float)
  view_factor = np.where(split.view == "sagittal", 2.0, 1.0)
  error = (1 + movement_index + 2 * subject_index)[:, None] + np.arange(3)
  split.pred_coords += np.radians(error * view_factor[:, None])
  split.frame_valid[:] = True  # every item weighs its frames equally
  split.coordinate_valid[:] = True
  write(split, tmp_path)
  table = rows_by(read_csv(tmp_path / "table6.csv"), "group", "view")
  # Frontal errors 1 + m + 2 s + j: joints 2.5, 3.5, 4.5; movements 3, 4; participants 2.5, 4.5.
  expected = {"joint": (3.5, 1.0, 3), "movement": (3.5, 0.5, 2), "participant": (3.5, 1.0, 2)}
  for group, (median, iqr, items) in expected.items():
    for view, factor in (("frontal", 1), ("sagittal", 2)):
      row = table[group, view]
      assert float(row["MAE_deg_median"]) == pytest.approx(factor * median)
      assert float(row["MAE_deg_iqr"]) == pytest.approx(factor * iqr)
      assert int(row["items"]) == items
      assert float(row["rho_median"]) == pytest.approx(1.0)
  joint = table["joint", "frontal"]
  assert float(joint["MAE_deg_mean"]) == pytest.approx(3.5)
  assert float(joint["MAE_deg_std"]) == pytest.approx(np.sqrt(2 / 3))
  rmse = [np.sqrt(np.mean((np.arange(1, 5) + j)**2)) for j in range(3)]  # per joint
  assert float(joint["RMSE_deg_median"]) == pytest.approx(rmse[1])
  markdown = rows_by(read_markdown(tmp_path / "table6.md"), "group", "view")
  assert markdown["movement", "sagittal"]["MAE_deg_median"] == "7.00"
  assert markdown["movement", "sagittal"]["rho_iqr"] == "0.000"


def test_plots_are_png_files_and_defaults_pick_the_longest_clip(tmp_path):
  split = make_split()
  split.true_coords[:, 1] *= 3  # the knee varies most
  split.pred_coords[:, 1] *= 3
  keep = ~((split.clip == 0) & (split.frame >= 15))  # clip 0 shorter: clip 1 is the longest
  split = Predictions(**{field.name: getattr(split, field.name)[keep]
                         for field in dataclasses.fields(split)})
  result = write(split, tmp_path)
  assert result["angle_over_time"] == {"coordinate": "knee_angle_r", "clip": 1}
  for name in ("per_coordinate_mae.png", "angle_over_time.png"):
    path = tmp_path / name
    assert result["paths"][name] == str(path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
  chosen = write(make_split(), tmp_path / "chosen", coordinate="ankle_angle_r", clip=5)
  assert chosen["angle_over_time"] == {"coordinate": "ankle_angle_r", "clip": 5}
  written = {path.name for path in (tmp_path / "chosen").iterdir()}
  assert written == set(chosen["paths"]) and len(written) == 16  # no temporary files left


@pytest.mark.parametrize("kwargs, message", [
    ({"coordinate": "elbow_flexion"}, "'elbow_flexion'.*hip_flexion_r, knee_angle_r"),
    ({"clip": 99}, "clip 99 .*clips: 0, 1, 2"),
])
def test_unknown_plot_choice_fails_before_writing(tmp_path, kwargs, message):
  with pytest.raises(UserError, match=message):
    write(make_split(), tmp_path / "out", **kwargs)
  assert not (tmp_path / "out").exists()


def test_mismatched_shapes_name_the_field(tmp_path):
  split = make_split()
  fields = {field.name: getattr(split, field.name) for field in dataclasses.fields(split)}
  with pytest.raises(ValueError, match="true_coords"):
    Predictions(**{**fields, "true_coords": fields["true_coords"][:, :2]})
  with pytest.raises(ValueError, match="pred_markers"):
    Predictions(**{**fields, "pred_markers": fields["pred_markers"][:-1]})
  with pytest.raises(ValueError, match="frame_valid must be a bool"):
    Predictions(**{**fields, "frame_valid": fields["frame_valid"].astype(int)})
  with pytest.raises(ValueError, match="coordinate_names"):
    write_report(make_split(), COORDINATES[:2], BODIES, BODY_AXIS, BODY_EXTENT, tmp_path, FPS)
  with pytest.raises(ValueError, match="body_extent"):
    write_report(make_split(), COORDINATES, BODIES, BODY_AXIS, (1.0,), tmp_path, FPS)
  split = make_split()
  split.pred_coords[3, 1] = np.nan  # a valid frame
  with pytest.raises(ValueError, match="pred_coords is not finite"):
    write_report(split, COORDINATES, BODIES, BODY_AXIS, BODY_EXTENT, tmp_path, FPS)
