"""Damaged downloads given to ``experiments.build_data movi``: each is one line on stderr that
names the file and the problem, exit status 2, no traceback, and the failed build leaves
nothing in ``--data_dir``. No file is ever unpickled: a pickle planted in a model or a work
file never runs.

The downloads are fabricated in the real formats (tests/movi_fakes.py); every case damages
one file of a copy and fails before any subject is built."""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest
import scipy.io

import movi_fakes
from d3ke_jax import cli
from d3ke_jax.data import cameras, movi_files, movi_subject
from d3ke_jax.io import video
from experiments import build_data

SIZE = "128px"
FRAMES = 24  # mocap frames of the one movement


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("movi_downloads"))
  movi_fakes.fake_movi_tree(root, subjects=(1,), movements=1, frames=FRAMES)
  return root


AMASS = "BMLmovi/Subject_1_F_MoSh/Subject_1_F_1_poses.npz"
SMPLH = "smplh/female/model.npz"
V3D = "MoVi/F_v3d_Subject_1.mat"
CAMERAS = "cameras.json"


def _arrays(path):
  with np.load(path) as npz:
    return dict(npz)


def _rewrite(path, compress=False, **change):
  """Saves the arrays of the .npz ``path`` again, with ``change`` (None: the key removed)."""
  arrays = {k: v for k, v in dict(_arrays(path), **change).items() if v is not None}
  with open(path, "wb") as f:
    (np.savez_compressed if compress else np.savez)(f, **arrays)


def _member_data(path, member):
  """Offset of the (compressed) bytes of ``member`` in the zip archive ``path``."""
  with zipfile.ZipFile(path) as archive:
    offset = archive.getinfo(member).header_offset
  with open(path, "rb") as f:
    header = f.read(offset + 30)[offset:]
  return offset + 30 + int.from_bytes(header[26:28], "little") + \
      int.from_bytes(header[28:30], "little")


def _patch(path, offset, data):
  with open(path, "r+b") as f:
    f.seek(offset)
    f.write(data)


def _truncate(path, fraction=0.5):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * fraction)])


def _bad_deflate(path, member):
  """A deflate stream whose first block has the reserved type: zlib.error."""
  _patch(path, _member_data(path, member), bytes([0b111]))


def _bad_crc(path, member):
  """One byte of a stored member changed: zipfile's CRC check fails."""
  offset = _member_data(path, member) + 200
  with open(path, "rb") as f:
    f.seek(offset)
    byte = f.read(1)[0]
  _patch(path, offset, bytes([byte ^ 0xFF]))


def _npy(path):
  """The file's first array saved alone, as a .npy."""
  array = next(iter(_arrays(path).values()))
  with open(path, "wb") as f:
    np.save(f, array)


def _payload(path, key, marker):
  payload = np.empty((), dtype=object)
  payload[()] = movi_fakes.PicklePayload(marker)
  _rewrite(path, **{key: payload})


def _mat(path, sex="female", flags30=((1, 6),), compress=False):
  movi_fakes.write_fake_v3d(path, 1, sex, flags30)
  if compress:
    scipy.io.savemat(path, {"Subject_1_F": scipy.io.loadmat(path)["Subject_1_F"]},
                     do_compression=True)


def _write(path, text):
  with open(path, "wb") as f:
    f.write(text if isinstance(text, bytes) else text.encode())


def _pg1(**change):
  fields = {key: np.asarray(getattr(cameras.MOVI_CAMERAS["PG1"], key)).tolist()
            for key in ("intrinsics", "rotation", "translation", "distortion", "size")}
  return json.dumps({"PG1": dict(fields, **change)})


