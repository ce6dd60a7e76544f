"""The synthetic dataset: rendering, ground-truth consistency, splits, windows, augmentation."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax import boxes
from d3ke_jax.data import augment, frames, loader, render, synthetic
from d3ke_jax.data.records import decode, labels as read_labels
from d3ke_jax.data.windows import covering_windows, window_starts
from test_augmentation_geometry import augmented
from d3ke_jax.data.d3ke_synthetic import D3keSynthetic, SyntheticConfig, split_subjects
from d3ke_jax.skeleton import forward_kinematics, load_osim


@functools.lru_cache(maxsize=None)
def _model():
  return load_osim()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """A small dataset built by TFDS into a temporary directory (array_record)."""
  config = SyntheticConfig(name="test", image_size=48, num_subjects=5, frames_per_clip=6,
                           movements=("walking", "squatting"))
  builder = D3keSynthetic(config=config, data_dir=str(tmp_path_factory.mktemp("tfds")),
                          file_format="array_record")
  builder.download_and_prepare()
  return builder.as_data_source(), builder


def _pose(model, frames_=1):
  subject = synthetic.make_subject(model, 0)
  coords = synthetic.movement(model, "walking", subject, 10)[:frames_]
  return subject, coords, forward_kinematics(model, coords, scales=subject.scales)


def test_markers_project_onto_the_drawn_body():
  model = _model()
  subject, _, out = _pose(model)
  camera = frames.camera("frontal")
  pixels, _ = render.project(camera, out.markers[0])
  crop = render.crop_camera(camera, boxes.square(np.asarray(pixels), 0.2).tolist(), 128)
  _, body = render.render(crop, render.body_shapes(model), out.body_transforms[0],
                          jnp.asarray(subject.scales), jnp.zeros((128, 128, 3)))
  uv, _ = render.project(crop, out.markers[0])
  on_body = [np.asarray(body)[int(v), int(u)] >= 0 for u, v in np.asarray(uv)]
  assert np.mean(on_body) > 0.9


def test_torso_hides_an_arm_behind_it():
  model = _model()
  q = np.asarray(model.coordinate_defaults).copy()
  q[model.coordinate_index("shoulder_flex_r")] = -0.9  # arm swung back, behind the trunk
  q[model.coordinate_index("shoulder_add_r")] = 0.45  # and across the back
  out = forward_kinematics(model, q[None])
  shapes = render.body_shapes(model)
  # Look from behind and from the front: the hand is visible from behind only.
  hand = out.joint_origins[0, model.joint_index("radiocarpal_r")]
  seen = {}
  for name, eye in (("front", (4.0, 0.2, 0.0)), ("back", (-4.0, 0.2, 0.0))):
    camera = render.look_at(eye, (0, 0, 0), 400, (64, 64))
    _, body = render.render(camera, shapes, out.body_transforms[0], jnp.ones((model.num_bodies, 3)),
                            jnp.zeros((128, 128, 3)))
    (u, v), _ = render.project(camera, hand)
    seen[name] = model.body_names[int(np.asarray(body)[int(v), int(u)])]
  assert seen["back"] in ("hand_r", "radius_r", "ulna_r")
  assert seen["front"] not in ("hand_r", "radius_r", "ulna_r")


def test_left_and_right_are_distinguishable():
  shapes = render.body_shapes(_model())
  names = _model().body_names
  assert not np.allclose(shapes.colour[names.index("femur_r")], shapes.colour[names.index("femur_l")])


def test_subjects_and_movements_stay_in_range():
  model = _model()
  low, high = np.asarray(model.coordinate_ranges).T
  for index in range(3):
    subject = synthetic.make_subject(model, index)
    # Stature times per-body factors (measured: median / stature 0.98-0.99, spread of the
    # bodies' log factors 0.047-0.064) times per-axis ones (largest axis ratio 1.06-1.10).
    factors = subject.scales / subject.stature
    assert abs(np.median(factors) - 1) < 0.04
    assert 0.02 < np.std(np.log(factors.mean(1))) < 0.1
    assert np.max(factors.max(1) / factors.min(1)) < 1.2
    np.testing.assert_array_equal(subject.scales[model.body_index("femur_r")],
                                  subject.scales[model.body_index("femur_l")])
    for name in synthetic.MOVEMENTS:
      coords = synthetic.movement(model, name, subject, 20)
      # Clipped to the ranges, but seldom at a bound (measured: <= 0.4 % of the values),
      # and moving (largest excursion measured >= 0.12 rad).
      assert np.mean((coords <= low) | (coords >= high)) < 0.01, name
      assert np.ptp(coords, axis=0).max() > 0.05, name
      assert np.max(np.abs(np.diff(coords, axis=0))) < 0.5  # smooth at 30 fps
  with pytest.raises(KeyError, match="unknown movement"):
    synthetic.movement(model, "moonwalk", synthetic.make_subject(model, 0), 5)


def test_splits_never_share_subjects():
  for n in (5, 12, 30, 90):
    train, validation, test = split_subjects(n)
    assert len(train) + len(validation) + len(test) == n
    assert not (set(train) & set(validation) or set(train) & set(test) or set(validation) & set(test))


def test_records_are_self_consistent(source):
  sources, _ = source
  model = _model()
  record = decode(sources["train"][3])
  assert record["image"].shape == (48, 48, 3)
  low, high = np.asarray(model.coordinate_ranges).T
  assert np.all((record["coordinates"] >= low - 1e-6) & (record["coordinates"] <= high + 1e-6))
  # Float32 throughout, as stored and trained; measured over the 72 training records:
  # 4.8e-7 m (3D), 6e-8 (rotation), 7.3e-6 px (2D).
  out = forward_kinematics(model, record["coordinates"], scales=record["scales"])
  assert out.markers.dtype == np.float32
  rotation, translation = record["camera_rotation"], record["camera_translation"]
  np.testing.assert_allclose(np.asarray(out.markers) @ rotation.T + translation,
                             record["markers"], rtol=0, atol=1.5e-6)
  np.testing.assert_allclose(np.asarray(out.joint_origins) @ rotation.T + translation,
                             record["joints"], rtol=0, atol=1.5e-6)
  np.testing.assert_allclose(rotation @ np.asarray(out.body_transforms[model.root_body, :3, :3]),
                             record["pelvis_rotation"], rtol=0, atol=2e-7)
  projected = record["markers"].astype(float) @ record["intrinsics"].astype(float).T
  np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], record["markers_2d"], rtol=0,
                             atol=2e-5)
  # The D3KE layer's view: root-relative, camera-oriented, from the stored pelvis rotation.
  relative = forward_kinematics(model, record["coordinates"], scales=record["scales"],
                                root_rotation=record["pelvis_rotation"])
  root = record["joints"][model.root_joint]
  np.testing.assert_allclose(relative.markers, record["markers"] - root, rtol=0, atol=1.5e-6)


def test_splits_and_windows_respect_subjects_and_clips(source):
  sources, _ = source
  subjects = {name: {sources[name][i]["subject"] for i in range(len(sources[name]))}
              for name in ("train", "validation", "test")}
  assert not (subjects["train"] & subjects["test"] or subjects["train"] & subjects["validation"])
  labels = read_labels(sources["train"], ("clip", "frame", "coordinates"))
  clips = labels["clip"]
  starts = window_starts(clips, window=4, stride=1)
  assert all(clips[s] == clips[s + 3] for s in starts)
  assert len(starts) == len(set(clips)) * 3  # 6-frame clips hold 3 windows of 4
  order = loader.TrainOrder(len(starts), 4, (0, 4))
  stream = loader.TrainStream(loader.ReadWindow(labels, starts, 4), order, 1)
  batch, _ = next(stream.batches(0))
  assert batch["coordinates"].shape[:2] == (4, 4)
  np.testing.assert_array_equal(np.diff(batch["frame"], axis=-1), 1)
  assert np.all(batch["clip"] == batch["clip"][..., :1])
  # Windows covering whole clips (prediction): every frame once, from a window of its clip.
  index, source = covering_windows(clips, 4)
  np.testing.assert_array_equal(index[source[:, 0], source[:, 1]], np.arange(len(clips)))
  assert np.all(clips[index] == clips[index[:, :1]])


def _rigid_motion(world, camera):
  """(R, t) minimising |R world + t - camera| (Kabsch): the camera pose the labels imply."""
  world_centre, camera_centre = world.mean(0), camera.mean(0)
  u, _, vt = np.linalg.svd((camera - camera_centre).T @ (world - world_centre))
  rotation = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
  return rotation, camera_centre - rotation @ world_centre


@pytest.mark.parametrize("seed", [3, 4])
def test_augmented_image_is_what_the_augmented_camera_sees(source, seed):
  """Independent of augment's own formulas: the camera the augmented labels imply (their
  intrinsics, and the pose carrying the world's markers onto the augmented 3D markers)
  renders, with the renderer, the image augment made. The body is drawn over black, lit
  along the optical axis (so a spin about it keeps the shading), in a crop that puts the
  principal point 18-20 px off the image centre, where a rotation or zoom about another
  point shows."""
  sources, _ = source
  model = _model()
  record = decode(sources["train"][2])
  out = forward_kinematics(model, record["coordinates"], scales=record["scales"])
  world = np.asarray(out.markers, np.float64)
  size = 128

  def view(camera):
    image, _ = render.render(camera, render.body_shapes(model), out.body_transforms,
                             jnp.asarray(record["scales"]), jnp.zeros((size, size, 3)),
                             light=(0.0, 0.0, 1.0))
    return (np.asarray(image) * 255).astype(np.uint8)

  recorded = render.Camera(record["intrinsics"].astype(float),
                           record["camera_rotation"].astype(float),
                           record["camera_translation"].astype(float))
  crop = render.crop_camera(recorded, (-1.0, -1.0, 68.0), size)  # the body left of centre
  assert np.all(np.abs(crop.intrinsics[:2, 2] - size / 2) > 15)
  example = dict(record, image=view(crop), intrinsics=crop.intrinsics.astype(np.float32))
  moved = augmented(example, seed, augment.Augmentation(0.15, 30.0, 0.05, colour=0.0,
                                                        occluders=0))
  rotation, translation = _rigid_motion(world, moved["markers"].astype(float))
  # The 3D labels are the world's markers seen by a camera (measured residual: 2.4e-7 m).
  np.testing.assert_allclose(world @ rotation.T + translation, moved["markers"], atol=1e-6)
  expected = view(render.Camera(moved["intrinsics"].astype(float), rotation, translation))
  difference = np.abs(moved["image"].astype(int) - expected).max(-1)
  drawn = (moved["image"].max(-1) > 10) | (expected.max(-1) > 10)
  # Measured (3 records x 6 seeds): <= 9.7 % of the drawn pixels differ by more than 60
  # (outlines, resampled bilinearly), mean difference <= 1.3. Rotating and zooming about the
  # image centre instead: >= 55 % and >= 5.2; not augmenting: >= 73 % and >= 6.4.
  assert np.mean(difference[drawn] > 60) < 0.15
  assert np.mean(difference) < 3.0
  assert np.mean(np.abs(example["image"].astype(int) - expected).max(-1)[drawn] > 60) > 0.5
