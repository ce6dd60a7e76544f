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
from d3ke_jax.io.text import read_lines
from d3ke_jax.io.video import FrameReader, VideoError, video_info

WORKING_WIDTH = 160  # the finder works on frames reduced to about this width
MIN_KEY_FRAMES = 8  # a background from fewer key frames is taken from all frames instead
THRESHOLD = 30  # foreground: a pixel's summed RGB difference from the background (0-765)
MIN_AREA = 1e-3  # a foreground region covers at least this fraction of the frame
# The tracked person's region passes ``boxes.passes_gate`` with their last box, its reach
# widened by GATE_GROWTH sides per frame since they were last found.
GATE_GROWTH = 0.1
# A box from a file: its longer side at least MIN_SIDE pixels and at most MAX_SIZE times
# the frame's longer side, and part of it in the frame.
MIN_SIDE, MAX_SIZE = 4, 2
# Where a frame's box comes from: the person found in it (by the file or background
# subtraction), or not found: a found box held (the last one before; for frames before
# any, the file's first one), or the whole frame (the tracker, before it finds anyone).
SOURCES = FILE, BACKGROUND, HELD, WHOLE = "file", "background", "held", "whole frame"
FOUND = (FILE, BACKGROUND)
HEADER = ("frame", "x0", "y0", "x1", "y1")


def read_boxes(path, width, height):
  """(frames (F,) ascending, square boxes (F, 3) x0, y0, side) of a CSV (columns ``frame,
  x0, y0, x1, y1``, a header row first) or JSON (a list of ``{"frame": i, "box": [x0, y0,
  x1, y1]}``) file of corner boxes in upright pixels of a ``width`` x ``height`` video.
  Each becomes a square around it with ``boxes.MARGIN``. ``UserError`` names the line (or
  entry) of a frame number that is not one or comes again, and of a box that is not one:
  not x0 < x1, y0 < y1, under ``MIN_SIDE`` or over ``MAX_SIZE``, or outside the frame."""
  path = os.fspath(path)
  rows = _json_rows(path) if path.lower().endswith(".json") else _csv_rows(path)
  if not rows:
    raise UserError(f"{path}: no boxes in the file")
  first = {}
  for where, frame, corners in rows:
    if frame in first:
      raise UserError(f"{path}: {where}: a second box for frame {frame} (the first is on "
                      f"{first[frame]})")
    first[frame] = where
    _check_box(f"{path}: {where}: the box of frame {frame}", corners, width, height)
  frames = np.array([frame for _, frame, _ in rows], np.int64).reshape(-1)
  corners = np.array([corners for _, _, corners in rows], float).reshape(-1, 4)
  order = np.argsort(frames)
  return frames[order], boxes.from_corners(corners[order], boxes.MARGIN)


def _check_box(name, corners, width, height):
  x0, y0, x1, y1 = corners
  text = f"({x0:g}, {y0:g}, {x1:g}, {y1:g})"
  frame = f"the {width}x{height} video"
  if not (np.all(np.isfinite(corners)) and x1 > x0 and y1 > y0):
    raise UserError(f"{name} is not x0 < x1, y0 < y1 {text}")
  size = f"{x1 - x0:g} x {y1 - y0:g} px"
  if max(x1 - x0, y1 - y0) < MIN_SIDE:
    raise UserError(f"{name} is {size}, under {MIN_SIDE} px (corners are pixels of {frame}, "
                    "not fractions of it)")
  if max(x1 - x0, y1 - y0) > MAX_SIZE * max(width, height):
    raise UserError(f"{name} is {size}, more than {MAX_SIZE} times {frame}")
  if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
    raise UserError(f"{name} {text} lies outside {frame}")


