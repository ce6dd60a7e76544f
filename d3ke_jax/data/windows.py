"""Windows of consecutive frames that never cross clip boundaries, for sequence networks."""

import jax
import numpy as np


def clip_ranges(clips):
  """(begin, end) of each run of equal values in ``clips`` (N,), in order."""
  clips = np.asarray(clips)
  edges = np.flatnonzero(np.diff(clips)) + 1
  return list(zip(np.concatenate([[0], edges]), np.concatenate([edges, [len(clips)]])))


def window_starts(clips, window, stride):
  """Starts of windows of ``window`` consecutive records inside one clip, every ``stride``."""
  starts = []
  for begin, end in clip_ranges(clips):
    starts.extend(range(begin, end - window + 1, stride))
  return np.array(starts, int)


def covering_windows(clips, window):
  """Windows that cover every frame of every clip, for predicting whole sequences.

  Returns (index (K, window) frame indices, source (N, 2) the window and position each
  frame's prediction comes from). Windows stay inside their clip, so a clip shorter than
  ``window`` repeats its last frame; where windows overlap a frame takes the window in
  which it lies nearer the centre.
  """
  index, source = [], np.zeros((len(clips), 2), int)
  for begin, end in clip_ranges(clips):
    starts = list(range(begin, max(end - window, begin) + 1, window))
    if starts[-1] + window < end:
      starts.append(end - window)
    frames = np.arange(begin, end)
    centres = np.array(starts) + (window - 1) / 2
    nearest = np.argmin(np.abs(frames[:, None] - centres[None]) +
                        np.where((frames[:, None] >= np.array(starts)) &
                                 (frames[:, None] < np.array(starts) + window), 0, np.inf), 1)
    source[frames] = np.stack([len(index) + nearest, frames - np.array(starts)[nearest]], 1)
    index.extend(np.minimum(start + np.arange(window), end - 1) for start in starts)
  return np.array(index, int).reshape(-1, window), source


def refine_windows(apply, values, clips, window):
  """Per-frame ``values`` (a tree of (N, ...) arrays over the frames of ``clips``) refined
  by ``apply`` (windows (K, window, ...) -> the same), each frame taken from the window in
  which it lies nearest the centre (``covering_windows``)."""
  index, source = covering_windows(clips, window)
  refined = apply(jax.tree.map(lambda x: np.asarray(x)[index], values))
  return jax.tree.map(lambda x: np.asarray(x)[source[:, 0], source[:, 1]], refined)
