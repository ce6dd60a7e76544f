"""Where the person is in each frame: square boxes (x0, y0, side) in upright pixels.

Two sources: a file of per-frame boxes from any detector, or, for a static camera, a
background-subtraction tracker that keeps following one person (the foreground region
nearest to where they were, if near enough and of their size). Each frame's box comes with
its source (``SOURCES``); frames without a person are flagged, never fatal: their box is the
last one found.
"""

import csv
import json
import os

import numpy as np
import scipy.ndimage

from d3ke_jax import boxes
from d3ke_jax.errors import UserError
from d3ke_jax.io.video import FrameReader

WORKING_WIDTH = 160  # the finder works on frames reduced to about this width
MIN_KEY_FRAMES = 8  # a background from fewer key frames is taken from all frames instead
THRESHOLD = 30  # foreground: a pixel's summed RGB difference from the background (0-765)
MIN_AREA = 1e-3  # a foreground region covers at least this fraction of the frame
# The tracked person's region passes ``boxes.passes_gate`` with their last box, its reach
# widened by GATE_GROWTH sides per frame since they were last found.
GATE_GROWTH = 0.1
# Where a frame's box comes from: the person found in it (by the file or background
# subtraction), or not found: a found box held (the last one before; for frames before
# any, the file's first one), or the whole frame (the tracker, before it finds anyone).
SOURCES = FILE, BACKGROUND, HELD, WHOLE = "file", "background", "held", "whole frame"
FOUND = (FILE, BACKGROUND)


def read_boxes(path, count):
  """(boxes (count, 3) square x0, y0, side; sources (count,) ``FILE`` or ``HELD``) from a
  CSV (columns ``frame, x0, y0, x1, y1``, a header row first) or JSON (a list of ``{"frame":
  i, "box": [x0, y0, x1, y1]}``) file of corner boxes in upright pixels. Each detector box
  becomes a square around it with ``boxes.MARGIN``; frames the file lacks are not found."""
  path = os.fspath(path)
  rows = _json_rows(path) if path.lower().endswith(".json") else _csv_rows(path)
  if not count:  # the container does not say how many frames it holds
    count = max((frame + 1 for frame, _ in rows), default=0)
  if not any(0 <= frame < count for frame, _ in rows):
    raise UserError(f"{path}: no box for any of the video's {count} frames (frames count "
                    "from 0)")
  squares, found = np.zeros((count, 3)), np.zeros(count, bool)
  for frame, corners in rows:
    if not 0 <= frame < count:
      continue
    x0, y0, x1, y1 = corners
    if not (np.all(np.isfinite(corners)) and x1 > x0 and y1 > y0):
      raise UserError(f"{path}: the box of frame {frame} is not x0 < x1, y0 < y1 ({corners})")
    squares[frame] = boxes.from_corners(np.array(corners), boxes.MARGIN)
    found[frame] = True
  return fill_missing(squares, found), np.where(found, FILE, HELD)


def _csv_rows(path):
  with open(path, newline="") as f:
    table = list(csv.reader(f))
  if not table or [c.strip() for c in table[0][:5]] != ["frame", "x0", "y0", "x1", "y1"]:
    raise UserError(f"{path}: the first row must be the header frame,x0,y0,x1,y1")
  rows = []
  for number, row in enumerate(table[1:], start=2):
    try:
      if len(row) < 5:
        raise ValueError
      rows.append((int(row[0]), tuple(float(v) for v in row[1:5])))
    except ValueError:
      raise UserError(f"{path}: line {number} is not frame,x0,y0,x1,y1 numbers") from None
  return rows


def _json_rows(path):
  try:
    with open(path) as f:
      entries = json.load(f)
    rows = [(int(e["frame"]), tuple(float(v) for v in e["box"])) for e in entries]
    if any(len(corners) != 4 for _, corners in rows):
      raise ValueError("a box is not 4 numbers")
    return rows
  except (ValueError, KeyError, TypeError, IndexError) as e:
    raise UserError(f"{path}: not a JSON list of {{\"frame\": i, \"box\": [x0, y0, x1, y1]}} "
                    f"({type(e).__name__}: {e})") from None


def fill_missing(squares, found):
  """Boxes of frames not found replaced by the last found one (the first found before it)."""
  if not found.any():
    return squares
  index = np.maximum.accumulate(np.where(found, np.arange(len(found)), -1))
  index[index < 0] = np.argmax(found)
  return squares[index]