NAN_POSES = np.full((FRAMES, 156), np.nan)
CASES = {
    # AMASS motions.
    "amass truncated": (AMASS, _truncate, "not a readable .npz AMASS motion file (File is not "
                        "a zip file)"),
    "amass empty": (AMASS, lambda p: _truncate(p, 0), "not a readable .npz AMASS motion file "
                    "(an empty file)"),
    "amass text": (AMASS, lambda p: _write(p, "poses,betas\n1,2\n"), "not a readable .npz "
                   "AMASS motion file (not a zip archive)"),
    "amass zlib": (AMASS, lambda p: (_rewrite(p, compress=True), _bad_deflate(p, "poses.npy")),
                   "'poses' is damaged (Error -3 while decompressing data: invalid block type)"),
    "amass crc": (AMASS, lambda p: _bad_crc(p, "poses.npy"),
                  "'poses' is damaged (Bad CRC-32 for file 'poses.npy')"),
    "amass npy": (AMASS, _npy, "a single .npy array, not an .npz archive of named arrays"),
    "amass pickle": (AMASS, lambda p: _payload(p, "poses", p + ".ran"),
                     "'poses' holds pickled Python objects, which are never loaded"),
    "rate 60": (AMASS, lambda p: _rewrite(p, mocap_framerate=np.array(60.0)),
                "'mocap_framerate' is 60 Hz"),
    "rate non-scalar": (AMASS, lambda p: _rewrite(p, mocap_framerate=np.array([120.0, 120.0])),
                        "'mocap_framerate' has shape (2,), expected one number"),
    "rate text": (AMASS, lambda p: _rewrite(p, mocap_framerate=np.array("fast")),
                  "'mocap_framerate' holds text (<U4), expected real numbers"),
    "rate text number": (AMASS, lambda p: _rewrite(p, mocap_framerate=np.array("120")),
                         "'mocap_framerate' holds text (<U3), expected real numbers"),
    "no trans": (AMASS, lambda p: _rewrite(p, trans=None), "no 'trans' array (expected poses, "
                 "betas, trans, mocap_framerate)"),
    "poses nan": (AMASS, lambda p: _rewrite(p, poses=NAN_POSES),
                  "'poses' holds NaN or infinite values"),
    "poses smpl": (AMASS, lambda p: _rewrite(p, poses=np.zeros((FRAMES, 72))),
                   "'poses' has shape (24, 72), expected (frames, 156) SMPL+H"),
    "poses empty": (AMASS, lambda p: _rewrite(p, poses=np.zeros((0, 156)),
                                              trans=np.zeros((0, 3))),
                    "'poses' has shape (0, 156), expected (frames, 156) SMPL+H"),
    "trans short": (AMASS, lambda p: _rewrite(p, trans=np.zeros((FRAMES - 1, 3))),
                    "'trans' has shape (23, 3), expected (24, 3)"),
    "betas short": (AMASS, lambda p: _rewrite(p, betas=np.zeros(10)),
                    "'betas' has shape (10,), expected at least 16 values"),
    "betas bool": (AMASS, lambda p: _rewrite(p, betas=np.ones(16, bool)),
                   "'betas' holds booleans (bool), expected real numbers"),
    # SMPL+H models.
    "smplh truncated": (SMPLH, _truncate, "not a readable .npz SMPL+H model file (File is not "
                        "a zip file)"),
    "smplh zlib": (SMPLH, lambda p: _bad_deflate(p, "v_template.npy"),
                   "'v_template' is damaged (Error -3 while decompressing data: invalid block "
                   "type)"),
    "smplh npy": (SMPLH, _npy, "a single .npy array, not an .npz archive"),
    "smplh no weights": (SMPLH, lambda p: _rewrite(p, compress=True, weights=None),
                         "no 'weights' array"),
    "smplh smpl": (SMPLH, lambda p: _rewrite(p, compress=True, kintree_table=np.zeros(
        (2, 24), np.int64)), "'kintree_table' has shape (2, 24), expected (2, 52): SMPL+H's "
                   "joints"),
    "smplh nan": (SMPLH, lambda p: _rewrite(p, compress=True, v_template=np.full(
        (6890, 3), np.nan)), "'v_template' holds NaN or infinite values"),
    "smplh text": (SMPLH, lambda p: _rewrite(p, compress=True, weights=np.array("x")),
                   "'weights' holds text (<U1), expected real numbers"),
    "smplh missing": (V3D, lambda p: shutil.rmtree(os.path.join(
        os.path.dirname(os.path.dirname(p)), "smplh", "female")),
                      "no SMPL+H model smplh/female/model.npz"),
    # MoVi v3d files.
    "mat empty": (V3D, lambda p: _truncate(p, 0), "not a readable MATLAB file (Mat file "
                  "appears to be truncated)"),
    "mat truncated": (V3D, lambda p: _truncate(p, 100 / os.path.getsize(p)),
                      "not a readable MATLAB file ("),  # scipy: IndexError
    # The zlib header of the first element (after the 128-byte header and an 8-byte tag).
    "mat zlib": (V3D, lambda p: (_mat(p, compress=True), _patch(p, 136, bytes([0b111]))),
                 "not a readable MATLAB file (Error -3 while decompressing data"),
    "flags30 missing": (V3D, lambda p: scipy.io.savemat(p, {"Subject_1_F": {
        "subject": {"sex": "female"}, "move": {}}}), "Subject_1_F.move.flags30 is missing"),
    "flags30 nan": (V3D, lambda p: _mat(p, flags30=[[1, np.nan]]),
                    "'Subject_1_F.move.flags30' holds NaN or infinite values"),
    "flags30 fraction": (V3D, lambda p: _mat(p, flags30=[[1, 6.5]]),
                         "Subject_1_F.move.flags30 holds 6.5, not a video frame number"),
    "flags30 empty": (V3D, lambda p: _mat(p, flags30=np.zeros((0, 2))),
                      "Subject_1_F.move.flags30 has shape (0, 2), expected (movements, 2)"),
    "sex": (V3D, lambda p: _mat(p, sex="x"), "Subject_1_F.subject.sex is 'x', expected "
            "'female' or 'male'"),
    # Calibrations (--cameras).
    "cameras nested": (CAMERAS, lambda p: _write(p, "[" * 100_000 + "]" * 100_000),
                       "not a camera file (nested too deeply)"),
    "cameras long integer": (CAMERAS, lambda p: _write(p, '{"PG1": ' + "1" * 5000 + "}"),
                             "not a JSON camera file (Exceeds the limit (4300 digits)"),
    "cameras not utf-8": (CAMERAS, lambda p: _write(p, b'{"PG1": "\xff"}'),
                          "not a JSON camera file ('utf-8' codec can't decode byte 0xff"),
    "cameras unknown name": (CAMERAS, lambda p: _write(p, _pg1().replace("PG1", "pg1")),
                             "unknown camera 'pg1' (choose from PG1, PG2)"),
    "cameras booleans": (CAMERAS, lambda p: _write(p, _pg1(size=[True, 600])),
                         "camera 'PG1': 'size' must be 2 numbers"),
    "cameras huge integer": (CAMERAS, lambda p: _write(p, _pg1(size=[10**400, 600])),
                             "camera 'PG1': 'size' must be 2 numbers"),
}


