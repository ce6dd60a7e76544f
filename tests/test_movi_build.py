"""The MoVi builder on files fabricated in the real formats (tests/movi_fakes.py): fake SMPL+H
bodies, AMASS motions, v3d .mat files, and .avi videos of the posed bodies seen through the
PG1/PG2 cameras (radial distortion included)."""

import csv
import fractions
import json
import os

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds

import movi_fakes
from d3ke_jax import cli
from d3ke_jax.body import smplh
from d3ke_jax.data import cameras, movi, movi_files, movi_subject, records
from d3ke_jax.train import evaluation

SUBJECTS = {1: "train", 14: "validation", 2: "test", 12: None}
MOCAP_FRAMES = 24  # 6 video frames per movement
SIZE = "128px"


def write_fake_video(path, tree, sid, camera, lead_out=3):
  """An .avi (MPEG-4) of the subject's fake body drawn as bright dots on a dark floor, frame
  by frame as the movements' flags30 place them, ``lead_out`` empty frames after the last."""
  subject = tree["subjects"][sid]
  body = smplh.load_smplh(tree["smplh"][subject["gender"]])
  flags30 = subject["flags30"]
  real = cameras.MOVI_CAMERAS[camera]
  width, height = real.size
  frames = np.full((int(flags30[-1, 1]) + lead_out, height, width, 3), 40, np.uint8)
  for (first, last), amass in zip(flags30, subject["amass"]):
    with np.load(amass) as motion:
      mocap = 4 * np.arange(last - first + 1)
      vertices, _ = smplh.smplh_forward(body, motion["betas"][:16], motion["poses"][mocap],
                                        motion["trans"][mocap])
    pixels = np.asarray(cameras.project(real, vertices)[0]).round().astype(int)
    for k, image in enumerate(frames[first - 1:last]):
      for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
          u, v = pixels[k, :, 0] + du, pixels[k, :, 1] + dv
          keep = (u >= 0) & (u < width) & (v >= 0) & (v < height)
          image[v[keep], u[keep]] = (220, 200, 180)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(path, "w", format="avi") as container:
    stream = container.add_stream("mpeg4", rate=fractions.Fraction(30))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for image in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
    container.mux(stream.encode())
  return path


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("movi_downloads"))
  tree = movi_fakes.fake_movi_tree(root, subjects=tuple(SUBJECTS), movements=2,
                                   frames=MOCAP_FRAMES)
  for sid in (s for s, split in SUBJECTS.items() if split):
    for camera in movi_files.CAMERAS:
      if (sid, camera) != (2, "PG2"):  # a video missing from the download
        write_fake_video(os.path.join(root, "videos", f"F_{camera}_Subject_{sid}_L.avi"),
                         tree, sid, camera)
  # A video cut short in the middle of its second movement.
  cut = os.path.join(root, "videos", "F_PG2_Subject_14_L.avi")
  with open(cut, "rb") as f:
    data = f.read()
  with open(cut, "wb") as f:
    f.write(data[:int(len(data) * 0.8)])
  return root, tree


@pytest.fixture(scope="module")
def built(manual_dir, tmp_path_factory):
  root, _ = manual_dir
  data_dir = str(tmp_path_factory.mktemp("movi_tfds"))
  lines = []
  builder = movi.Movi(config=SIZE, data_dir=data_dir, file_format="array_record", workers=1,
                      report=lines.append)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  return builder, lines, data_dir


def _records(builder, split):
  source = builder.as_data_source()[split]
  return [records.decode(source[i]) for i in range(len(source))]


def test_splits_follow_the_subject_lists_and_skipped_inputs_are_reported(built):
  builder, lines, _ = built
  for split in ("train", "validation", "test"):
    subjects = {r["subject"] for r in _records(builder, split)}
    assert subjects == {s for s, name in SUBJECTS.items() if name == split}
  report = "\n".join(lines)
  assert "subject 12 is in none of the paper's splits" in report
  assert "F_PG2_Subject_2_L.avi" in report  # missing
  assert "F_PG2_Subject_14_L.avi" in report  # cut short
  assert len(_records(builder, "test")) == 12  # 2 movements x 6 frames, PG1 only
  frames = {(r["view"], r["movement_index"], r["frame"]) for r in _records(builder, "train")}
  assert len(frames) == 24  # both cameras, both movements, every frame


def test_records_are_consistent(built):
  builder, _, _ = built
  records = _records(builder, "train")
  for record in records:
    size = record["image"].shape[0]
    assert size == 128
    for points, pixels in ((record["joints"], record["joints_2d"]),
                           (record["markers"], record["markers_2d"])):
      projected = points @ record["intrinsics"].T
      np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], pixels, atol=1e-3)
    # The crop holds the person: every valid marker inside, the dots drawn where they are.
    inside = record["markers_2d"][record["markers_valid"]]
    assert np.all((inside > 0) & (inside < size))
    u, v = record["markers_2d"][record["markers_valid"]].round().astype(int).T
    assert np.mean(record["image"][v, u].mean(-1) > 100) > 0.6
    assert record["image"][:4, :4].mean() < 60  # the floor around the person
    # Stored 3D = the crop camera applied to the world labels.
    np.testing.assert_allclose(np.linalg.det(record["pelvis_rotation"]), 1.0, atol=1e-4)
  clips = np.array([r["clip"] for r in records])
  assert np.all(np.diff(clips) >= 0)  # records in clip order, then frame order


