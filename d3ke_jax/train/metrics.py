"""Evaluation metrics of the D3KE paper (section 3, equation 13, Tables 1, 4 and 6).

Positions in metres in, millimetres out; angles in radians in, degrees out.
"""

import numpy as np

from d3ke_jax.skeleton.model import body_points


def mpblpe(pred_markers, true_markers, pred_root, true_root):
  """Mean per bony-landmark position error (mm) after aligning the roots.

  Args: markers (..., M, 3); roots (..., 3), e.g. the pelvis origin.
  """
  pred = np.asarray(pred_markers) - np.asarray(pred_root)[..., None, :]
  true = np.asarray(true_markers) - np.asarray(true_root)[..., None, :]
  return 1000 * float(np.nanmean(np.linalg.norm(pred - true, axis=-1)))


def body_extents(model):
  """(longest axis (B,), extent along it in metres (B,)) of every body, from the points
  fixed to it: its origin, its markers and the joints of its children."""
  extent = np.array([np.ptp(points, axis=0) for points in body_points(model)])
  axis = np.argmax(extent, axis=1)
  return axis, extent[np.arange(model.num_bodies), axis]


def mae_body(model, pred_scales, true_scales, bodies=None):
  """Body-scale error in mm: |scale error| along each body's longest axis times its extent.

  Args: scales (..., B, 3) relative to the model; ``bodies`` restricts the mean.
  """
  axis, extent = body_extents(model)
  index = np.arange(model.num_bodies)
  error = np.abs(np.asarray(pred_scales)[..., index, axis] - np.asarray(true_scales)[..., index,
                                                                                      axis])
  error = error * extent * 1000
  return float(np.mean(error if bodies is None else error[..., bodies]))


def rmse_body(pred_scales, true_scales):
  """Root mean square error of the predicted scale factors (unitless, relative to the model)."""
  return float(np.sqrt(np.mean((np.asarray(pred_scales) - np.asarray(true_scales))**2)))


def mae_angle(pred, true):
  """Mean absolute coordinate error in degrees."""
  return float(np.degrees(np.nanmean(np.abs(np.asarray(pred) - np.asarray(true)))))


def sd_angle(pred, true):
  """Standard deviation of coordinate errors in degrees."""
  return float(np.degrees(np.nanstd(np.asarray(pred) - np.asarray(true))))


def mean_velocity(series, dt, points=False):
  """Equation 13: mean over time of |s_t - s_(t+1)| / dt, for a (T, ...) series.

  With ``points`` the last axis is xyz and the distance is Euclidean (MV_BL, mm/s);
  otherwise values are angles (MV_angle, deg/s).
  """
  step = np.diff(np.asarray(series, float), axis=0)
  if points:
    return 1000 * float(np.nanmean(np.linalg.norm(step, axis=-1)) / dt)
  return float(np.degrees(np.nanmean(np.abs(step))) / dt)


def pearson(pred, true):
  """Pearson correlation of each column of (T, C) series (NaN where a series is constant)."""
  pred, true = np.asarray(pred, float), np.asarray(true, float)
  pred = pred - pred.mean(0)
  true = true - true.mean(0)
  denominator = np.sqrt(np.sum(pred**2, 0) * np.sum(true**2, 0))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(denominator > 0, np.sum(pred * true, 0) / denominator, np.nan)


def summarize(values, groups):
  """{group: {median, iqr, mean, std, n}} of per-item values (Table 6's central tendencies)."""
  values, groups = np.asarray(values, float), np.asarray(groups)
  out = {}
  for group in dict.fromkeys(groups.tolist()):
    v = values[groups == group]
    v = v[np.isfinite(v)]
    q1, median, q3 = np.percentile(v, [25, 50, 75]) if v.size else (np.nan,) * 3
    out[group] = {"median": float(median), "iqr": float(q3 - q1), "mean": float(np.mean(v))
                  if v.size else np.nan, "std": float(np.std(v)) if v.size else np.nan,
                  "n": int(v.size)}
  return out
