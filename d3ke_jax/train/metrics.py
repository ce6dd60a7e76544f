"""The metrics of the D3KE paper (section 3, equation 13, Tables 1-4 and 6), one definition
of each: training's validation (``stage.frame_metrics``) and the evaluation report
(``report``) both compute them from a split's ``Predictions``.

Positions in metres in, millimetres out; angles in radians in, degrees out.

Which entries count. A metric takes ``valid``, a mask over the leading axes of its ground
truth (None: all), and ``Predictions`` makes them from the labels' validity flags:

- angles (``angle_mask``): a coordinate of a valid frame (``frame_valid``) whose
  ``coordinate_valid`` is set (BML-MoVi: the fitted model within 2 cm of the labels);
- markers (``marker_mask``): a marker of a valid frame whose ``marker_valid`` is set
  (BML-MoVi's ``markers_valid``: the label within 2 cm of the fitted model), the markers
  the marker loss trains on;
- scales: every body of a valid frame.

Ground truth that is not finite is a missing label and never counts. Predictions are never
dropped: a non-finite prediction where the truth counts makes the metric NaN. Means pool
every counted entry (a frame with fewer valid markers weighs less); a metric without a
counted entry is NaN. Values are taken in float64, whatever their dtype.
"""

import dataclasses

import numpy as np

from d3ke_jax.skeleton.model import body_points


def counted(true, valid=None, points=False):
  """Where ``valid`` (the leading axes of ``true``, or None) holds and the ground truth
  ``true`` is finite; with ``points`` the last axis of ``true`` is xyz."""
  finite = np.isfinite(true)
  if points:
    finite = finite.all(-1)
  if valid is None:
    return finite
  valid = np.asarray(valid, bool)
  return finite & valid.reshape(valid.shape + (1,) * (finite.ndim - valid.ndim))


def angle_mask(true_coords, frame_valid, coordinate_valid):
  """(N, P) the coordinates that count: valid, of a valid frame, with finite truth."""
  return counted(true_coords, np.asarray(frame_valid)[:, None] & coordinate_valid)


def marker_mask(true_markers, frame_valid, marker_valid=None):
  """(N, M) the markers that count: valid labels (None: all) of valid frames, finite."""
  valid = np.broadcast_to(np.asarray(frame_valid)[:, None], np.shape(true_markers)[:2])
  return counted(true_markers, valid if marker_valid is None else valid & marker_valid,
                 points=True)


def _differences(pred, true, valid, points=False):
  """pred - true at the counted entries, in float64 ((K,) or, with ``points``, (K, 3))."""
  mask = counted(true, valid, points)
  return np.asarray(pred, np.float64)[mask] - np.asarray(true, np.float64)[mask]


def _mean(values):
  return float(np.mean(values)) if values.size else float("nan")


def mae_angle(pred, true, valid=None):
  """MAE_angle (deg): mean absolute error of coordinates (..., P)."""
  return float(np.degrees(_mean(np.abs(_differences(pred, true, valid)))))


def sd_angle(pred, true, valid=None):
  """SD_angle (deg): standard deviation of the coordinate errors."""
  errors = _differences(pred, true, valid)
  return float(np.degrees(np.std(errors))) if errors.size else float("nan")


def rmse_angle(pred, true, valid=None):
  """RMSE of the coordinates (deg)."""
  return float(np.degrees(np.sqrt(_mean(_differences(pred, true, valid)**2))))


def mpblpe(pred, true, valid=None):
  """MPBLPE (mm): mean Euclidean distance of root-relative markers (..., M, 3)
  (``skeleton.root_relative``)."""
  distance = np.linalg.norm(_differences(pred, true, valid, points=True), axis=-1)
  return 1000 * _mean(distance)


def body_extents(model):
  """(longest axis (B,), extent along it in metres (B,)) of every body, from the points
  fixed to it: its origin, its markers and the joints of its children."""
  extent = np.array([np.ptp(points, axis=0) for points in body_points(model)])
  axis = np.argmax(extent, axis=1)
  return axis, extent[np.arange(model.num_bodies), axis]


def mae_body(pred, true, axis, extent, valid=None):
  """MAE_body (mm): |scale error| along each body's longest axis times its extent along it
  (``body_extents``), for scales (..., B, 3) relative to the model."""
  bodies = np.arange(np.shape(true)[-2])
  pred, true = np.asarray(pred)[..., bodies, axis], np.asarray(true)[..., bodies, axis]
  errors = np.abs(_differences(pred, true, valid))
  extent = np.broadcast_to(np.asarray(extent, np.float64), true.shape)[counted(true, valid)]
  return 1000 * _mean(errors * extent)


def rmse_body(pred, true, valid=None):
  """RMSE_body: root mean square error of scale factors (..., B, 3) (unitless)."""
  return float(np.sqrt(_mean(_differences(pred, true, valid)**2)))