def test_ground_truth_fits_the_virtual_markers(manual_dir):
  root, _ = manual_dir
  files = movi_files.find_files(root)
  settings = movi_subject.Settings(image_size=128, smplh_paths=files.smplh,
                                   cameras=cameras.MOVI_CAMERAS)
  _, truths = movi_subject.subject_truth(files.subjects[1], settings, print)
  for truth in truths.values():
    # Labelled markers within 2 cm of the fitted model on unmasked frames; the fake body's
    # skinning is close enough to the model's kinematics that most of them are.
    assert truth.markers_valid.mean() > 0.8
    assert truth.coordinate_valid.mean() > 0.8


def test_an_interrupted_build_resumes_without_redoing_finished_subjects(manual_dir, tmp_path,
                                                                        monkeypatch):
  root, _ = manual_dir
  done = []
  original = movi_subject.subject_examples

  def crash_on_14(subject, settings, report):
    if subject.sid == 14:
      raise KeyboardInterrupt
    done.append(subject.sid)
    yield from original(subject, settings, report)

  monkeypatch.setattr(movi_subject, "subject_examples", crash_on_14)
  make = lambda: movi.Movi(config=SIZE, data_dir=str(tmp_path), file_format="array_record",
                           workers=1, report=lambda line: None)
  with pytest.raises(KeyboardInterrupt):
    make().download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  assert done == [1, 2] or done == [1]
  assert os.listdir(tmp_path) == ["movi_work"]  # no half-made dataset folders
  finished = set(done)
  monkeypatch.setattr(movi_subject, "subject_examples", lambda s, st, r: (
      done.append(s.sid), (yield from original(s, st, r)))[1])
  done.clear()
  builder = make()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  assert not finished & set(done)
  assert len(builder.as_data_source()["validation"]) > 0
  assert not os.path.exists(builder._work_dir())  # pylint: disable=protected-access


@pytest.mark.slow  # about 25 s on 2 cores: a second whole build, through Apache Beam
def test_beam_builds_the_same_records(built, manual_dir, tmp_path):
  from apache_beam.options.pipeline_options import PipelineOptions
  builder, _, _ = built
  root, _ = manual_dir
  beam = movi.Movi(config=SIZE, data_dir=str(tmp_path), file_format="array_record")
  beam.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=root, beam_options=PipelineOptions(["--runner=DirectRunner"])))
  ours, theirs = _records(builder, "test"), _records(beam, "test")
  assert len(ours) == len(theirs)
  for a, b in zip(ours, theirs):
    for key in ("coordinates", "markers", "box", "clip", "frame"):
      np.testing.assert_allclose(a[key], b[key], atol=1e-5)


def test_training_runs_on_the_built_records(built, manual_dir, tmp_path, capsys):
  """``experiments.train --config movi_d3ke.py``: without the downloads an unbuilt dataset
  is one line naming ``dataset.manual_dir``; with them, 2 steps train on the records, and
  the evaluation report has MoVi's subjects, movements and cameras."""
  from experiments import train  # pylint: disable=g-import-not-at-top
  from experiments.configs import movi_d3ke  # pylint: disable=g-import-not-at-top
  _, _, data_dir = built
  root, _ = manual_dir
  tiny = ["--config.dataset.config=" + SIZE, "--config.model.stage_sizes=(1,1,1,1)",
          "--config.model.groups=4", "--config.model.head_hidden=16",
          "--config.batch_size=4", "--config.max_steps=2", "--config.log_every_steps=1"]
  argv = ["--config", movi_d3ke.__file__, "--workdir", str(tmp_path / "run")] + tiny
  with pytest.raises(SystemExit) as exit_:
    cli.run(train.main, argv + [f"--config.dataset.data_dir={tmp_path / 'empty'}"], prog="t")
  assert exit_.value.code == 2
  assert "dataset.manual_dir: required to build movi" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_:
    cli.run(train.main, argv + [f"--config.dataset.data_dir={data_dir}",
                                f"--config.dataset.manual_dir={root}"], prog="t")
  assert exit_.value.code == 0
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert {r["step"] for r in rows if r["split"] == "train"} == {1, 2}
  # The report breaks the validation subject down by movement and camera.
  evaluation.evaluate_run(str(tmp_path / "run"), split="validation", checkpoint="latest")
  out = tmp_path / "run" / "eval" / "validation"
  groups = {key: {row[key] for row in csv.DictReader(open(out / f"per_{key}.csv"))}
            for key in ("subject", "movement", "view")}
  assert groups == {"subject": {"14"}, "movement": {"movement_01", "movement_02"},
                    "view": {"PG1", "PG2"}}, groups
