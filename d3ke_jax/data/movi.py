"""TFDS builder ``movi``: BML-MoVi video frames with ground truth made by the project's solvers.

The user downloads BML-MoVi, AMASS BMLmovi and SMPL+H (``MANUAL_DOWNLOAD_INSTRUCTIONS``) into
one directory; ``python -m experiments.build_data movi --manual_dir DIR`` builds records with
the features of ``d3ke_synthetic`` (so training and evaluation run unchanged) plus MoVi's
movement index, video frame and per-marker validity. ``view`` is the camera (PG1, PG2).
Splits follow the paper's subject lists (train 67 / validation 4 / test 18).

Subjects are built independently (``movi_subject``): on one machine in ``workers`` worker
processes, each subject written to a work file that a restarted build reuses, so a crash
loses only the subjects in progress; with a Beam runner (``DownloadConfig(beam_runner=...)``
or ``beam_options``) TFDS runs the same per-subject function as a Beam pipeline.
"""

import concurrent.futures
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import shutil
import sys

from flax import serialization
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from d3ke_jax.body import smplh
from d3ke_jax.data import cameras as camera_lib
from d3ke_jax.data import movi_files, movi_subject
from d3ke_jax.data.d3ke_synthetic import Announced, D3keSynthetic, example_features
from d3ke_jax.data.loader import usable_cpus
from d3ke_jax.errors import UserError
from d3ke_jax.io.atomic import atomic_path


@dataclasses.dataclass
class MoviConfig(tfds.core.BuilderConfig):
  image_size: int = 256
  seed: int = 0  # draws each clip's box margin


