"""TFDS builder ``d3ke_synthetic``: rendered frames of the default model with exact kinematics.

Configs differ in crop size and amount of data, and in colours: micro, tiny, small and paper
colour the right side red and the left blue (a cue no real video has); each ``<name>_nocue``
is ``<name>`` with clothing colours instead (skin, shirt, trousers, shoes; the same on both
sides, one outfit per subject and movement), so left and right must be told from the pose and
the view.
Splits hold disjoint subjects in MoVi's 63 / 3 / 16 ratio. Frames of a clip (one subject,
movement and camera view) are stored in order, so sequence networks can read windows. Ground
truth per frame: coordinates (model order), body scales (relative to the model), pelvis
rotation, joints and markers in the camera frame (metres), their 2D projections in the crop
(pixels), the crop box, the camera, and validity masks. ``hard_fraction`` (30 %) of each
clip's frames are hard to see (``d3ke_jax.data.hard``: an occluder in front of the body,
limbs outside the crop, or strong blur); the text feature ``hard`` names the kind ("none"
for a clean frame); the labels stay the truth.

Build: ``python -m experiments.build_data synthetic`` (array_record files, no TensorFlow).
"""

import dataclasses
import io
from typing import Tuple

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from d3ke_jax.data import frames as frame_generation
from d3ke_jax.data import hard as hard_cases
from d3ke_jax.data.synthetic import MOVEMENTS, RATE


class Announced:
  """A TFDS builder's first and last lines saying what it builds where (TFDS's own speak of
  a download of unknown size, for data made here)."""

  def _log_download_bytes(self):
    print(f"building {self.name}/{self.builder_config.name} into {self.data_dir}", flush=True)

  def _log_download_done(self):
    print(f"{self.name}/{self.builder_config.name} built in {self.data_dir}", flush=True)


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  image_size: int = 128
  num_subjects: int = 30
  frames_per_clip: int = 34
  movements: Tuple[str, ...] = tuple(sorted(MOVEMENTS))
  seed: int = 0
  colours: str = "sided"  # or "clothing" (``frames.COLOURS``)
  hard_fraction: float = hard_cases.FRACTION  # of each clip's frames (``data.hard``)


def split_subjects(num_subjects):
  """(train, validation, test) subject indices in MoVi's 63 / 3 / 16 ratio."""
  validation = max(1, round(num_subjects * 3 / 82))
  test = max(1, round(num_subjects * 16 / 82))
  train = num_subjects - validation - test
  if train < 1:
    raise ValueError(f"{num_subjects} subjects cannot make three disjoint splits")
  order = list(range(num_subjects))
  return order[:train], order[train:train + validation], order[train + validation:]


class D3keSynthetic(Announced, tfds.core.GeneratorBasedBuilder):
  """Synthetic D3KE frames; see the module docstring."""

  FRAME_RATE = RATE  # frames per second of every clip
  SYNTHETIC = True  # rendered, not filmed: weights trained on it say so at inference
  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "The default model's 114 markers (BML-MoVi's virtual-marker set).",
                   "1.2.0": "Hard frames (30 % of each clip: occluded, limbs outside the crop, "
                            "blurred), named by the new text feature `hard` (none, occluded, "
                            "outside, blurred)."}
  BUILDER_CONFIGS = [
      SyntheticConfig(name="micro", description="32 px, 5 subjects, 2 movements, 8-frame "
                      "clips (unit tests)", image_size=32, num_subjects=5, frames_per_clip=8,
                      movements=("squatting", "walking")),
      SyntheticConfig(name="tiny", description="64 px, 12 subjects, 30-frame clips "
                      "(CPU tests and the README's first command)", image_size=64,
                      num_subjects=12, frames_per_clip=30),
      SyntheticConfig(name="small", description="128 px, 30 subjects, 34-frame clips "
                      "(~20k frames)", image_size=128, num_subjects=30, frames_per_clip=34),
      SyntheticConfig(name="paper", description="256 px, 90 subjects, 120-frame clips",
                      image_size=256, num_subjects=90, frames_per_clip=120),
  ]
  BUILDER_CONFIGS += [
      dataclasses.replace(c, name=f"{c.name}_nocue", colours="clothing",
                          description=f"{c.description}; clothing colours, alike left and right")
      for c in BUILDER_CONFIGS]

  @classmethod
  def label_model(cls):
    """The skeletal model the labels are made with (its coordinate, body, joint and marker
    order is the records')."""
    return frame_generation.default_model()

  def _info(self):
    features = example_features(self.label_model())
    features["hard"] = tfds.features.Text()  # "none" or one of ``hard.KINDS``
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        homepage="https://github.com/bittnerma/Direct3DKinematicEstimation",
        disable_shuffling=True,  # records stay in generation order: clips, frames in order
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is generated
    train, validation, test = split_subjects(self.builder_config.num_subjects)
    return {"train": self._generate_examples(train),
            "validation": self._generate_examples(validation),
            "test": self._generate_examples(test)}

  def _generate_examples(self, subjects):
    config = self.builder_config
    for example in frame_generation.generate(subjects, config.movements, config.frames_per_clip,
                                             config.image_size, config.seed, config.colours,
                                             config.hard_fraction):
      example["image"] = encode_jpeg(example["image"])
      yield f"{example['clip']:06d}_{example['frame']:05d}", example


def example_features(model):
  """The features of a D3KE record, for the skeletal model ``model`` of its labels."""
  c, b, j, m = model.num_coordinates, model.num_bodies, model.num_joints, model.num_markers
  array = lambda *shape: tfds.features.Tensor(shape=shape, dtype=np.float32)
  return {
      # JPEG bytes encoded with Pillow (TFDS's Image feature would need TensorFlow);
      # ``d3ke_jax.data.records`` decodes them.
      "image": tfds.features.Tensor(shape=(), dtype=np.object_),
      "coordinates": array(c), "scales": array(b, 3), "pelvis_rotation": array(3, 3),
      "joints": array(j, 3), "markers": array(m, 3), "joints_2d": array(j, 2),
      "markers_2d": array(m, 2), "box": array(3), "intrinsics": array(3, 3),
      "camera_rotation": array(3, 3), "camera_translation": array(3),
      "subject": np.int32, "clip": np.int32, "frame": np.int32,
      "movement": tfds.features.Text(), "view": tfds.features.Text(),
      "frame_valid": np.bool_,
      "coordinate_valid": tfds.features.Tensor(shape=(c,), dtype=np.bool_),
  }


def encode_jpeg(image, quality=92):
  buffer = io.BytesIO()
  PIL.Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def decode_jpeg(data):
  return np.asarray(PIL.Image.open(io.BytesIO(data)).convert("RGB"))