def _csv_rows(path):
  lines, _ = read_lines(path, UserError, ".csv")
  table = list(csv.reader(lines))
  if not table or tuple(c.strip() for c in table[0][:5]) != HEADER:
    raise UserError(f"{path}: the first row must be the header {','.join(HEADER)}")
  rows = []
  for number, row in enumerate(table[1:], start=2):
    if not "".join(row).strip():
      continue
    try:
      if len(row) < 5:
        raise ValueError
      corners = tuple(float(v) for v in row[1:5])
    except ValueError:
      raise UserError(f"{path}: line {number} is not {','.join(HEADER)} numbers") from None
    rows.append((f"line {number}", _frame(path, f"line {number}", _number(row[0]), row[0]),
                 corners))
  return rows


def _json_rows(path):
  lines, _ = read_lines(path, UserError, ".json")
  form = '{"frame": i, "box": [x0, y0, x1, y1]}'
  try:
    entries = json.loads("\n".join(lines))
  except RecursionError:
    raise UserError(f"{path}: not a JSON list of {form} (nested too deeply)") from None
  except ValueError as e:
    raise UserError(f"{path}: not JSON ({e})") from None
  if not isinstance(entries, list):
    raise UserError(f"{path}: not a JSON list of {form} ({_short(entries)})")
  rows = []
  for number, entry in enumerate(entries, start=1):
    where = f"entry {number}"
    if not isinstance(entry, dict) or not {"frame", "box"} <= entry.keys():
      raise UserError(f"{path}: {where} is not {form} ({_short(entry)})")
    box = entry["box"]
    if not (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))):
      raise UserError(f"{path}: {where}: the box is not 4 numbers [x0, y0, x1, y1] "
                      f"({_short(box)})")
    frame = entry["frame"]
    rows.append((where, _frame(path, where, frame, _short(frame)), tuple(map(float, box))))
  return rows


def _is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value, length=40):
  text = json.dumps(value)
  return text if len(text) <= length else text[:length - 3] + "..."


def _number(text):
  """CSV text as an int, else a float, else itself."""
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def _frame(path, where, value, text):
  """The frame number ``value`` (written ``text``) as an int (a float if it is whole)."""
  frame = int(value) if isinstance(value, float) and value.is_integer() else value
  if not (isinstance(frame, int) and not isinstance(frame, bool) and 0 <= frame < 2**63):
    raise UserError(f"{path}: {where}: frame {text.strip() or '(empty)'} is not a frame number "
                    "(an integer from 0)")
  return frame


class FileBoxes:
  """Boxes read from a file (``read_boxes``), served chunk by chunk: a frame the file lacks
  holds the box of the last frame before it that it has (before any, the first)."""

  def __init__(self, path, width, height):
    self.path = path
    self.frames, self.boxes = read_boxes(path, width, height)

  def check(self, count):
    """Refuses a file without a box for any of a video's ``count`` frames."""
    if not np.any(self.frames < count):
      raise UserError(f"{self.path}: no box for any of the video's {count} frames (frames "
                      "count from 0)")

  def __call__(self, frames, first):
    index = np.arange(first, first + len(frames))
    last = np.maximum(np.searchsorted(self.frames, index, side="right") - 1, 0)
    return self.boxes[last], np.where(self.frames[last] == index, FILE, HELD)


def background(path, samples=48):
  """The static background of a video, reduced to about ``WORKING_WIDTH``: the median of
  about ``samples`` frames spread over it (a moving person is in few of them). They are its
  key frames, decoded alone (a few percent of the frames); a video with fewer than
  ``MIN_KEY_FRAMES`` is decoded whole, every n-th frame kept."""
  kept = _spread(FrameReader(path, key_frames=True), samples, every=1)
  if len(kept) < MIN_KEY_FRAMES:
    reader = FrameReader(path)
    kept = _spread(reader, samples)
    if not kept:
      raise VideoError(reader.cut)
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

  @classmethod
  def of_video(cls, path):
    """The tracker of the video ``path``, its background taken from it (``background``)."""
    return cls(background(path), video_info(path).width)

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
