"""The evaluation report of the D3KE paper: CSV and Markdown tables and PNG plots of one split.

Tables 1-4 (``summary``, ``per_body``), the per coordinate, movement, subject and view
breakdowns and Table 6 (median and IQR across a group's items, per camera view) of sections
3.1.1, 3.2 and 3.4, and the angle-over-time plot of Figure 5, each metric as ``metrics``
defines it (which entries count included). Pearson's ρ is always the mean of per-clip
correlations over the angles that count (NaN-safe: a constant series has none).
"""

import csv
import dataclasses
import os

import numpy as np
from matplotlib.figure import Figure

from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import atomic_write, save_png
from d3ke_jax.train import metrics

# Table 6's groups and the field naming their items (a joint is a column of the coordinates)
_TABLE6_GROUPS = {"joint": "coordinate", "movement": "movement", "participant": "subject"}


def write_report(predictions, coordinate_names, body_names, body_axis, body_extent, out_dir,
                 fps, coordinate=None, clip=None, frames_per_s=float("nan")):
  """Writes the evaluation report of ``predictions`` (``metrics.Predictions``) into
  ``out_dir`` (every file atomically).

  Args:
    coordinate_names: (P,) names of the predicted coordinates.
    body_names, body_axis, body_extent: (B,) each body's name, longest axis (0, 1 or 2) and
      extent along it in metres (``metrics.body_extents``).
    fps: frame rate of the clips, for the mean velocities MV (equation 13).
    coordinate, clip: what ``angle_over_time.png`` shows; by default the first of the clips
      with the most frames and, within it, the coordinate whose ground truth varies most.
    frames_per_s: how fast the predictions were made (images to kinematics: the networks,
      and scaling and IK for the multi-step baseline), for the summary; NaN if not measured.

  Returns the summary metrics, the plotted ``angle_over_time`` {coordinate, clip} and the
  ``paths`` written ({file name: path}).
  """
  p = predictions
  coordinate_names = [str(name) for name in coordinate_names]
  _check_inputs(p, coordinate_names, body_names, body_axis, body_extent, fps)
  body_axis = np.asarray(body_axis).astype(int)
  evaluation = _evaluate(p)
  shown_clip = _choose_clip(p, clip)
  shown_coordinate = _choose_coordinate(evaluation, coordinate_names, coordinate, shown_clip)
  summary = dict(metrics.summary(p, body_axis, body_extent, fps),
                 frames_per_s=float(frames_per_s))
  per_coordinate = _per_coordinate(evaluation, coordinate_names)
  tables = {
      "summary": [summary],
      "per_coordinate": per_coordinate,
      "per_movement": _per_group(evaluation, "movement"),
      "per_subject": _per_group(evaluation, "subject"),
      "per_view": _per_group(evaluation, "view"),
      "per_body": _per_body(p, body_names, body_axis, body_extent),
      "table6": _table6(evaluation),
  }
  paths = {}
  for name, rows in tables.items():
    paths.update(write_table(out_dir, name, rows))
  mae = {row["coordinate"]: row["MAE_deg"] for row in per_coordinate if row["view"] == "all"}
  paths["per_coordinate_mae.png"] = _plot_mae(os.path.join(out_dir, "per_coordinate_mae.png"),
                                              mae)
  paths["angle_over_time.png"] = _plot_angle_over_time(
      os.path.join(out_dir, "angle_over_time.png"), evaluation, shown_clip,
      coordinate_names.index(shown_coordinate), shown_coordinate, fps)
  return {**summary, "angle_over_time": {"coordinate": shown_coordinate, "clip": shown_clip},
          "paths": paths}


def _check_inputs(p, coordinate_names, body_names, body_axis, body_extent, fps):
  """Raises ValueError, naming the argument, unless the names and sizes match ``p`` and the
  predictions are finite wherever the truth counts."""
  num_coordinates, num_bodies = p.pred_coords.shape[1], p.pred_scales.shape[1]
  for name, value, size in (("coordinate_names", coordinate_names, num_coordinates),
                            ("body_names", body_names, num_bodies),
                            ("body_axis", body_axis, num_bodies),
                            ("body_extent", body_extent, num_bodies)):
    if np.shape(value) != (size,):
      raise ValueError(f"{name} has shape {np.shape(value)}, expected ({size},) to match the "
                       "predictions")
  if not np.isin(body_axis, (0, 1, 2)).all():
    raise ValueError(f"body_axis must hold axes 0, 1 or 2, got {list(body_axis)}")
  if not fps > 0:
    raise ValueError(f"fps must be positive, got {fps}")
  if not p.frame_valid.any():
    raise ValueError("Predictions.frame_valid: no valid frame to evaluate")
  for name, counted in (("pred_coords", p.angle_mask), ("pred_markers", p.marker_mask),
                        ("pred_scales", p.frame_valid)):
    if not np.isfinite(getattr(p, name)[counted]).all():
      raise ValueError(f"Predictions.{name} is not finite where the truth counts (mark such "
                       "frames or entries invalid)")


