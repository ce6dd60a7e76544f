"""The person finder (``locate.BackgroundTracker``, what ``experiments.infer`` runs without
``--boxes``) on rendered static-camera clips (``experiments.bench_boxes``: a portrait view,
a textured backdrop, camera noise, H.264) with known full-body boxes: it holds the person
(IoU > 0.7 with the true box on at least 90 % of frames, the issue's bar 80 %; ``bench
boxes`` measures larger clips), covers their legs where their trousers match the background,
keeps a person who stops found, and a second person passing does not take the box."""

import numpy as np
import pytest

from d3ke_jax import boxes
from d3ke_jax.infer import locate
from experiments import bench_boxes

FRAMES, WIDTH, HEIGHT = 30, 136, 240


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  """{name: (true boxes, found boxes, sources)} of small clips (about 15 s to render)."""
  folder, out = tmp_path_factory.mktemp("clips"), {}
  for name in ("second", "slow", "stop_second", "legs", "front"):
    path, truth = bench_boxes.write_clip(str(folder / f"{name}.mp4"), name, frames=FRAMES,
                                         width=WIDTH, height=HEIGHT)
    out[name] = (truth, *bench_boxes.find(path))
  return out


@pytest.mark.parametrize("name, median, above", [
    ("second", 0.9, 0.9), ("slow", 0.9, 0.9), ("legs", 0.9, 0.9), ("stop_second", 0.78, 0.9),
    ("front", 0.85, 0.8)])
def test_the_box_holds_the_person(clips, name, median, above):
  """On one machine: median IoU 0.96, 0.94, 0.96, 0.82 and 0.94; every frame above 0.79
  but in ``front``, 89 % (the finder before: slow 0.41, legs 0.42, stop_second 0.56 and
  front 0.50 on bench boxes' clips)."""
  truth, found, _ = clips[name]
  overlap = boxes.iou(found, truth)
  assert np.median(overlap) > median and np.mean(overlap > 0.7) >= above, overlap


def test_a_person_who_stops_stays_found_and_keeps_the_box(clips):
  """They stop at 40 % of the clip (and stand still for the rest, in the clip's median
  frame: the background model holds them) while a second person passes behind them: found
  again within a few frames (``still``; held while the passer-by changes the pixels behind
  them), the box never taken by the passer-by."""
  truth, found, sources = clips["stop_second"]
  stop = int(0.4 * FRAMES)
  assert np.all(sources[:stop - 3] == locate.BACKGROUND), sources  # bar the last steps
  assert np.mean(np.isin(sources[stop:], locate.FOUND)) >= 0.6, sources
  assert sources[-1] == locate.STILL, sources  # (held while the passer-by is behind them)
  assert np.all(boxes.iou(found, truth) > 0.6)


def test_the_second_person_does_not_take_the_box(clips):
  """A second person, of other clothes, crosses behind the walker the other way: every
  box stays on the walker (their colours differ beyond ``COLOUR_GATE``)."""
  truth, found, sources = clips["second"]
  assert np.all(sources == locate.BACKGROUND) and np.all(boxes.iou(found, truth) > 0.6)


def test_people_detector_sees_a_rendered_walker():
  """OpenCV's HOG detector (the second opinion) near a person's box gives boxes of them in
  frame pixels; a frame without anyone gives none."""
  images, truth = bench_boxes.render_clip("walk", frames=4, width=WIDTH, height=HEIGHT)
  detector = locate.PeopleDetector()
  if detector.cv2 is None:
    pytest.skip("opencv-python-headless is not installed")
  hits = [boxes.iou(boxes.from_corners(detector(image, box), boxes.MARGIN), box).max(initial=0)
          for image, box in zip(images, truth)]
  assert max(hits) > 0.7, hits
  empty = np.full_like(images[0], 128)
  assert len(detector(empty, truth[0])) == 0
