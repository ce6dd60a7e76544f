"""The uncertainty head's calibration and how good its scales are.

A run with the head (``model.uncertainty_head``) gets one temperature per output
(``uncertainty.temperatures``), fitted on the validation split and kept beside the run as
``calibration.json`` {step, split, temperatures: {coords, scales, rotation}}. On a split,
``judge`` reports per coordinate and overall: the coverage of the calibrated central 50 %
and 90 % Laplace intervals, Spearman's rho between the predicted scale and the absolute
error, and the MAE of the most confident half of the frames against all frames; the
risk-coverage curve (MAE_angle of the most confident frames against their fraction) goes
to a PNG. ``judge_groups`` reports the same per group of frames (the synthetic dataset's
clean and hard frames), with the mean calibrated standard deviation beside the MAE.
"""

import json
import os

import numpy as np
import scipy.stats
from matplotlib.figure import Figure

from d3ke_jax.io.atomic import atomic_write, save_png
from d3ke_jax.nets import uncertainty as uncertainty_lib
from d3ke_jax.nets.uncertainty import Uncertainty
from d3ke_jax.runs import ConfigError

CALIBRATION_FILE = "calibration.json"
PREFIX = "uncertainty_"  # the prediction arrays' keys: uncertainty_coords, ...
PROBABILITIES = (0.5, 0.9)
COVERAGES = np.linspace(0.05, 1.0, 20)  # the risk-coverage curve's points


def has_uncertainty(predicted):
  """Whether prediction arrays (``stage.prediction_arrays``) hold a head's scales."""
  return PREFIX + "coords" in predicted


def scales_of(predicted):
  """The ``Uncertainty`` of prediction arrays."""
  return Uncertainty(*(np.asarray(predicted[PREFIX + f], np.float32)
                       for f in Uncertainty._fields))


def split_errors(layout, predicted, truth):
  """(errors, valid): ``Uncertainty``-shaped absolute errors of prediction arrays against a
  split's labels (``per_frame.split_labels``) and where they count; the rotation counts
  only where the labels hold ``pelvis_rotation``."""
  index = np.array(layout.coordinates)
  groups = np.array([g[0] for g in layout.body_groups])
  frame = np.asarray(truth["frame_valid"], bool)
  true_coords = truth["coordinates"][:, index]
  coords = np.abs(predicted["coords"] - true_coords)
  coords_valid = frame[:, None] & truth["coordinate_valid"][:, index] & np.isfinite(true_coords)
  scales = np.abs(predicted["scales"] - truth["scales"][:, groups])
  if "pelvis_rotation" in truth:
    rotation = np.asarray(uncertainty_lib.rotation_angle(
        np.asarray(predicted["rotation"], np.float32),
        np.asarray(truth["pelvis_rotation"], np.float32)))
    rotation_valid = frame
  else:
    rotation, rotation_valid = np.zeros(len(frame)), np.zeros(len(frame), bool)
  return (Uncertainty(np.nan_to_num(coords), np.nan_to_num(scales), rotation),
          Uncertainty(coords_valid, np.broadcast_to(frame[:, None, None], scales.shape),
                      rotation_valid))


def fit(layout, predicted, truth):
  """The temperatures (``Uncertainty`` of float32 arrays) of prediction arrays with a head's
  scales, on a split's labels."""
  error, valid = split_errors(layout, predicted, truth)
  return Uncertainty(*(uncertainty_lib.temperatures(e, b, v).astype(np.float32)
                       for e, b, v in zip(error, scales_of(predicted), valid)))


def save(workdir, step, temperatures, split="validation"):
  """Writes ``calibration.json`` into ``workdir`` atomically (call from process 0 only)."""
  content = {"step": int(step), "split": split,
             "temperatures": {k: np.asarray(v).tolist()
                              for k, v in temperatures._asdict().items()}}
  with atomic_write(os.path.join(workdir, CALIBRATION_FILE)) as f:
    json.dump(content, f, indent=1)