@dataclasses.dataclass
class _Evaluation:
  """A split's predictions with the derived arrays the tables share."""
  p: metrics.Predictions
  angles: np.ndarray  # (N, P) bool, the angles that count
  markers: np.ndarray  # (N, M) bool, the markers that count
  clips: dict  # {"clip" | "subject" | "movement" | "view": (C,) value of each clip}
  clip_rows: list  # (C,) indices of each clip's frames
  rho: np.ndarray  # (C, P) Pearson ρ of each coordinate within each clip


def _evaluate(p):
  angles = p.angle_mask
  _, first = np.unique(p.clip, return_index=True)
  first = np.sort(first)  # clips in order of appearance
  clips = {key: getattr(p, key)[first] for key in ("clip", "subject", "movement", "view")}
  clip_rows = [np.flatnonzero(p.clip == clip) for clip in clips["clip"]]
  rho = np.array([_pearson_columns(p.pred_coords[rows], p.true_coords[rows], angles[rows])
                  for rows in clip_rows])
  return _Evaluation(p, angles, p.marker_mask, clips, clip_rows, rho)


def _pearson_columns(pred, true, valid):
  """Pearson ρ of each column over its ``valid`` entries (NaN with fewer than two)."""
  rho = np.full(pred.shape[1], np.nan)
  for j in range(pred.shape[1]):
    ok = valid[:, j]
    if ok.sum() >= 2:
      rho[j] = metrics.pearson(pred[ok, j, None], true[ok, j, None])[0]
  return rho


def _unique(values):
  """The distinct values in order of first appearance."""
  return list(dict.fromkeys(np.asarray(values).tolist()))


def _choose_clip(p, clip):
  ids = _unique(p.clip)
  if clip is None:
    counts = [np.count_nonzero(p.clip == c) for c in ids]
    return ids[int(np.argmax(counts))]
  if clip not in ids:
    listed = ", ".join(map(str, ids[:10])) + (f", ... ({len(ids)} clips)" if len(ids) > 10 else "")
    raise UserError(f"clip {clip!r} is not in the predictions; clips: {listed}")
  return clip


def _choose_coordinate(evaluation, names, coordinate, clip):
  if coordinate is None:
    rows = evaluation.p.clip == clip
    true, valid = evaluation.p.true_coords[rows], evaluation.angles[rows]
    variance = [np.var(true[valid[:, j], j]) if valid[:, j].any() else -1
                for j in range(len(names))]
    return names[int(np.argmax(variance))]
  if coordinate not in names:
    raise UserError(f"coordinate {coordinate!r} is not a predicted coordinate; choose from: "
                     f"{', '.join(names)}")
  return coordinate


def _select(evaluation, **equal):
  """(frames (N,), clips (C,)) masks of the frames and clips whose fields equal ``equal``."""
  frames = np.ones(len(evaluation.p.clip), bool)
  clips = np.ones(len(evaluation.clips["clip"]), bool)
  for key, value in equal.items():
    frames &= getattr(evaluation.p, key) == value
    clips &= evaluation.clips[key] == value
  return frames, clips


def _nanmean(values):
  values = np.asarray(values, float)
  return float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else np.nan


def _angle_metrics(evaluation, frames, clips, columns):
  """Frames, MAE and RMSE (deg) and mean per-clip ρ of the selected frames and coordinates."""
  selected = np.ix_(frames, columns)
  p = evaluation.p
  pred, true, valid = p.pred_coords[selected], p.true_coords[selected], evaluation.angles[selected]
  count = int(valid.any(1).sum())
  if not count:
    return {"frames": 0, "MAE_deg": np.nan, "RMSE_deg": np.nan, "rho": np.nan}
  return {"frames": count, "MAE_deg": metrics.mae_angle(pred, true, valid),
          "RMSE_deg": metrics.rmse_angle(pred, true, valid),
          "rho": _nanmean(evaluation.rho[clips][:, columns])}


def _per_coordinate(evaluation, names):
  """Each coordinate over all views, then per view."""
  rows = []
  for j, name in enumerate(names):
    for view in ["all"] + _unique(evaluation.clips["view"]):
      selection = _select(evaluation) if view == "all" else _select(evaluation, view=view)
      rows.append({"coordinate": name, "view": view,
                   **_angle_metrics(evaluation, *selection, [j])})
  return rows


def _per_group(evaluation, key):
  """Each value of ``key`` (movement, subject or view): angle metrics and MPBLPE."""
  p = evaluation.p
  every_coordinate = np.arange(p.pred_coords.shape[1])
  rows = []
  for value in _unique(evaluation.clips[key]):
    frames, clips = _select(evaluation, **{key: value})
    rows.append({key: value, **_angle_metrics(evaluation, frames, clips, every_coordinate),
                 "MPBLPE_mm": metrics.mpblpe(p.pred_markers[frames], p.true_markers[frames],
                                             evaluation.markers[frames])})
  return rows


