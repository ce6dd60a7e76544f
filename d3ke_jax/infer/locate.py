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
# A person's markers (and a pose detector's keypoints: eyes, not the top of the head) span
# about SILHOUETTE of their silhouette's height (1 / 1.10 on the renders of bench boxes):
# the box of a foreground region is scaled by it, to the box the network was trained on.
SILHOUETTE = 0.91
# Foreground pieces overlapping in x and at most JOIN of the frame's height apart in y are
# one region (a person falls apart where their clothes match the background).
JOIN = 0.06
# A region is the tracked person only if its colours are within COLOUR_GATE of theirs (the
# summed RGB difference, 0-765, of the mean colours of BANDS horizontal bands, averaged;
# theirs a running mean, by LEARN per frame found).
COLOUR_GATE, BANDS = 50, 4
COLOUR_GROWTH = 5  # ... widened by this per frame unfound (their colours change: light)
# A person whose box has under STILL_CHANGE of its pixels changed (by THRESHOLD) since the
# last frame they were found in stands still there...
STILL_CHANGE = 0.15
# ... or, coming to rest, under STILL_CHANGE changed from frame to frame for SETTLE frames
# in a row, at most SETTLE_WITHIN frames after last found moving (or by the detector).
SETTLE, SETTLE_WITHIN = 5, 300
# A region under 1 / PART of the person's last side is part of them: it tells where they
# are across, not their size or height; one over PART times their usual side (a running
# mean, by LEARN) is them merged with another mover: the detector decides, else held.
PART = 1.15
SHRINK = 0.98  # ... and shrinks their box by this factor
# The background learns from each frame outside the person's box (its side grown by GROW):
# by LEARN where nothing moves (noise, light), by ABSORB where something does (a parked
# second mover, the place a person stood in the median background).
LEARN, ABSORB, GROW = 0.1, 0.03, 0.1
# A box from a file: its longer side at least MIN_SIDE pixels and at most MAX_SIZE times
# the frame's longer side, and part of it in the frame.
MIN_SIDE, MAX_SIZE = 4, 2
# Where a frame's box comes from: the person found in it (by the file or background
# subtraction), or not found: a found box held (the last one before; for frames before
# any, the file's first one), or the whole frame (the tracker, before it finds anyone).
# A person standing still is found by ``STILL`` (their pixels unchanged since they last
# moved) and, where nothing moves, by OpenCV's people detector (``DETECTOR``).
SOURCES = FILE, BACKGROUND, STILL, DETECTOR, HELD, WHOLE = (
    "file", "background", "still", "detector", "held", "whole frame")
FOUND = (FILE, BACKGROUND, STILL, DETECTOR)
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


class PeopleDetector:
  """OpenCV's HOG people detector (Dalal and Triggs; the linear SVM shipped in OpenCV's
  wheel, no download), run on a window around where the person is expected: their corner
  boxes (N, 4) in frame pixels, ``None`` where OpenCV is not installed."""

  WINDOW = 1.6  # the searched window, in sides of the expected square box
  HEIGHT = 100  # the person's height in pixels the window is resized to (the SVM's 96)
  HIT = -0.5  # the SVM's score threshold (OpenCV's default 0; lower: more detections, the
  # gate with the person's last box keeping out those elsewhere)

  def __init__(self):
    try:
      import cv2  # pylint: disable=g-import-not-at-top
    except ImportError:  # an optional second opinion
      self.cv2 = None
      return
    self.cv2, self.hog = cv2, cv2.HOGDescriptor()
    self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

  def __call__(self, frame, near):
    if self.cv2 is None:
      return None
    height, width = frame.shape[:2]
    side = near[2] * self.WINDOW
    cx, cy = boxes.centre(near)
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
    if x1 - x0 < 16 or y1 - y0 < 32:
      return np.zeros((0, 4))
    factor = self.HEIGHT / (near[2] / (1 + 2 * boxes.MARGIN))
    window = self.cv2.resize(np.ascontiguousarray(frame[y0:y1, x0:x1]),
                             (max(64, int((x1 - x0) * factor)),
                              max(128, int((y1 - y0) * factor))))
    found, _ = self.hog.detectMultiScale(window, winStride=(8, 8), padding=(16, 16),
                                         scale=1.1, hitThreshold=self.HIT)
    found = np.asarray(found, float).reshape(-1, 4)
    # The SVM's 64x128 window holds a 96-px person (silhouette), centred: their box is 3/4
    # of it, their markers' ``SILHOUETTE`` of that.
    centre = found[:, :2] + found[:, 2:] / 2
    half = found[:, 2:] * 0.375 * SILHOUETTE * np.array([0.5, 1.0])
    scale = np.array([(x1 - x0) / window.shape[1], (y1 - y0) / window.shape[0]])
    return np.concatenate([(centre - half) * scale, (centre + half) * scale], 1) + [
        x0, y0, x0, y0]