def mean_velocity(series, rate, clip, frame, valid=None, points=False):
  """Equation 13, MV: the mean over steps of |s_t - s_(t+1)| * ``rate`` of every value of a
  series (N, ...) of frames ``frame`` (N,) of clips ``clip`` (N,), in deg/s (MV_angle) or,
  with ``points`` (N, M, 3), the Euclidean distance in mm/s (MV_BL).

  A step joins frames t and t + 1 of one clip where both ends count (``valid``, (N, ...):
  the truth's mask, for a prediction as for its truth): never across clips, over a missing
  frame or from or to an invalid value.
  """
  order = np.lexsort((frame, clip))
  series = np.asarray(series, np.float64)[order]
  clip, frame = np.asarray(clip)[order], np.asarray(frame)[order]
  shape = series.shape[:-1] if points else series.shape
  valid = np.ones(shape, bool) if valid is None else np.asarray(valid, bool)[order]
  step = (clip[1:] == clip[:-1]) & (frame[1:] == frame[:-1] + 1)
  both = valid[1:] & valid[:-1] & step.reshape(step.shape + (1,) * (valid.ndim - 1))
  change = series[1:][both] - series[:-1][both]
  if points:
    return float(1000 * _mean(np.linalg.norm(change, axis=-1)) * rate)
  return float(np.degrees(_mean(np.abs(change))) * rate)


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


def _shaped(dims):
  """A dataclass field holding an array of shape ``dims`` (one letter or digit per axis)."""
  return dataclasses.field(metadata={"dims": dims})


@dataclasses.dataclass
class Predictions:
  """Per-frame predictions and ground truth of one split, N frames (any order)."""
  pred_coords: np.ndarray = _shaped("NP")  # radians, the predicted (rotational) coordinates
  true_coords: np.ndarray = _shaped("NP")
  coordinate_valid: np.ndarray = _shaped("NP")  # bool
  frame_valid: np.ndarray = _shaped("N")  # bool; invalid ground truth: left out of every metric
  marker_valid: np.ndarray = _shaped("NM")  # bool, the marker's label
  pred_markers: np.ndarray = _shaped("NM3")  # metres, root-relative (``skeleton.root_relative``)
  true_markers: np.ndarray = _shaped("NM3")
  pred_scales: np.ndarray = _shaped("NB3")  # body scale factors; 1 = the model's size
  true_scales: np.ndarray = _shaped("NB3")
  subject: np.ndarray = _shaped("N")  # int
  movement: np.ndarray = _shaped("N")  # str
  view: np.ndarray = _shaped("N")  # str, camera view, e.g. "frontal", "sagittal"
  clip: np.ndarray = _shaped("N")  # int; one subject + movement + view
  frame: np.ndarray = _shaped("N")  # int, frame index within the clip

  def __post_init__(self):
    sizes = {"3": 3}
    for field in dataclasses.fields(self):
      value = np.asarray(getattr(self, field.name))
      setattr(self, field.name, value)
      dims = field.metadata["dims"]
      bound = [sizes.setdefault(dim, size) for dim, size in zip(dims, value.shape)]
      if value.ndim != len(dims) or list(value.shape) != bound:
        expected = ", ".join(f"{dim}={sizes[dim]}" if dim in sizes else dim for dim in dims)
        raise ValueError(f"Predictions.{field.name} has shape {value.shape}, expected ({expected})")
    for name in ("coordinate_valid", "frame_valid", "marker_valid"):
      dtype = getattr(self, name).dtype
      if dtype != bool:
        raise ValueError(f"Predictions.{name} must be a bool array, got {dtype}")
    self._check_clips()

  def _check_clips(self):
    if len(np.unique(np.stack([self.clip, self.frame], 1), axis=0)) != len(self.clip):
      raise ValueError("Predictions.frame: a frame index repeats within a clip")
    for clip in np.unique(self.clip):
      rows = self.clip == clip
      for name in ("subject", "movement", "view"):
        if len(np.unique(getattr(self, name)[rows])) > 1:
          raise ValueError(f"Predictions.{name}: clip {clip} holds more than one {name}")

  @property
  def angle_mask(self):
    return angle_mask(self.true_coords, self.frame_valid, self.coordinate_valid)

  @property
  def marker_mask(self):
    return marker_mask(self.true_markers, self.frame_valid, self.marker_valid)


def summary(p: Predictions, body_axis, body_extent, rate):
  """Tables 1, 3 and 4 of a split: MPBLPE, MAE_body, RMSE_body, MAE_angle, SD_angle and the
  mean velocities MV (of the predictions and of the truth) over the entries that count;
  bodies' ``body_axis`` and ``body_extent`` (metres) from ``body_extents``, ``rate`` the
  clips' frames per second."""
  angles, markers = p.angle_mask, p.marker_mask

  def velocity(series, valid, points=False):
    return mean_velocity(series, rate, p.clip, p.frame, valid, points)

  return {
      "MPBLPE_mm": mpblpe(p.pred_markers, p.true_markers, markers),
      "MAE_body_mm": mae_body(p.pred_scales, p.true_scales, body_axis, body_extent,
                              p.frame_valid),
      "RMSE_body": rmse_body(p.pred_scales, p.true_scales, p.frame_valid),
      "MAE_angle_deg": mae_angle(p.pred_coords, p.true_coords, angles),
      "SD_angle_deg": sd_angle(p.pred_coords, p.true_coords, angles),
      "MV_BL_mm_s": velocity(p.pred_markers, markers, points=True),
      "MV_angle_deg_s": velocity(p.pred_coords, angles),
      "MV_BL_true_mm_s": velocity(p.true_markers, markers, points=True),
      "MV_angle_true_deg_s": velocity(p.true_coords, angles),
      "frames": int(np.count_nonzero(p.frame_valid)),
  }