def _per_body(p, body_names, body_axis, body_extent):
  """Table 2: RMSE of all three scale factors and MAE_body of each body."""
  rows = []
  for b, name in enumerate(body_names):
    pred, true = p.pred_scales[:, b:b + 1], p.true_scales[:, b:b + 1]
    rows.append({"body": str(name), "RMSE_body": metrics.rmse_body(pred, true, p.frame_valid),
                 "MAE_body_mm": metrics.mae_body(pred, true, body_axis[b:b + 1],
                                                 np.asarray(body_extent)[b:b + 1],
                                                 p.frame_valid)})
  return rows


def _item_metrics(evaluation, group, view):
  """Angle metrics of every item of a Table 6 group (joint, movement, participant) in ``view``."""
  num_coordinates = evaluation.p.pred_coords.shape[1]
  if group == "joint":
    frames, clips = _select(evaluation, view=view)
    return [_angle_metrics(evaluation, frames, clips, [j]) for j in range(num_coordinates)]
  key = _TABLE6_GROUPS[group]
  return [_angle_metrics(evaluation, *_select(evaluation, view=view, **{key: item}),
                         np.arange(num_coordinates)) for item in _unique(evaluation.clips[key])]


def _table6(evaluation):
  """Table 6: median, IQR, mean and std across a group's items, per group and camera view."""
  rows = []
  for group in _TABLE6_GROUPS:
    for view in _unique(evaluation.clips["view"]):
      items = _item_metrics(evaluation, group, view)
      views = [view] * len(items)
      stats = {metric: metrics.summarize([item[metric] for item in items], views)[view]
               for metric in ("MAE_deg", "RMSE_deg", "rho")}
      rows.append({"group": group, "view": view, "items": stats["MAE_deg"]["n"],
                   **{f"{metric}_{stat}": values[stat] for metric, values in stats.items()
                      for stat in ("median", "iqr", "mean", "std")}})
  return rows


def write_table(out_dir, name, rows, title=None):
  """Writes ``rows`` (dicts with the same keys) as ``name``.csv and ``name``.md (headed by
  ``title`` when given)."""
  columns = list(rows[0])
  paths = {f"{name}.csv": os.path.join(out_dir, f"{name}.csv"),
           f"{name}.md": os.path.join(out_dir, f"{name}.md")}
  with atomic_write(paths[f"{name}.csv"]) as f:
    writer = csv.DictWriter(f, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
  lines = [columns, ["---"] * len(columns)]
  lines += [[_format(column, row[column]) for column in columns] for row in rows]
  with atomic_write(paths[f"{name}.md"]) as f:
    if title:
      f.write(f"# {title}\n\n")
    f.writelines("| " + " | ".join(cells) + " |\n" for cells in lines)
  return paths


def _format(column, value):
  """3 decimals for ρ and RMSE_body, 2 for other floats (deg, mm); text with pipes escaped."""
  if isinstance(value, float):
    return f"{value:.{3 if column.startswith(('rho', 'RMSE_body')) else 2}f}"
  return str(value).replace("|", "\\|")


def _plot_mae(path, mae):
  """Horizontal bars of the MAE of each coordinate ({name: deg}), the largest on top."""
  names = sorted(mae, key=lambda name: mae[name])
  figure = Figure(figsize=(6, 1.5 + 0.25 * len(names)), layout="constrained")
  axes = figure.add_subplot()
  axes.barh(np.arange(len(names)), [mae[name] for name in names], color="tab:blue")
  axes.set_yticks(np.arange(len(names)), names)
  axes.set_xlabel("MAE (deg)")
  axes.set_ylabel("coordinate")
  axes.set_title("Mean absolute error per coordinate")
  return save_png(figure, path)


def _plot_angle_over_time(path, evaluation, clip, j, name, fps):
  """Figure 5, bottom row: predicted (blue) and true (orange) angle of one clip over time,
  with gaps where the ground truth is invalid."""
  p = evaluation.p
  rows = np.flatnonzero(p.clip == clip)
  rows = rows[np.argsort(p.frame[rows])]
  time = p.frame[rows] / fps
  shown = lambda values: np.degrees(np.where(evaluation.angles[rows, j], values[rows, j], np.nan))
  figure = Figure(figsize=(8, 3.5), layout="constrained")
  axes = figure.add_subplot()
  axes.plot(time, shown(p.pred_coords), color="tab:blue", label="predicted")
  axes.plot(time, shown(p.true_coords), color="tab:orange", label="ground truth")
  axes.set_xlabel("time (s)")
  axes.set_ylabel(f"{name} (deg)")
  first = rows[0]
  axes.set_title(f"{name}: subject {p.subject[first]}, {p.movement[first]}, {p.view[first]} "
                 f"view (clip {clip})")
  axes.legend()
  return save_png(figure, path)