class Movi(Announced, tfds.core.GeneratorBasedBuilder):
  """BML-MoVi frames; see the module docstring."""

  FRAME_RATE = movi_files.VIDEO_RATE
  SYNTHETIC = False
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = movi_files.MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
      MoviConfig(name="256px", description="256 px crops (the paper's)", image_size=256),
      MoviConfig(name="128px", description="128 px crops", image_size=128),
  ]

  def __init__(self, *, workers=None, cameras_path=None, report=None, **kwargs):
    """``workers``: subject processes on this machine (default: half the usable CPU cores,
    ``loader.usable_cpus``);
    ``cameras_path``: a calibration file overriding the original's PG1/PG2 values;
    ``report``: called with one line per skipped input (default: logging.warning)."""
    super().__init__(**kwargs)
    self._workers = workers or max(1, usable_cpus() // 2)
    self._cameras_path = cameras_path
    self._report = report or logging.warning
    self._beam = False

  @classmethod
  def label_model(cls):
    """The skeletal model the labels are made with: the packaged one, as d3ke_synthetic's."""
    return D3keSynthetic.label_model()

  def _info(self):
    model = self.label_model()
    features = example_features(model)
    features.update(
        movement_index=np.int32, video_frame=np.int32,
        markers_valid=tfds.features.Tensor(shape=(model.num_markers,), dtype=np.bool_))
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        homepage="https://www.biomotionlab.ca/movi/",
        disable_shuffling=True)  # records keep generation order: clips, frames in order

  def download_and_prepare(self, *, download_dir=None, **kwargs):  # pylint: disable=arguments-differ
    """TFDS's; a build that fails removes the folders it made: the dataset's, and the empty
    ones around it (the work files of finished subjects stay for the next try; an earlier
    dataset and the downloads are never touched)."""
    dataset = os.path.join(self._data_dir_root, self.name)
    downloads = download_dir or os.path.join(self._data_dir_root, "downloads")
    work = self._work_dir()
    folders = (os.path.join(dataset, self.builder_config.name), os.path.join(dataset, ".config"),
               dataset, os.path.join(downloads, "extracted"), downloads, work,
               os.path.dirname(work), os.path.dirname(os.path.dirname(work)),
               self._data_dir_root)  # inner ones first
    made = [folder for folder in folders if not os.path.exists(folder)]
    try:
      super().download_and_prepare(download_dir=download_dir, **kwargs)
    except BaseException:
      for folder in made:
        if os.path.dirname(folder) == dataset:  # this config's folder, TFDS's metadata
          shutil.rmtree(folder, ignore_errors=True)
        else:
          with contextlib.suppress(OSError):  # only where empty
            os.rmdir(folder)
      raise

  def _download_and_prepare(self, dl_manager, download_config):
    self._beam = bool(download_config.beam_runner or download_config.beam_options)
    super()._download_and_prepare(dl_manager, download_config)
    shutil.rmtree(self._work_dir(), ignore_errors=True)  # built: the work files are spent

  def _work_dir(self):
    return os.path.join(self._data_dir_root, "movi_work", self.builder_config.name,
                        str(self.version))

  def _split_generators(self, dl_manager):
    files = movi_files.find_files(dl_manager.manual_dir)
    settings = movi_subject.Settings(
        image_size=self.builder_config.image_size, smplh_paths=files.smplh,
        cameras={**camera_lib.MOVI_CAMERAS, **(
            camera_lib.load_cameras(self._cameras_path, movi_files.CAMERAS)
            if self._cameras_path else {})},
        seed=self.builder_config.seed)
    by_split = {split: [] for split in movi_files.SPLITS}
    models = set()
    for sid, subject in sorted(files.subjects.items()):
      split = movi_files.split_of(sid)
      if split is None:
        self._report(f"subject {sid} is in none of the paper's splits; its files are ignored")
      elif subject.v3d is None:
        self._report(f"subject {sid}: no F_v3d_Subject_{sid}.mat; subject skipped")
      elif not subject.motions:
        self._report(f"subject {sid}: no AMASS Subject_{sid}_F_*_poses.npz; subject skipped")
      else:
        models.add(check_inputs(subject, files.smplh))
        by_split[split].append(subject)
    for path in sorted(models):
      smplh.load_smplh(path)
    if not any(by_split.values()):
      raise UserError(f"{dl_manager.manual_dir}: no MoVi subject with both a v3d .mat and "
                      "AMASS motions was found\n" + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    if not self._beam:
      self._build_subjects([s for split in by_split.values() for s in split], settings)
    return {split: self._generate_examples(subjects, settings)
            for split, subjects in by_split.items() if subjects}

  def _build_subjects(self, subjects, settings):
    """Writes every subject's work file not written by an earlier, interrupted build."""
    todo = [s for s in subjects if not os.path.exists(self._work_file(s.sid))]
    if len(todo) < len(subjects):
      print(f"movi: {len(subjects) - len(todo)} subjects already built in "
            f"{self._work_dir()}; building {len(todo)}", file=sys.stderr)
    progress = tqdm.tqdm(total=len(todo), desc="movi subjects", unit="subject")
    if self._workers == 1 or len(todo) <= 1:
      for subject in todo:
        self._finish(write_subject(subject, settings, self._work_file(subject.sid)), progress)
      return
    context = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    with concurrent.futures.ProcessPoolExecutor(min(self._workers, len(todo)),
                                                mp_context=context) as pool:
      futures = [pool.submit(write_subject, s, settings, self._work_file(s.sid)) for s in todo]
      for future in concurrent.futures.as_completed(futures):
        self._finish(future.result(), progress)

  def _finish(self, reports, progress):
    for line in reports:
      self._report(line)
    progress.update()

  def _work_file(self, sid):
    return os.path.join(self._work_dir(), f"subject_{sid:03d}.msgpack")

  def _generate_examples(self, subjects, settings):
    if self._beam:
      import apache_beam as beam  # pylint: disable=g-import-not-at-top
      return (beam.Create(subjects)
              | beam.FlatMap(lambda s: movi_subject.subject_examples(s, settings,
                                                                     logging.warning)))
    return self._read_work_files(subjects)

  def _read_work_files(self, subjects):
    for subject in subjects:
      yield from read_subject(self._work_file(subject.sid))


def check_inputs(subject: movi_files.SubjectFiles, smplh_paths):
  """Reads a subject's v3d and AMASS files up front, so a bad one stops the build before
  hours of work (``UserError`` naming the file); returns the SMPL+H model file it needs."""
  sex, flags30 = movi_files.read_v3d(subject.v3d)
  model = movi_files.smplh_path(subject, sex, smplh_paths)
  for movement in sorted(subject.motions):
    if movement <= len(flags30):
      movi_files.read_amass(subject.motions[movement])
  return model


# A work file holds a subject's (key, example) records, each as 8 bytes of length (little
# endian) and then msgpack (flax.serialization): plain data, which reads back without
# running code, whoever wrote the file.
_LENGTH = 8


def write_subject(subject, settings, path):
  """Builds one subject's examples into the work file ``path`` (atomically); returns its
  report lines."""
  reports = []
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    for key, example in movi_subject.subject_examples(subject, settings, reports.append):
      record = serialization.msgpack_serialize({"key": key, "example": example})
      f.write(len(record).to_bytes(_LENGTH, "little") + record)
  return reports


def read_subject(path):
  """The (key, example) records of a work file; ``UserError`` if it is damaged."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    while header := f.read(_LENGTH):
      length = int.from_bytes(header, "little")
      try:
        if len(header) < _LENGTH or f.tell() + length > size:
          raise ValueError("cut short")
        restored = serialization.msgpack_restore(f.read(length))
        key, example = restored["key"], restored["example"]
      except Exception:  # pylint: disable=broad-except  # msgpack raises many kinds
        raise UserError(f"{path}: a damaged work file of an earlier build; delete it to build "
                        "the subject again") from None
      yield key, example