class FileBoxes:
  """Boxes read from a file, served chunk by chunk."""

  def __init__(self, path, count):
    self.boxes, self.sources = read_boxes(path, count)

  def __call__(self, frames, first):
    end = first + len(frames)
    if end > len(self.boxes):  # the container stated fewer frames than it holds
      extra = end - len(self.boxes)
      self.boxes = np.concatenate([self.boxes, np.repeat(self.boxes[-1:], extra, 0)])
      self.sources = np.concatenate([self.sources, np.full(extra, HELD)])
    return self.boxes[first:end], self.sources[first:end]


def background(path, samples=48):
  """The static background of a video, reduced to about ``WORKING_WIDTH``: the median of
  about ``samples`` frames spread over it (a moving person is in few of them). They are its
  key frames, decoded alone (a few percent of the frames); a video with fewer than
  ``MIN_KEY_FRAMES`` is decoded whole, every n-th frame kept."""
  kept = _spread(FrameReader(path, key_frames=True), samples, every=1)
  if len(kept) < MIN_KEY_FRAMES:
    kept = _spread(FrameReader(path), samples)
  kept = kept[::max(1, len(kept) // samples)]
  return np.median(np.stack(kept), axis=0).astype(np.int16)


def _spread(reader, count, every=None):
  """Frames of ``reader`` reduced to the working width: ``every`` n-th (default: about
  ``count`` spread over the frames the video states)."""
  step = every or max(1, int(reader.info.frames or count) // count)
  stride = _stride(reader.info.width)
  kept, index = [], 0
  for frames, _ in reader:
    kept.extend(frames[(-index) % step::step, ::stride, ::stride].astype(np.int16))
    index += len(frames)
  return kept


def _stride(width):
  return max(1, int(round(width / WORKING_WIDTH)))


class BackgroundTracker:
  """Follows one moving person against a static background, frame by frame. Before they are
  first found, the largest foreground region is them; then, of the regions, the one nearest
  their last box, if it passes the gate (``boxes.passes_gate``). When it does not, the
  track wins over background subtraction: the region is something else (another moving
  object, the person merged with one), the last box is held and the frame flagged; the gate
  widens while they stay unfound (hidden, standing still long enough to be background, or
  gone) so that they are found again where they reappear."""

  def __init__(self, background_image, width):
    self.background, self.stride = background_image, _stride(width)
    self.previous, self.missed = None, 0

  def __call__(self, frames, first):
    del first  # frames come in order
    found, sources = np.zeros((len(frames), 3)), np.full(len(frames), WHOLE)
    for k, frame in enumerate(frames):
      box = self.follow(*self.regions(frame))
      self.missed = 0 if box is not None else self.missed + 1
      if box is not None:
        self.previous = box
      height, width = frame.shape[:2]
      found[k] = self.previous if self.previous is not None else _whole(width, height)
      sources[k] = BACKGROUND if box is not None else HELD if self.previous is not None else WHOLE
    return found, sources

  def regions(self, frame):
    """Square boxes (R, 3) around the foreground regions of one upright frame, and their
    areas (R,) in reduced pixels; regions under ``MIN_AREA`` left out."""
    small = frame[::self.stride, ::self.stride].astype(np.int16)
    mask = np.abs(small - self.background).sum(-1) > THRESHOLD
    mask = scipy.ndimage.binary_opening(mask, iterations=1)
    labels, count = scipy.ndimage.label(mask)
    sizes = scipy.ndimage.sum_labels(mask, labels, np.arange(1, count + 1))
    large = sizes >= MIN_AREA * mask.size
    corners = np.array([(c.start, r.start, c.stop, r.stop) for (r, c), keep in zip(
        scipy.ndimage.find_objects(labels), large) if keep], float).reshape(-1, 4) * self.stride
    return boxes.from_corners(corners, boxes.MARGIN), sizes[large]

  def follow(self, regions, sizes):
    """The box of the tracked person among ``regions``, or None."""
    if not len(regions):
      return None
    if self.previous is None:
      return regions[np.argmax(sizes)]
    nearest = regions[np.argmin(boxes.distance(regions, self.previous))]
    reach = boxes.GATE + GATE_GROWTH * self.missed
    return nearest if boxes.passes_gate(nearest, self.previous, reach) else None


def _whole(width, height):
  side = float(min(width, height))
  return ((width - side) / 2, (height - side) / 2, side)
