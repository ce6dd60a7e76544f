"""Video reading and writing (PyAV): streaming chunks, timestamps, display rotation, and
damaged or empty files."""

import os

import numpy as np
import pytest

from d3ke_jax.io.video import FrameReader, VideoError, video_info, write_video

FRAMES, HEIGHT, WIDTH = 24, 48, 64
# H.264 at crf 18 on smooth content: mean absolute error per channel, measured ~1.
CODEC_ERROR = 4.0


def _clip():
  """Smooth moving content with an unmistakable top: a white band over the first rows."""
  y, x = np.mgrid[:HEIGHT, :WIDTH]
  frames = np.stack([np.stack([(x * 3 + 5 * t) % 256, y * 4, np.full_like(x, 100)], -1)
                     for t in range(FRAMES)]).astype(np.uint8)
  frames[:, :8] = 255
  return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  frames = _clip()
  path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
  write_video(path, frames, 30)
  return path, frames


def test_chunks_timestamps_and_pixels(clip):
  path, frames = clip
  info = video_info(path)
  assert (info.width, info.height, info.fps, info.rotation, info.frames) == (
      WIDTH, HEIGHT, 30.0, 0, FRAMES)
  reader = FrameReader(path, chunk=10)
  chunks = list(reader)
  assert [len(f) for f, _ in chunks] == [10, 10, 4] and reader.cut is None
  decoded = np.concatenate([f for f, _ in chunks])
  np.testing.assert_allclose(np.concatenate([t for _, t in chunks]), np.arange(FRAMES) / 30)
  assert np.abs(decoded.astype(int) - frames).mean() < CODEC_ERROR


def test_rotation_metadata_comes_out_upright(tmp_path):
  """A phone stores portrait video landscape with a 90-degree display rotation."""
  frames = _clip()
  stored = np.rot90(frames, -1, axes=(1, 2))  # turned clockwise, to be shown turned back
  path = str(tmp_path / "phone.mp4")
  write_video(path, stored, 30, rotation=90)
  info = video_info(path)
  assert (info.width, info.height, info.rotation) == (WIDTH, HEIGHT, 90)
  decoded = np.concatenate([f for f, _ in FrameReader(path)])
  assert decoded.shape == frames.shape
  assert np.abs(decoded.astype(int) - frames).mean() < CODEC_ERROR


def test_truncated_video_keeps_the_frames_before_the_cut(clip, tmp_path):
  path = tmp_path / "cut.mp4"
  data = open(clip[0], "rb").read()
  path.write_bytes(data[:len(data) * 85 // 100])  # the header is most of this small file
  reader = FrameReader(str(path))
  decoded = np.concatenate([f for f, _ in reader])
  assert 0 < len(decoded) < FRAMES
  assert np.abs(decoded.astype(int) - clip[1][:len(decoded)]).mean() < CODEC_ERROR
  assert reader.cut == (f"{path}: the video ends after {len(decoded)} of its {FRAMES} frames "
                        "(truncated?)")


def test_corrupt_video_reports_where_decoding_stopped(clip, tmp_path):
  data = bytearray(open(clip[0], "rb").read())
  middle = len(data) // 2
  data[middle:middle + 2000] = np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
  path = tmp_path / "corrupt.mp4"
  path.write_bytes(bytes(data))
  reader = FrameReader(str(path))
  count = sum(len(f) for f, _ in reader)
  assert count < FRAMES and reader.cut.startswith(f"{path}: ")


@pytest.mark.parametrize("content, message", [
    (b"", "empty file, not a video"),
    (b"not a video at all" * 100, "not a video FFmpeg can read (Invalid data found when "
     "processing input)"),
])
def test_unreadable_files_are_named(tmp_path, content, message):
  path = tmp_path / "bad.mp4"
  path.write_bytes(content)
  with pytest.raises(VideoError) as error:
    FrameReader(str(path))
  assert str(error.value) == f"{path}: {message}"


def test_missing_file_and_folder(tmp_path):
  with pytest.raises(VideoError, match="no such file"):
    video_info(str(tmp_path / "none.mp4"))
  with pytest.raises(VideoError, match="is a directory"):
    video_info(str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing written next to the inputs