class BackgroundTracker:
  """Follows one person against a static background, frame by frame.

  Foreground pixels differ from the background by more than ``THRESHOLD``; its pieces
  stacked one above another (``JOIN``: a person in trousers the colour of the floor falls
  apart into torso and feet) make one region. Before the person is first found, the
  largest region is them; then, of the regions passing the gate with their last box
  (``boxes.passes_gate``) and of their colour (``COLOUR_GATE``), the nearest. The
  background learns from every frame except where the person is (``LEARN``, ``ABSORB``),
  so that a person who stops stays foreground, while the place where they stood at the
  start (in the median background), or a parked second mover, fades into it. When no
  region passes: a person standing still where they were last found (their pixels still
  those of that frame: ``STILL``) is found there; else OpenCV's HOG people detector
  (``PeopleDetector``) near their last box, if it sees someone of their size passing the
  gate; else the last box is held and the frame flagged, the gates widening while they
  stay unfound (hidden, or gone) so that they are found again where they reappear. A
  region much smaller than them is part of them (``PART``: where they are across); one
  much larger, them merged with another mover (the detector decides, else held)."""

  def __init__(self, background_image, width, detector=None):
    self.background = np.asarray(background_image, np.float32)
    self.stride = _stride(width)
    self.detector = PeopleDetector() if detector is None else detector
    self.previous, self.missed = None, 0
    self.colour = None  # the person's colours (``_colours``)
    self.size = None  # their box's side, a running mean
    self.template = None  # (slices, pixels) of the person where last found
    self.recent, self.settled, self.moved = None, 0, 0  # for ``still``

  @classmethod
  def of_video(cls, path):
    """The tracker of the video ``path``, its background taken from it (``background``)."""
    return cls(background(path), video_info(path).width)

  def __call__(self, frames, first):
    del first  # frames come in order
    found, sources = np.zeros((len(frames), 3)), np.full(len(frames), WHOLE)
    for k, frame in enumerate(frames):
      box, sources[k] = self.step(frame)
      self.missed = 0 if box is not None else self.missed + 1
      if box is not None:
        self.previous = box
      height, width = frame.shape[:2]
      found[k] = self.previous if self.previous is not None else _whole(width, height)
      if box is None:
        sources[k] = HELD if self.previous is not None else WHOLE
    return found, sources

  def step(self, frame):
    """(the person's square box or None, its source) in one upright frame; learns the
    background from it."""
    small = frame[::self.stride, ::self.stride].astype(np.float32)
    mask = self.foreground(small)
    corners, areas, colours = self.regions(small, mask)
    squares = boxes.from_corners(corners * self.stride, boxes.MARGIN)
    squares = boxes.from_centre(boxes.centre(squares), squares[:, 2:] * SILHOUETTE)
    box, source, index = None, None, None
    if self.previous is None:
      if len(squares):
        index = int(np.argmax(areas))
        box, source = squares[index], BACKGROUND
    else:
      reach = boxes.GATE + GATE_GROWTH * self.missed
      near = boxes.passes_gate(squares, self.previous, reach) if len(squares) else []
      if self.colour is not None and len(squares):
        gate = COLOUR_GATE + COLOUR_GROWTH * self.missed
        near &= np.array([_colour_distance(c, self.colour) <= gate for c in colours])
      if np.any(near):
        score = boxes.distance(squares, self.previous) / self.previous[2]
        index = int(np.argmin(np.where(near, score, np.inf)))
        box, source = self.whole(squares[index]), BACKGROUND
        if squares[index, 2] > self.size * PART:  # them and another mover, merged
          box, index = self.detected(frame, reach), None
          source = DETECTOR if box is not None else None
      elif self.still(small):
        box, source = self.previous, STILL
      else:
        box = self.detected(frame, reach)
        source = DETECTOR if box is not None else None
    if index is not None and (self.previous is None
                              or squares[index, 2] * PART >= self.previous[2]):  # whole
      self.remember(colours[index])
      side = squares[index, 2]
      self.size = side if self.size is None else (1 - LEARN) * self.size + LEARN * side
    self.moved += 1
    if box is not None and source != STILL:
      self.template = self.pixels(small, box)
      self.moved, self.settled, self.recent = 0, 0, None
    self.learn(small, mask, box if box is not None else self.previous)
    return box, source

  def foreground(self, small):
    mask = np.abs(small - self.background).sum(-1) > THRESHOLD
    return scipy.ndimage.binary_opening(mask, iterations=1)

  def regions(self, small, mask):
    """Corner boxes (R, 4) in reduced pixels of the foreground regions (pieces stacked
    within ``JOIN`` joined), their areas (R,) and colours (R, BANDS, 3) (``_colours``);
    regions under ``MIN_AREA`` left out."""
    labels, count = scipy.ndimage.label(mask)
    sizes = scipy.ndimage.sum_labels(mask, labels, np.arange(1, count + 1))
    keep = sizes >= MIN_AREA * mask.size / 4  # pieces
    corners = np.array([(c.start, r.start, c.stop, r.stop) for (r, c), k in zip(
        scipy.ndimage.find_objects(labels), keep) if k], int).reshape(-1, 4)
    sizes = sizes[keep]
    group = _stacked(corners, JOIN * mask.shape[0])
    kept = [g for g in np.unique(group) if sizes[group == g].sum() >= MIN_AREA * mask.size]
    merged = np.array([np.concatenate([corners[group == g, :2].min(0),
                                       corners[group == g, 2:].max(0)])
                       for g in kept], int).reshape(-1, 4)
    areas = np.array([sizes[group == g].sum() for g in kept])
    return merged, areas, np.array([_colours(small, mask, c) for c in merged]).reshape(
        -1, BANDS, 3)

  def remember(self, colour):
    """Keeps the person's colours (unless unsure: far from them)."""
    if self.colour is None:
      self.colour = colour
    elif _colour_distance(colour, self.colour) < COLOUR_GATE / 2:
      self.colour = np.where(np.isnan(colour), self.colour,
                             np.where(np.isnan(self.colour), colour,
                                      (1 - LEARN) * self.colour + LEARN * colour))

  def whole(self, box):
    """The person's box from a region of them: its box, but for a region under 1 / ``PART``
    of their last box's side: part of them (the rest still, or the colour of the
    background), and gives only their place across (their last box's height; its side
    shrunk by ``SHRINK``, so that a box found too large recovers)."""
    if box[2] * PART >= self.previous[2]:
      return box
    return boxes.from_centre(np.array([boxes.centre(box)[0], boxes.centre(self.previous)[1]]),
                             self.previous[2:] * SHRINK)

  def still(self, small):
    """Whether the person stands still where last seen: under ``STILL_CHANGE`` of the
    pixels of their box changed (by more than ``THRESHOLD``) since; or, coming to rest
    (their last steps changed more), since the frame before for ``SETTLE`` frames in a row,
    within ``SETTLE_WITHIN`` frames of being seen moving."""
    if self.template is None:
      return False
    where, pixels = self.template
    current = small[where]
    changed = lambda before: np.mean(np.abs(current - before).sum(-1) > THRESHOLD)
    if not current.size:
      return False
    calm = self.recent is not None and changed(self.recent) < STILL_CHANGE
    self.settled, self.recent = (self.settled + 1 if calm else 0), current
    if changed(pixels) < STILL_CHANGE or (self.settled >= SETTLE
                                          and self.moved <= SETTLE_WITHIN):
      self.template = (where, current)
      return True
    return False

  def pixels(self, small, box):
    """(where, pixels) of ``small`` in the person box inside the square ``box``."""
    inner = box[2] / (1 + 2 * boxes.MARGIN) / self.stride
    x0, y0 = np.maximum(0, boxes.centre(box) / self.stride - inner / 2).astype(int)
    where = (slice(y0, int(y0 + inner)), slice(x0, int(x0 + inner)))
    return where, small[where]

  def detected(self, frame, reach):
    """The square box of a person the ``detector`` sees near the last box, passing the
    gate, of the person's usual size (within ``PART``), or None."""
    if self.detector is None:
      return None
    found = self.detector(frame, self.previous)
    if found is None or not len(found):
      return None
    squares = boxes.from_corners(found, boxes.MARGIN)
    near = boxes.passes_gate(squares, self.previous, reach)
    if self.size is not None:  # of their size (not a nearer or further passer-by)
      near &= np.abs(np.log(squares[:, 2] / self.size)) <= np.log(PART)
    if not near.any():
      return None
    return squares[int(np.argmin(np.where(near, boxes.distance(squares, self.previous),
                                          np.inf)))]

  def learn(self, small, mask, box):
    """Updates the background outside ``box`` (grown by ``GROW``): by ``LEARN`` where
    nothing moves, by ``ABSORB`` where something does."""
    rate = np.where(mask, ABSORB, LEARN)
    if box is not None:
      side = box[2] * (1 + GROW)
      x0, y0 = (boxes.centre(box) - side / 2) / self.stride
      x1, y1 = np.array([x0, y0]) + side / self.stride
      rate[max(0, int(y0)):max(0, int(np.ceil(y1))), max(0, int(x0)):max(0, int(np.ceil(x1)))] = 0
    self.background += rate[..., None] * (small - self.background)


