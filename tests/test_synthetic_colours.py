"""The synthetic dataset's colours: sided (right red, left blue) or clothing (alike both sides)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax import boxes
from d3ke_jax.data import frames, render
from d3ke_jax.data.d3ke_synthetic import D3keSynthetic, SyntheticConfig, encode_jpeg
from d3ke_jax.data.d3ke_synthetic import split_subjects
from d3ke_jax.skeleton import forward_kinematics, load_osim


@functools.lru_cache(maxsize=None)
def _model():
  return load_osim()


_render = jax.jit(render.render)


def _outfit(seed):
  return render.clothing_colours(_model().body_names, np.random.default_rng(seed))


@functools.lru_cache(maxsize=None)
def _arms_out(size):
  """The model with its arms held out to the sides and a camera in front cropped to it."""
  model = _model()
  q = np.asarray(model.coordinate_defaults).copy()
  for side in "rl":
    q[model.coordinate_index(f"shoulder_add_{side}")] = -1.2
  out = forward_kinematics(model, q[None])
  camera = frames.camera("frontal")
  pixels, _ = render.project(camera, out.markers[0])
  return out, render.crop_camera(camera, boxes.square(np.asarray(pixels), 0.2).tolist(), size)


def _forearm_pixels(colours, size=64):
  """{side: (9, 3) rendered colours along its forearm} of ``_arms_out``, lit flat (ambient 1:
  a pixel shows its body's colour). The pixels are found by projecting the forearm's axis
  (elbow to wrist, its middle half), not from the renderer."""
  model = _model()
  out, crop = _arms_out(size)
  shapes = render.body_shapes(model)._replace(colour=colours)
  image, _ = _render(crop, shapes, out.body_transforms[0], jnp.ones((model.num_bodies, 3)),
                     jnp.zeros((size, size, 3)), ambient=1.0)
  result = {}
  for side in "rl":
    ends = [model.joint_index(f"elbow_{side}"), model.joint_index(f"radiocarpal_{side}")]
    (elbow, wrist), _ = render.project(crop, out.joint_origins[0, ends])
    u, v = (elbow + np.linspace(0.25, 0.75, 9)[:, None] * (wrist - elbow)).T.astype(int)
    result[side] = np.asarray(image)[v, u]
  return result


def test_clothing_colours_the_left_and_right_forearms_alike():
  model = _model()
  for seed in range(4):
    colours = _outfit(seed)
    pixels = _forearm_pixels(colours)
    for side in "rl":  # the sampled pixels are the forearm's (its colour exactly, flat-lit)
      np.testing.assert_allclose(pixels[side], np.broadcast_to(
          colours[model.body_index(f"ulna_{side}")], (9, 3)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(pixels["r"].mean(0), pixels["l"].mean(0), rtol=0, atol=1e-6)
  # The sided colours tell them apart: red on the right, blue on the left.
  sided = _forearm_pixels(render.body_shapes(model).colour)
  red_minus_blue = {side: sided[side].mean(0)[0] - sided[side].mean(0)[2] for side in "rl"}
  assert red_minus_blue["r"] > 0.5 and red_minus_blue["l"] < -0.5


def test_outfits_are_plausible_varied_and_reproducible():
  model = _model()
  names = model.body_names
  index = lambda *bodies: [names.index(b) for b in bodies]
  outfits = np.stack([_outfit(seed) for seed in range(300)])
  np.testing.assert_array_equal(_outfit(7), outfits[7])
  assert outfits.min() >= 0 and outfits.max() <= 1
  for body, name in enumerate(names):
    if name.endswith("_r"):
      np.testing.assert_array_equal(outfits[:, body], outfits[:, names.index(name[:-2] + "_l")])
  def same(*bodies):
    colours = outfits[:, index(*bodies)]
    return np.all(colours == colours[:, :1], axis=(1, 2))
  # One colour per garment: skin, shirt, trousers, shoes.
  assert np.all(same("head", "hand_r") & same("thorax", "lumbar5", "clavicle_r", "humerus_r")
                & same("pelvis", "femur_r") & same("talus_r", "calcn_r", "toes_r"))
  # Sleeves short one time in three, shorts one time in five (binomial, 300 draws: 3.3 sd).
  short_sleeves = np.mean(same("ulna_r", "hand_r"))
  shorts = np.mean(same("tibia_r", "hand_r"))
  assert abs(short_sleeves - 1 / 3) < 0.09 and abs(shorts - 1 / 5) < 0.08
  assert np.all(same("ulna_r", "hand_r") | same("ulna_r", "humerus_r"))
  # Varied: no two shirts alike (palette colours shaded and tinted), dark and light ones.
  shirts = outfits[:, names.index("thorax")]
  assert len(np.unique(shirts, axis=0)) == len(shirts)
  assert shirts.mean(-1).min() < 0.2 and shirts.mean(-1).max() > 0.85


def _examples(colours):
  return list(frames.generate([1], ["walking"], 2, 32, colours=colours))


def test_clothing_changes_the_body_colours_only():
  sided, clothed, again = _examples("sided"), _examples("clothing"), _examples("clothing")
  assert len(sided) == len(clothed) == 4  # two frames in each view
  for a, b, c in zip(sided, clothed, again):
    for key in a:
      if key != "image":
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(b["image"], c["image"])  # deterministic
    # The same background, noise and lighting; the body (measured: 10-15 % of the 32 x 32
    # crop) in other colours.
    changed = np.mean(np.any(a["image"] != b["image"], -1))
    assert 0.03 < changed < 0.3
  with pytest.raises(ValueError, match="colours='plain'"):
    next(frames.generate([0], ["walking"], 1, 32, colours="plain"))


def test_each_config_has_a_nocue_twin_built_in_clothing_colours(tmp_path):
  configs = {c.name: c for c in D3keSynthetic.BUILDER_CONFIGS}
  for name in ("micro", "tiny", "small", "paper"):
    assert configs[name].colours == "sided"
    twin = configs[f"{name}_nocue"]
    assert twin.colours == "clothing"
    assert dataclasses.replace(twin, name=name, colours="sided",
                               description=configs[name].description) == configs[name]
  config = SyntheticConfig(name="test_nocue", image_size=32, num_subjects=3, frames_per_clip=2,
                           movements=("walking",), colours="clothing")
  builder = D3keSynthetic(config=config, data_dir=str(tmp_path), file_format="array_record")
  builder.download_and_prepare()
  train = builder.as_data_source()["train"]
  expected = frames.generate(split_subjects(3)[0], ("walking",), 2, 32, colours="clothing",
                             hard_fraction=config.hard_fraction)
  stored = [train[i]["image"] for i in range(len(train))]
  assert stored == [encode_jpeg(e["image"]) for e in expected]