def _build(manual_dir, data_dir, capsys, *extra):
  """The stderr lines of a failed ``build_data movi``, which must exit with status 2 and end
  with a ``build_data: `` line."""
  argv = ["movi", "--manual_dir", manual_dir, "--data_dir", data_dir, "--config", SIZE,
          "--workers", "1", *extra]
  with pytest.raises(SystemExit) as exit_:
    cli.run(build_data.main, argv, prog="build_data")
  err = capsys.readouterr().err
  assert exit_.value.code == 2 and "Traceback" not in err, err
  lines = err.strip().splitlines()
  assert lines[-1].startswith("build_data: "), err
  return lines


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_downloads_are_one_line_naming_the_file(downloads, tmp_path, capsys, case):
  name, damage, message = CASES[case]
  copy = str(tmp_path / "downloads")
  shutil.copytree(downloads, copy)
  path = os.path.join(copy, name)
  damage(path)
  extra = ("--cameras", path) if name == CAMERAS else ()
  data_dir = str(tmp_path / "tfds")
  [line] = _build(copy, data_dir, capsys, *extra)
  assert line.startswith(f"build_data: {path}: ") and message in line, line
  assert not os.path.exists(data_dir)  # nothing half-made
  assert not os.path.exists(path + ".ran")  # no pickle ran