def load(workdir):
  """(step, temperatures) of the run's ``calibration.json``; None where there is none."""
  path = os.path.join(workdir, CALIBRATION_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      content = json.load(f)
    temperatures = Uncertainty(*(np.asarray(content["temperatures"][k], np.float32)
                                 for k in Uncertainty._fields))
    return int(content["step"]), temperatures
  except (ValueError, KeyError, TypeError) as e:
    raise ConfigError(f"{path}: not a calibration ({type(e).__name__}: {e}); remove it to "
                      "fit it again") from None


def coverage(error, b, valid, probability):
  """(per column, overall) fraction of valid errors (N, ...) inside the central interval of
  ``probability`` of Laplace scales ``b``."""
  inside = error <= uncertainty_lib.half_width(b, probability)
  return _mean(inside, valid, 0), _mean(inside, valid, None)


def spearman(b, error, valid):
  """(per column, mean over columns) Spearman's rho of scales and absolute errors (N, P)
  over valid rows; NaN for a column with fewer than 3 of them or constant values."""
  rho = np.full(b.shape[1], np.nan)
  for j in range(b.shape[1]):
    rows = valid[:, j]
    if rows.sum() >= 3 and np.ptp(b[rows, j]) > 0 and np.ptp(error[rows, j]) > 0:
      rho[j] = scipy.stats.spearmanr(b[rows, j], error[rows, j]).statistic
  return rho, _nanmean(rho)


def risk_coverage(confidence, error, valid, fractions=COVERAGES):
  """Mean error (N, P) over valid entries of the ``fractions`` of the frames with one (the
  frames that count) with the smallest ``confidence`` (N,), a scale: lower is surer."""
  counted = np.flatnonzero(valid.reshape(len(valid), -1).any(1))
  order = counted[np.argsort(confidence[counted], kind="stable")]
  counts = np.maximum(1, np.round(np.asarray(fractions) * len(order)).astype(int))
  return np.array([_mean(error[order[:n]], valid[order[:n]], None) for n in counts])


def judge(coordinate_names, rotational, predicted, truth, layout, temperatures):
  """(rows, summary, curve): per coordinate and overall ("all") coverage, Spearman's rho
  and MAE (degrees for rotational coordinates, else metres) of all frames and the most
  confident half, with calibrated scales; the summary is the overall row; the curve
  (``COVERAGES``, MAE_angle deg) ranks frames by their mean calibrated scale of the
  rotational coordinates."""
  error, valid = split_errors(layout, predicted, truth)
  b = uncertainty_lib.calibrated(scales_of(predicted), temperatures).coords
  error, valid = error.coords, valid.coords
  rotational = np.asarray(rotational, bool)
  unit = np.where(rotational, np.degrees(1.0), 1.0)
  covered = {p: coverage(error, b, valid, p) for p in PROBABILITIES}
  rho, mean_rho = spearman(b, error, valid)
  half = np.array([_confident_mae(b[:, j], error[:, j:j + 1], valid[:, j:j + 1])
                   for j in range(b.shape[1])])
  rows = [{"coordinate": str(name), "temperature": float(temperatures.coords[j]),
           **{f"coverage_{round(p * 100)}": float(covered[p][0][j]) for p in PROBABILITIES},
           "rho_scale_error": float(rho[j]),
           "MAE_all": float(_mean(error[:, j], valid[:, j], None) * unit[j]),
           "MAE_confident_half": float(half[j] * unit[j])}
          for j, name in enumerate(coordinate_names)]
  angle_error, angle_valid = error[:, rotational], valid[:, rotational]
  confidence = _frame_scale(b[:, rotational], angle_valid)
  summary = {"coordinate": "all", "temperature": float(np.mean(temperatures.coords)),
             **{f"coverage_{round(p * 100)}": float(covered[p][1]) for p in PROBABILITIES},
             "rho_scale_error": float(mean_rho),
             "MAE_all": float(np.degrees(_mean(angle_error, angle_valid, None))),
             "MAE_confident_half": float(np.degrees(_confident_mae(confidence, angle_error,
                                                                   angle_valid)))}
  curve = np.degrees(risk_coverage(confidence, angle_error, angle_valid))
  return rows + [summary], summary, curve


def judge_groups(rotational, predicted, truth, layout, temperatures, groups):
  """One row per group ({name: (N,) bool over the split's frames}): its frames that count,
  MAE_angle and the mean calibrated standard deviation of the rotational coordinates (deg),
  and, over all coordinates as ``judge``'s overall row, the coverage of the calibrated 50 %
  and 90 % intervals and the mean over coordinates of Spearman's rho of scale and error
  (NaN where a group has fewer than 3 frames)."""
  error, valid = split_errors(layout, predicted, truth)
  b = uncertainty_lib.calibrated(scales_of(predicted), temperatures).coords
  error, valid = error.coords, valid.coords
  rotational = np.asarray(rotational, bool)
  rows = []
  for name, members in groups.items():
    members = np.asarray(members, bool)
    e, v, s = error[members], valid[members], b[members]
    angle_valid = v[:, rotational]
    rows.append({
        "group": str(name), "frames": int(v.any(1).sum()),
        "MAE_angle_deg": float(np.degrees(_mean(e[:, rotational], angle_valid, None))),
        "SD_angle_deg": float(np.degrees(_mean(uncertainty_lib.standard_deviation(
            s[:, rotational]), angle_valid, None))),
        **{f"coverage_{round(p * 100)}": float(coverage(e, s, v, p)[1])
           for p in PROBABILITIES},
        "rho_scale_error": float(spearman(s, e, v)[1])})
  return rows


def plot_risk_coverage(path, curve, fractions=COVERAGES):
  """The risk-coverage curve: MAE_angle of the most confident frames against their share."""
  figure = Figure(figsize=(5, 3.5), layout="constrained")
  axes = figure.add_subplot()
  axes.plot(np.asarray(fractions) * 100, curve, marker="o", color="tab:blue")
  axes.axhline(curve[-1], color="grey", linestyle="--", label="all frames")
  axes.set_xlabel("frames kept, most confident first (%)")
  axes.set_ylabel("MAE_angle (deg)")
  axes.set_title("Risk-coverage")
  axes.legend(loc="lower right")
  return save_png(figure, path)


def frame_sd_deg(b_calibrated, rotational):
  """(N,) a frame's confidence: the median calibrated standard deviation of its rotational
  coordinates, in degrees."""
  return np.degrees(np.median(uncertainty_lib.standard_deviation(
      np.asarray(b_calibrated)[:, np.asarray(rotational, bool)]), axis=1))


def _frame_scale(b, valid):
  """(N,) mean scale over a frame's valid columns (inf without one: least confident)."""
  count = valid.sum(1)
  return np.where(count > 0, np.where(valid, b, 0).sum(1) / np.maximum(count, 1), np.inf)


def _confident_mae(confidence, error, valid):
  return risk_coverage(confidence, error, valid, [0.5])[0]


def _mean(values, valid, axis):
  valid = np.broadcast_to(valid, np.shape(values))
  count = valid.sum(axis)
  total = np.where(valid, values, 0).sum(axis)
  return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nanmean(values):
  return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
