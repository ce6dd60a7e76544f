"""Random coordinates of a model: independent poses and smooth motions, within ranges.

Test and benchmark inputs; the synthetic dataset has its own, movement-specific generator.
"""

import numpy as np

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