def test_a_pickled_regressor_never_runs(downloads, tmp_path, capsys):
  """The J_regressor fallback that unpickled a user's model file (issue 27)."""
  copy = str(tmp_path / "downloads")
  shutil.copytree(downloads, copy)
  model, marker = os.path.join(copy, SMPLH), str(tmp_path / "payload_ran")
  _payload(model, "J_regressor", marker)
  assert _build(copy, str(tmp_path / "tfds"), capsys) == [
      f"build_data: {model}: 'J_regressor' holds pickled Python objects, which are never "
      "loaded; store it as a numeric array"]
  assert not os.path.exists(marker)


def test_work_files_are_never_unpickled(downloads, tmp_path, capsys):
  """A resumed build reads the work files of an earlier one from --data_dir: a damaged one
  (here a pickle, also planted in the old .pkl name) is one line, and nothing runs."""
  data_dir, marker = tmp_path / "tfds", str(tmp_path / "payload_ran")
  work = data_dir / "movi_work" / SIZE / "1.0.0"
  work.mkdir(parents=True)
  import pickle  # pylint: disable=import-outside-toplevel
  for name in ("subject_001.pkl", "subject_001.msgpack"):
    (work / name).write_bytes(pickle.dumps((1, movi_fakes.PicklePayload(marker))))
  # Before the error: the note that the subject is taken from the work files.
  line = _build(downloads, str(data_dir), capsys)[-1]
  assert line == (f"build_data: {work / 'subject_001.msgpack'}: a damaged work file of an "
                  "earlier build; delete it to build the subject again")
  assert not os.path.exists(marker)
  assert sorted(os.listdir(data_dir)) == ["movi_work"]  # the dataset's folders are gone


def test_a_failed_build_keeps_earlier_datasets_and_the_downloads(downloads, tmp_path, capsys):
  """--data_dir holding another config's dataset, and the downloads in TFDS's manual folder:
  a failed build removes only what it made."""
  data_dir = tmp_path / "tfds"
  manual = data_dir / "downloads" / "manual"
  shutil.copytree(downloads, manual)
  built = data_dir / "movi" / "256px" / "1.0.0"
  built.mkdir(parents=True)
  (built / "dataset_info.json").write_text("{}")
  _truncate(str(manual / AMASS))
  [line] = _build(str(manual), str(data_dir), capsys)
  assert str(manual / AMASS) in line
  assert sorted(os.listdir(data_dir)) == ["downloads", "movi"]
  assert sorted(os.listdir(data_dir / "movi")) == ["256px"]
  assert os.listdir(built) == ["dataset_info.json"]
  assert sorted(os.listdir(manual)) == sorted(os.listdir(downloads))


def test_a_symlink_loop_in_the_downloads_is_walked_once(downloads, tmp_path):
  copy = tmp_path / "downloads"
  shutil.copytree(downloads, copy)
  os.symlink(copy, copy / "MoVi" / "again")
  files = movi_files.find_files(str(copy))
  assert list(files.subjects) == [1] and files.subjects[1].v3d == str(copy / V3D)


def test_a_video_of_another_size_than_its_calibration_is_reported_and_skipped(tmp_path):
  """Downscaled PG1 videos would put every label off the person: reported, not cropped."""
  path = video.write_video(str(tmp_path / "F_PG1_Subject_1_L.avi"),
                           np.zeros((2, 48, 64, 3), np.uint8), fps=30)
  settings = movi_subject.Settings(image_size=64, smplh_paths={}, cameras=cameras.MOVI_CAMERAS)
  lines = []
  examples = movi_subject._camera_examples(  # pylint: disable=protected-access
      1, "PG1", path, {0: (1, 0)}, {}, settings, lines.append)
  assert not list(examples)
  assert lines == [f"{path}: 64x48 px; the PG1 calibration is for 800x600; video skipped"]
