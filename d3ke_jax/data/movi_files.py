"""BML-MoVi, AMASS and SMPL+H downloads: finding them by name, reading them, the splits.

A user who registered for the three datasets unpacks them anywhere under one directory; the
files are found by their published names (see ``MANUAL_DOWNLOAD_INSTRUCTIONS``):

- MoVi ``F_v3d_Subject_<sid>.mat`` (sex, ``flags30``: each movement's video frames) and the
  videos ``F_PG1_Subject_<sid>_L.avi``, ``F_PG2_Subject_<sid>_L.avi`` (800x600, 30 fps);
- AMASS BMLmovi ``Subject_<sid>_F_<movement>_poses.npz`` (SMPL+H poses at 120 Hz);
- SMPL+H ``smplh/{female,male}/model.npz`` (AMASS's extended SMPL+H).

Video frame f of movement m is mocap frame 4 f of that movement's AMASS file; movement m's
first video frame is ``flags30[m, 0]`` (1-based), as in the paper's code.
"""

import dataclasses
import os
import re
from typing import Dict, Optional, Tuple

import numpy as np

from d3ke_jax.body.smplh import NUM_BETAS, NUM_POSES
from d3ke_jax.errors import UserError
from d3ke_jax.io.npz import numbers, read_npz

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Register for and download (none of these may be redistributed):
  BML-MoVi (https://www.biomotionlab.ca/movi/): round F's v3d files F_Subjects_1_45.tar and
    F_Subjects_46_90.tar (F_v3d_Subject_<sid>.mat) and the PG1/PG2 videos of round F
    (F_PG1_Subject_<sid>_L.avi, F_PG2_Subject_<sid>_L.avi);
  AMASS (https://amass.is.tue.mpg.de/): BMLmovi, SMPL+H G
    (BMLmovi/Subject_<sid>_F_MoSh/Subject_<sid>_F_<movement>_poses.npz);
  SMPL+H (https://mano.is.tue.mpg.de/): the extended SMPL+H model used by AMASS
    (smplh/female/model.npz, smplh/male/model.npz).
Unpack them anywhere under one directory and pass it as --manual_dir; files are found by
these names in any subfolder.
"""

CAMERAS = ("PG1", "PG2")
MOCAP_RATE = 120  # Hz, AMASS BMLmovi
VIDEO_RATE = 30  # Hz, MoVi's PG cameras
MOCAP_PER_VIDEO_FRAME = MOCAP_RATE // VIDEO_RATE
AMASS_KEYS = ("poses", "betas", "trans", "mocap_framerate")  # those read; also gender, dmpls

# The paper's subject lists (subject 12 is in none).
SPLITS = {
    "train": (1, 3, 4, 5, 8, 9, 11, 16, 18, 20, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36,
              37, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 52, 53, 54, 55, 56, 57, 58,
              59, 60, 61, 62, 63, 64, 66, 67, 68, 69, 70, 71, 74, 75, 78, 79, 81, 82, 83, 84,
              85, 87, 88, 89, 90),
    "validation": (14, 15, 30, 86),
    "test": (2, 6, 7, 10, 13, 17, 19, 21, 26, 29, 38, 51, 65, 72, 73, 76, 77, 80),
}

_V3D = re.compile(r"^F_v3d_Subject_(\d+)\.mat$")
_VIDEO = re.compile(r"^F_(PG1|PG2)_Subject_(\d+)_L\.avi$")
_AMASS = re.compile(r"^Subject_(\d+)_F_(\d+)_poses\.npz$")


def split_of(sid):
  """The split subject ``sid`` belongs to, or None (subject 12, or not a MoVi subject)."""
  return next((name for name, subjects in SPLITS.items() if sid in subjects), None)


@dataclasses.dataclass
class SubjectFiles:
  """One subject's files; ``motions`` maps the 1-based movement index to its AMASS file."""
  sid: int
  v3d: Optional[str] = None
  videos: Dict[str, str] = dataclasses.field(default_factory=dict)
  motions: Dict[int, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ManualFiles:
  subjects: Dict[int, SubjectFiles]
  smplh: Dict[str, str]  # gender ("female", "male", "neutral") -> model.npz


def check_manual_dir(manual_dir):
  """``UserError`` unless ``manual_dir`` is a directory with something in it."""
  if not os.path.isdir(manual_dir):
    raise UserError(f"{manual_dir}: no such directory (the MoVi, AMASS and SMPL+H downloads)")
  if not os.listdir(manual_dir):
    raise UserError(f"{manual_dir}: empty; unpack the MoVi, AMASS and SMPL+H downloads there")


def find_files(manual_dir) -> ManualFiles:
  """Every MoVi/AMASS/SMPL+H file under ``manual_dir``, by name.

  Raises:
    UserError: ``manual_dir`` is missing, or a name occurs twice for the same subject.
  """
  check_manual_dir(manual_dir)
  subjects, smplh = {}, {}

  def subject(sid):
    return subjects.setdefault(sid, SubjectFiles(sid))

  def put(table, key, path):
    if key in table and table[key] != path:
      raise UserError(f"{path}: the same file as {table[key]}; keep one of them")
    table[key] = path

  visited = set()  # folders by their real path: each is read once, symlink loops end
  for root, folders, names in os.walk(manual_dir, followlinks=True):
    if os.path.realpath(root) in visited:
      folders.clear()
      continue
    visited.add(os.path.realpath(root))
    for name in sorted(names):
      path = os.path.join(root, name)
      if m := _V3D.match(name):
        files = subject(int(m[1]))
        if files.v3d not in (None, path):
          raise UserError(f"{path}: the same file as {files.v3d}; keep one of them")
        files.v3d = path
      elif m := _VIDEO.match(name):
        put(subject(int(m[2])).videos, m[1], path)
      elif m := _AMASS.match(name):
        put(subject(int(m[1])).motions, int(m[2]), path)
      elif name == "model.npz" and os.path.basename(os.path.dirname(root)) == "smplh":
        put(smplh, os.path.basename(root), path)
  return ManualFiles(subjects, smplh)


def read_v3d(path) -> Tuple[str, np.ndarray]:
  """(sex "female" | "male", flags30 (movements, 2) int) of a MoVi v3d ``.mat``.

  ``flags30[m]`` = 1-based first and last (inclusive) video frame of movement m + 1, read
  along the paper's code's path (``Subject_<sid>_F.subject.sex``, ``.move.flags30``).
  """
  import scipy.io  # pylint: disable=g-import-not-at-top
  m = _V3D.match(os.path.basename(path))
  key = f"Subject_{int(m[1])}_F" if m else None
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # pylint: disable=broad-except  # damage raises many kinds
    reason = str(e).strip().splitlines()
    raise UserError(f"{path}: not a readable MATLAB file "
                    f"({reason[0] if reason else type(e).__name__})") from None
  if key not in mat:
    raise UserError(f"{path}: no struct {key!r} (has {sorted(k for k in mat if k[0] != '_')})")
  data = mat[key]
  try:
    sex = str(data["subject"][0, 0]["sex"][0, 0][0]).lower()
  except (ValueError, IndexError, KeyError, TypeError):
    raise UserError(f"{path}: {key}.subject.sex is missing") from None
  if sex not in ("female", "male"):
    raise UserError(f"{path}: {key}.subject.sex is {sex!r}, expected 'female' or 'male'")
  try:
    flags30 = np.asarray(data["move"][0, 0][0, 0]["flags30"][0][0])
  except (ValueError, IndexError, KeyError, TypeError):
    raise UserError(f"{path}: {key}.move.flags30 is missing") from None
  if flags30.ndim != 2 or flags30.shape[1] != 2 or not len(flags30):
    raise UserError(f"{path}: {key}.move.flags30 has shape {flags30.shape}, expected "
                    "(movements, 2) first and last video frames")
  numbers(path, f"{key}.move.flags30", flags30)
  odd = (flags30 != np.round(flags30)) | (np.abs(flags30) >= 2**31)
  if np.any(odd):
    raise UserError(f"{path}: {key}.move.flags30 holds {flags30[odd][0]:g}, not a video frame "
                    "number")
  flags30 = flags30.astype(int)
  if np.any(flags30[:, 0] < 1) or np.any(flags30[:, 1] < flags30[:, 0]):
    raise UserError(f"{path}: {key}.move.flags30 has a movement whose frames are not "
                    "1-based first <= last")
  return sex, flags30


def smplh_path(subject: SubjectFiles, sex, smplh_paths):
  """The SMPL+H model file of ``subject`` (of ``sex``); ``UserError`` if none was found."""
  if sex not in smplh_paths:
    raise UserError(f"{subject.v3d}: subject {subject.sid} is {sex}; no SMPL+H model "
                    f"smplh/{sex}/model.npz was found under the manual directory")
  return smplh_paths[sex]


@dataclasses.dataclass
class Motion:
  """One AMASS motion: SMPL+H poses (N, 156), betas (16,), trans (N, 3), in AMASS's world
  frame (z up, metres)."""
  poses: np.ndarray
  betas: np.ndarray
  trans: np.ndarray


def read_amass(path) -> Motion:
  """An AMASS BMLmovi ``*_poses.npz`` at 120 Hz.

  Raises:
    UserError: a missing or damaged file, a missing key, wrong shapes, values that are not
      finite numbers, no frames, or another frame rate.
  """
  arrays = read_npz(path, "AMASS motion file", AMASS_KEYS)
  poses, betas, trans, rate = (numbers(path, key, arrays[key]) for key in AMASS_KEYS)
  if poses.ndim != 2 or poses.shape[1] != NUM_POSES or not len(poses):
    raise UserError(f"{path}: 'poses' has shape {poses.shape}, expected (frames, {NUM_POSES}) "
                    "SMPL+H")
  if trans.shape != (len(poses), 3):
    raise UserError(f"{path}: 'trans' has shape {trans.shape}, expected ({len(poses)}, 3)")
  if betas.ndim != 1 or betas.shape[0] < NUM_BETAS:
    raise UserError(f"{path}: 'betas' has shape {betas.shape}, expected at least {NUM_BETAS} "
                    "values")
  if rate.size != 1:
    raise UserError(f"{path}: 'mocap_framerate' has shape {rate.shape}, expected one number")
  if rate.item() != MOCAP_RATE:
    raise UserError(f"{path}: 'mocap_framerate' is {rate.item():g} Hz; MoVi's video frames are "
                    f"aligned with AMASS BMLmovi at {MOCAP_RATE} Hz")
  return Motion(poses.astype(np.float32), betas[:NUM_BETAS].astype(np.float32),
                trans.astype(np.float32))


def movement_frames(flags30, movement, mocap_frames):
  """Video frames (0-based, whole video) and mocap frames of 1-based ``movement``.

  Video frame f of the movement (f = 0, 1, ...) is the whole video's frame
  ``flags30[movement - 1, 0] - 1 + f`` and mocap frame ``4 f``; frames past the end of the
  motion capture are dropped.
  """
  first, last = flags30[movement - 1]
  count = min(last - first + 1, -(-mocap_frames // MOCAP_PER_VIDEO_FRAME))
  local = np.arange(count)
  return first - 1 + local, local * MOCAP_PER_VIDEO_FRAME