def _colours(small, mask, corners):
  """(BANDS, 3) the mean colour of the foreground in each of ``BANDS`` horizontal bands of
  the corner box (NaN where it has none): a person's shirt, trousers... apart."""
  x0, y0, x1, y1 = corners
  edges = np.linspace(y0, y1, BANDS + 1).round().astype(int)
  out = np.full((BANDS, 3), np.nan)
  for k in range(BANDS):
    inside = mask[edges[k]:edges[k + 1], x0:x1]
    if inside.any():
      out[k] = small[edges[k]:edges[k + 1], x0:x1][inside].mean(0)
  return out


def _colour_distance(a, b):
  """The summed RGB difference of two ``_colours``, averaged over the bands both have
  (0 where they share none)."""
  both = ~(np.isnan(a).any(-1) | np.isnan(b).any(-1))
  return float(np.abs(a[both] - b[both]).sum(-1).mean()) if both.any() else 0.0


def _stacked(corners, gap):
  """(R,) a group number of each corner box (R, 4): boxes overlapping in x and at most
  ``gap`` apart in y (one above the other) share one, transitively."""
  group = np.arange(len(corners))
  for i in range(len(corners)):
    for j in range(i + 1, len(corners)):
      a, b = corners[i], corners[j]
      if (min(a[2], b[2]) > max(a[0], b[0])
          and max(a[1], b[1]) - min(a[3], b[3]) <= gap):
        group[group == group[j]] = group[i]
  return group


def _whole(width, height):
  side = float(min(width, height))
  return ((width - side) / 2, (height - side) / 2, side)
