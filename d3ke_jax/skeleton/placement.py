"""Marker placement (OpenSim's MarkerPlacer): a scaled model's markers moved onto a subject.

After scaling, the model's markers still sit where the generic model has them. The placer
poses the scaled model on the subject's static trial by inverse kinematics, then moves every
model marker that has a measured position to that position, expressed in its body's frame,
so that the model and the subject's markers agree in the static pose.
"""

import numpy as np

from d3ke_jax.io.trc import MarkerTrajectories
from d3ke_jax.skeleton.ik import inverse_kinematics_chunks
from d3ke_jax.skeleton.kinematics import forward_kinematics
from d3ke_jax.skeleton.model import SkeletalModel


def model_markers(model: SkeletalModel, markers, names):
  """(T, M, 3) positions of the model's markers from ``markers`` (T, K, 3) named ``names``:
  NaN for model markers not among the names; named markers the model lacks are ignored."""
  markers = np.asarray(markers, float)
  if markers.ndim != 3 or markers.shape[1:] != (len(names), 3):
    raise ValueError(f"markers must be (frames, {len(names)}, 3) for {len(names)} names, got "
                     f"{markers.shape}")
  trajectories = MarkerTrajectories(names=tuple(names), time=np.arange(markers.shape[0]),
                                    positions=markers, rate=1.0)
  return trajectories.select(model.marker_names)


def model_weights(model: SkeletalModel, weights=None):
  """(M,) weights of the model's markers from {marker name: weight} (0 for markers not
  named); every marker 1 when ``weights`` is None."""
  if weights is None:
    return np.ones(model.num_markers)
  return np.array([float(weights.get(name, 0.0)) for name in model.marker_names])


def place_markers(model: SkeletalModel, scales, static_markers, names, weights=None):
  """Moves the model's markers to the subject's static trial.

  Args:
    model: the generic model (its marker offsets are in the unscaled body frames).
    scales: (B, 3) the subject's body scale factors relative to the model.
    static_markers: (K, 3) or (T, K, 3) the static trial in metres (frames are averaged,
      as MarkerPlacer averages its time range; NaN = missing).
    names: the K marker names; names the model lacks are ignored.
    weights: {marker name: IK weight} for posing the model (default: every marker 1).

  Returns:
    (the model with its markers moved, the static pose's coordinates (C,)). Markers with a
    measured position are where it is in that pose (with ``scales``); the others keep their
    offsets. Offsets stay in the unscaled body frames, as ``forward_kinematics`` scales them.
  """
  static = np.asarray(static_markers, float)
  static = static.reshape((-1,) + static.shape[-2:])
  positions = model_markers(model, static, names)
  seen = np.all(np.isfinite(positions), axis=-1)  # (T, M)
  count = np.sum(seen, axis=0)[:, None]
  target = np.where(count > 0, np.sum(np.where(seen[..., None], positions, 0.0), axis=0)
                    / np.maximum(count, 1), np.nan)  # a marker missing in every frame: NaN
  scales = np.asarray(scales, float)
  # Solved as a one-frame sequence (its first frame is the best of several starting poses),
  # without the temporal prior, which a static pose does not need.
  solved = next(inverse_kinematics_chunks(model, target[None].astype(np.float32),
                                          weights=model_weights(model, weights),
                                          scales=scales.astype(np.float32), smoothing_weight=0))
  coords = np.asarray(solved.coords[0], float)
  frames = np.asarray(forward_kinematics(model, coords, scales=scales).body_transforms)
  body = np.array(model.marker_body)
  rotation, origin = frames[body, :3, :3], frames[body, :3, 3]
  local = np.einsum("mba,mb->ma", rotation, target - origin) / scales[body]
  present = np.all(np.isfinite(target), axis=1)
  offsets = np.where(present[:, None], local, np.asarray(model.marker_offsets))
  return model.replace(marker_offsets=offsets), coords
