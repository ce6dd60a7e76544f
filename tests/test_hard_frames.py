"""Hard frames of the synthetic dataset: chosen from the seed, marked in the records, and
really hard (an occluder over the body, joints outside the crop, less image detail), with
the labels of the clean frame."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax import boxes
from d3ke_jax.data import frames, hard, loader
from d3ke_jax.data.d3ke_synthetic import D3keSynthetic
from d3ke_jax.data.records import decode, labels, numeric
from d3ke_jax.data.registry import quiet_tfds
from d3ke_jax.train import step

SIZE = 32


@functools.lru_cache(maxsize=1)
def _pairs():
  """(hard, clean) examples of one subject's two movements, 8 frames in both views: made
  with 30 % hard frames and without."""
  make = lambda fraction: list(frames.generate([0], ["walking", "squatting"], 8, SIZE,
                                               hard_fraction=fraction))
  return list(zip(make(0.3), make(0.0)))


def _inside(points):
  return np.all((points >= 0) & (points < SIZE), axis=1)


def _gradient_energy(image):
  image = image.astype(float)
  return np.mean(np.diff(image, axis=0) ** 2) + np.mean(np.diff(image, axis=1) ** 2)


def test_hard_frames_are_chosen_per_clip_from_the_seed():
  kinds = hard.choose(np.random.default_rng(0), 30, 0.3)
  assert kinds == hard.choose(np.random.default_rng(0), 30, 0.3)  # deterministic
  assert sum(k != hard.NONE for k in kinds) == 9
  assert sorted(kinds.count(k) for k in hard.KINDS) == [3, 3, 3]
  assert hard.choose(np.random.default_rng(0), 8, 0.0) == [hard.NONE] * 8
  with pytest.raises(ValueError, match="hard fraction 1.5"):
    hard.choose(np.random.default_rng(0), 8, 1.5)
  groups = hard.groups(np.array(["none", "blurred", "outside", "none"]))
  assert list(groups) == ["clean", *hard.KINDS, "hard", "all"]
  np.testing.assert_array_equal(groups["hard"], [False, True, True, False])


def test_hard_frames_keep_the_labels_and_clean_frames_stay_as_they_were():
  pairs = _pairs()
  kinds = [h["hard"] for h, _ in pairs]
  assert all(c["hard"] == hard.NONE for _, c in pairs)
  for clip in range(4):  # 2 of every clip's 8 frames
    assert sum(k != hard.NONE for k in kinds[8 * clip:8 * clip + 8]) == 2
  assert set(kinds) == {hard.NONE, *hard.KINDS}
  for h, c in pairs:
    for key in ("coordinates", "scales", "pelvis_rotation", "joints", "markers"):
      np.testing.assert_array_equal(h[key], c[key], err_msg=key)
    if h["hard"] != "outside":  # the same crop
      for key in ("joints_2d", "markers_2d", "box", "intrinsics"):
        np.testing.assert_array_equal(h[key], c[key], err_msg=key)
    if h["hard"] == hard.NONE:
      np.testing.assert_array_equal(h["image"], c["image"])
      assert _inside(c["joints_2d"]).all()


def test_an_occluder_covers_part_of_the_body():
  pairs = [(h, c) for h, c in _pairs() if h["hard"] == "occluded"]
  assert pairs
  for h, c in pairs:
    changed = np.any(h["image"] != c["image"], -1)
    # Measured: 7-16 % of the crop differs, in one flat-coloured shape over a joint.
    assert 0.03 < changed.mean() < 0.35
    rows, cols = np.nonzero(changed)
    joints = c["joints_2d"]
    covered = ((joints[:, 0] >= cols.min()) & (joints[:, 0] <= cols.max() + 1)
               & (joints[:, 1] >= rows.min()) & (joints[:, 1] <= rows.max() + 1))
    assert covered.any()
    flat = h["image"][changed].astype(float).std(0).mean()
    assert flat < c["image"][changed].astype(float).std(0).mean()
  # The occluder itself: opaque where its mask is, nothing changed elsewhere.
  rng = np.random.default_rng(5)
  image = rng.uniform(size=(SIZE, SIZE, 3))
  joints = np.array([[10.0, 12.0], [-5.0, 3.0]])  # the second is outside the crop
  occluded, mask = hard.occlude(image, joints, rng)
  assert mask[12, 10] and 0.03 < mask.mean() < 0.3
  np.testing.assert_array_equal(occluded[~mask], image[~mask])
  assert occluded[mask].std(0).max() < 0.1


def test_outside_frames_cut_joints_off_and_their_labels_follow_the_crop():
  pairs = [(h, c) for h, c in _pairs() if h["hard"] == "outside"]
  assert pairs
  for h, c in pairs:
    inside = _inside(h["joints_2d"])
    assert not inside.all() and inside.mean() >= 0.5
    assert h["box"][2] < c["box"][2]  # zoomed in
    projected = h["joints"].astype(float) @ h["intrinsics"].astype(float).T
    np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], h["joints_2d"], atol=2e-3)


def test_the_box_head_learns_the_whole_person_on_outside_frames():
  """On a frame whose crop cuts limbs off, the box head's target is still the whole
  person's box (beyond the crop's edges): in the frame, the same box as the clean twin's,
  so steering towards it brings the limbs back into the crop."""
  pairs = [(h, c) for h, c in _pairs() if h["hard"] == "outside"]
  batch = lambda examples: {key: jnp.asarray(np.stack([e[key] for e in examples]))
                            for key in ("image", "markers", "markers_2d", "frame_valid")}
  hard_target, mask = step.box_targets(batch([h for h, _ in pairs]))
  clean_target, _ = step.box_targets(batch([c for _, c in pairs]))
  np.testing.assert_array_equal(mask, 1)
  low = np.asarray(hard_target[:, :2])
  assert ((low < 0) | (low + np.asarray(hard_target[:, 2:]) > 1)).any(-1).all()  # past the crop
  in_frame = lambda target, examples: boxes.in_frame(np.asarray(target),
                                                     np.stack([e["box"] for e in examples]))
  np.testing.assert_allclose(in_frame(hard_target, [h for h, _ in pairs]),
                             in_frame(clean_target, [c for _, c in pairs]), rtol=1e-4)


def test_blur_takes_the_image_detail_away():
  pairs = [(h, c) for h, c in _pairs() if h["hard"] == "blurred"]
  assert pairs
  for h, c in pairs:
    # Measured: 0.19-0.27 of the clean frame's gradient energy (sensor noise included).
    assert _gradient_energy(h["image"]) < 0.5 * _gradient_energy(c["image"])
  rng = np.random.default_rng(1)
  image = rng.uniform(size=(SIZE, SIZE, 3))  # detail in every direction
  for _ in range(6):  # Gaussian and motion blur keep the mean and smooth the pixels
    blurred = hard.blur(image, rng)
    np.testing.assert_allclose(blurred.mean(), image.mean(), atol=0.01)
    assert _gradient_energy(blurred) < 0.5 * _gradient_energy(image)


def test_records_carry_the_kind_and_batches_leave_it_out(micro_data):
  with quiet_tfds():
    builder = D3keSynthetic(config="micro", data_dir=micro_data, file_format="array_record")
  assert str(builder.version) == "1.2.0" and "1.2.0" in builder.RELEASE_NOTES
  source = builder.as_data_source()["train"]
  record = decode(source[0])
  assert isinstance(record["hard"], str) and "hard" not in numeric(record)
  kinds = labels(source, ("clip",), optional=("hard",))["hard"]
  assert set(kinds) == {hard.NONE, *hard.KINDS}
  assert np.mean(kinds != hard.NONE) == 0.25  # round(0.3 * 8) of every 8-frame clip
  # Decoded for training: the text is dropped, the batch is arrays only.
  read = loader.ReadFrame(source)
  batch = next(iter(loader.batches(read, loader.SplitOrder(len(source), 4, (0, 4)), 4, 0, 4)))
  assert "hard" not in batch and batch["image"].shape == (4, SIZE, SIZE, 3)
