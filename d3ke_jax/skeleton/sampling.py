"""Random coordinates of a model: independent poses and smooth motions, within ranges.

Test and benchmark inputs; the synthetic dataset has its own, movement-specific generator.
"""

from typing import NamedTuple, Optional

import numpy as np

from d3ke_jax.skeleton.kinematics import forward_kinematics, resolve_coordinates
from d3ke_jax.skeleton.model import SkeletalModel


def _limits(model, limit):
  low, high = np.asarray(model.coordinate_ranges, float).T
  return np.maximum(low, -limit), np.minimum(high, limit)


def random_poses(model: SkeletalModel, n, rng, limit=1.0):
  """(n, C) coordinates uniform within each range, clipped to [-limit, limit]."""
  low, high = _limits(model, limit)
  return rng.uniform(low, high, (n, model.num_coordinates))


def smooth_motion(model: SkeletalModel, frames, rng, rate=30.0, limit=1.0):
  """(frames, C) coordinates moving smoothly inside their ranges.

  Each coordinate oscillates about a random centre as a sum of two sinusoids between 0.2
  and 1.2 Hz. Locked and coupled coordinates are left to forward kinematics.
  """
  low, high = _limits(model, limit)
  time = np.arange(frames) / rate
  centre = rng.uniform(0.3, 0.7, model.num_coordinates)
  amplitude = rng.uniform(0.05, 0.3, (2, model.num_coordinates))
  frequency = rng.uniform(0.2, 1.2, (2, model.num_coordinates))
  phase = rng.uniform(0, 2 * np.pi, (2, model.num_coordinates))
  waves = np.sum(amplitude[:, None] * np.sin(2 * np.pi * frequency[:, None] * time[None, :, None]
                                             + phase[:, None]), axis=0)
  return low + (high - low) * np.clip(centre + waves, 0.0, 1.0)


class MarkerTrial(NamedTuple):
  """A motion and its measured markers: the true coordinates (T, C), as forward kinematics
  poses them; markers (T, M, 3) with noise, NaN where missing; body scales (B, 3) or None."""
  coords: np.ndarray
  markers: np.ndarray
  scales: Optional[np.ndarray]
  rate: float


def marker_trial(model: SkeletalModel, frames, rng, rate=60.0, limit=0.5, turn=np.pi / 6,
                 noise=0.003, scale_spread=0.0, gaps=0):
  """A ``smooth_motion`` whose root turns about the vertical, with noisy markers.

  Args:
    turn: the root's rotation about the vertical (ground y) swings through +-turn radians
      over the trial (one sine period); +-pi turns the subject round both ways.
    noise: RMS distance of the marker noise, metres.
    scale_spread: body scales uniform in 1 +- scale_spread (0: unscaled, scales None).
    gaps: number of gaps, each one marker missing for 5 to 30 frames.
  """
  coords = smooth_motion(model, frames, rng, rate=rate, limit=limit)
  coords[:, _vertical_root_coordinate(model)] = turn * np.sin(
      2 * np.pi * np.arange(frames) / frames)
  coords = np.asarray(resolve_coordinates(model, coords.T).T)
  scales = (rng.uniform(1 - scale_spread, 1 + scale_spread, (model.num_bodies, 3))
            if scale_spread else None)
  markers = np.asarray(forward_kinematics(model, coords, scales=scales).markers, float)
  markers = markers + rng.normal(0, noise / np.sqrt(3), markers.shape)
  for _ in range(gaps):
    start, marker = rng.integers(frames), rng.integers(model.num_markers)
    markers[start:start + rng.integers(5, 31), marker] = np.nan
  return MarkerTrial(coords=coords, markers=markers, scales=scales, rate=rate)


def _vertical_root_coordinate(model):
  """The root joint's rotational coordinate whose axis is nearest the vertical."""
  axes = np.asarray(model.axes)[model.root_joint]
  rotations = [(abs(axes[k, 1]), c) for j, k, c in model.axis_inputs
               if j == model.root_joint and k < 3]
  return max(rotations)[1]
