"""Video files through PyAV (FFmpeg): streaming decode to upright RGB frames, and writing.

Frames come in chunks so that memory does not grow with the video; the display rotation a
phone stores (a landscape stream tagged to be shown portrait) is applied; timestamps are
the stream's own (a variable frame rate is kept). A video that breaks off keeps the frames
decoded before the break, and the reader says where it stopped.
"""

import contextlib
import dataclasses
import fractions
import os
from typing import Optional

import av
import numpy as np

from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import atomic_path


class VideoError(UserError, ValueError):
  """A video that cannot be read: missing, empty, not a video or an unknown codec."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What a video's header says; sizes are upright (after the display rotation)."""
  path: str
  width: int
  height: int
  fps: float  # the average frame rate
  rotation: int  # degrees counter-clockwise applied to the stored frames (0, 90, 180, 270)
  frames: Optional[int]  # the frame count the container states (None: not stated)
  duration: Optional[float]  # seconds (None: not stated)
  codec: str


def _open(path):
  path = os.fspath(path)
  if os.path.isdir(path):
    raise VideoError(f"{path}: is a directory, not a video")
  if not os.path.exists(path):
    raise VideoError(f"{path}: no such file")
  if os.path.getsize(path) == 0:
    raise VideoError(f"{path}: empty file, not a video")
  try:
    container = av.open(path)
  except av.FFmpegError as e:
    raise VideoError(f"{path}: not a video FFmpeg can read ({_reason(e)})") from None
  if not container.streams.video:
    container.close()
    raise VideoError(f"{path}: no video stream (not a video, or cut before its index)")
  stream = container.streams.video[0]
  if stream.codec_context is None or not stream.codec_context.name:
    container.close()
    raise VideoError(f"{path}: unknown video codec")
  return container, stream


def _reason(error):
  return getattr(error, "strerror", None) or str(error).splitlines()[0]


def _rotation(stream, container):
  """The display rotation (degrees counter-clockwise) of the first frame, to a multiple of 90."""
  try:
    frame = next(container.decode(stream))
  except (StopIteration, av.FFmpegError):
    return 0
  finally:
    container.seek(0)
  return int(round(frame.rotation / 90.0)) * 90 % 360


def video_info(path):
  """The ``VideoInfo`` of a video file; ``VideoError`` naming the file if it is none."""
  container, stream = _open(path)
  try:
    rotation = _rotation(stream, container)
    width, height = stream.codec_context.width, stream.codec_context.height
    if rotation in (90, 270):
      width, height = height, width
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    duration = (float(stream.duration * stream.time_base) if stream.duration
                else container.duration / av.time_base if container.duration else None)
    return VideoInfo(path=os.fspath(path), width=width, height=height, fps=fps,
                     rotation=rotation, frames=stream.frames or None, duration=duration,
                     codec=stream.codec_context.name)
  finally:
    container.close()


class FrameReader:
  """Iterates over a video in chunks: ``(frames (n, H, W, 3) uint8 RGB upright, times (n,)
  seconds)``. After the iteration, ``cut`` is None, or says where decoding broke off (the
  frames before it were all yielded). Nothing is decoded beyond the current chunk. With
  ``key_frames`` only the key frames are decoded (the others are skipped undecoded)."""

  def __init__(self, path, chunk=64, key_frames=False):
    if chunk < 1:
      raise ValueError(f"chunk must be at least 1, got {chunk}")
    self.info = video_info(path)
    self.path, self.chunk, self.key_frames, self.cut = os.fspath(path), chunk, key_frames, None

  def __iter__(self):
    container, stream = _open(self.path)
    stream.thread_type = "AUTO"
    if self.key_frames:
      stream.codec_context.skip_frame = "NONKEY"
    frames, times, count = [], [], 0
    turns = self.info.rotation // 90
    try:
      decoded = container.decode(stream)
      while True:
        try:
          frame = next(decoded)
        except StopIteration:
          break
        except av.FFmpegError as e:
          self.cut = f"{self.path}: decoding stopped after {count} frames ({_reason(e)})"
          break
        image = frame.to_ndarray(format="rgb24")
        frames.append(np.ascontiguousarray(np.rot90(image, turns)) if turns else image)
        times.append(float(frame.time) if frame.time is not None else count / self.info.fps)
        count += 1
        if len(frames) == self.chunk:
          yield np.stack(frames), np.array(times)
          frames, times = [], []
      if frames:
        yield np.stack(frames), np.array(times)
      if count == 0 and self.cut is None:
        self.cut = f"{self.path}: no frame could be decoded"
      if (self.info.frames and count < self.info.frames and self.cut is None
          and not self.key_frames):
        self.cut = (f"{self.path}: the video ends after {count} of its {self.info.frames} "
                    f"frames (truncated?)")
    finally:
      container.close()


class VideoWriter:
  """Writes RGB frames ((H, W, 3) uint8, even sizes) one by one as an .mp4, atomically
  (``close`` puts it in place; ``abort`` discards it). ``rotation`` (degrees
  counter-clockwise) is stored as the display rotation, as phones do: readers show the
  frames turned by it. ``preset``: the encoder's speed (libx264); ``key_interval``: frames
  from one key frame to the next (default: the encoder's)."""

  def __init__(self, path, fps, rotation=0, codec="libx264", preset="veryfast",
               key_interval=None):
    self.path, self.fps, self.rotation, self.codec, self.preset = path, fps, rotation, codec, preset
    self.key_interval = key_interval
    self._files = contextlib.ExitStack()
    # The index goes first (faststart), so a copy cut short still plays up to the cut.
    self._container = av.open(self._files.enter_context(atomic_path(path)), "w", format="mp4",
                              options={"movflags": "faststart"})
    self._stream = None

  def write(self, image):
    image = np.asarray(image, np.uint8)
    if self._stream is None:
      self._stream = self._container.add_stream(
          self.codec, rate=fractions.Fraction(self.fps).limit_denominator(1001))
      self._stream.height, self._stream.width = image.shape[:2]
      self._stream.pix_fmt = "yuv420p"
      if self.codec == "libx264":
        # Without the macroblock tree: in PyAV's libx264 (core 165) it reads uninitialised
        # memory, so the same frames encoded to other bytes from run to run (valgrind:
        # x264_encoder_encode), which moved the person finder's results on test clips.
        self._stream.options = {"crf": "18", "preset": self.preset,
                                "x264-params": "mbtree=0"}
      if self.key_interval:
        self._stream.codec_context.gop_size = self.key_interval
      if self.rotation:
        self._stream.set_display_rotation(self.rotation)
    self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))

  def close(self):
    """Finishes the file and puts it in place."""
    try:
      if self._stream is None:
        raise ValueError(f"{self.path}: no frames to write")
      self._container.mux(self._stream.encode())
    except BaseException as e:
      self.abort(e)
      raise
    self._container.close()
    self._files.close()
    return self.path

  def abort(self, error=None):
    """Discards what was written (``error``: the exception that stopped the writing)."""
    self._container.close()
    error = error or RuntimeError(f"{self.path}: writing aborted")
    self._files.__exit__(type(error), error, error.__traceback__)


def write_video(path, frames, fps, rotation=0, codec="libx264", key_interval=None):
  """Writes RGB frames (iterable of (H, W, 3) uint8, even sizes) as an .mp4, atomically
  (``VideoWriter``)."""
  writer = VideoWriter(path, fps, rotation, codec, key_interval=key_interval)
  try:
    for image in frames:
      writer.write(image)
  except BaseException as e:
    writer.abort(e)
    raise
  return writer.close()
