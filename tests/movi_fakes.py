"""Fabricated AMASS and MoVi files in the real formats, for tests (no real data here).

The SMPL+H body is the fake one of ``d3ke_jax.body.fake_smplh``; its motions are the skeletal
model's own (a walk), turned into SMPL+H joint rotations (``fake_smplh.smplh_motion``).
"""

import os

import numpy as np
import scipy.io

from d3ke_jax.body.fake_smplh import posed_skeleton, smplh_motion, write_fake_smplh
from d3ke_jax.body.smplh import NUM_BETAS

FOOT_MARKERS = ("HEE", "TOE", "MT1", "MT5")


def walk(frames, rate=120, seed=0):
  """The skeletal model walking along +x: one dict of coordinate values per frame (hips,
  knees, ankles, shoulders and elbows swinging, the pelvis turning a little), the pelvis
  lowered so that the lowest foot marker stays at its standing height."""
  rng = np.random.default_rng(seed)
  t = np.arange(frames) / rate
  c = 2 * np.pi * rng.uniform(0.8, 1.0) * t + rng.uniform(0, 2 * np.pi)  # gait phase
  swing, cos = np.sin(c), np.cos(c)
  values = {
      "pelvis_tx": 1.1 * t, "pelvis_ty": 0.01 * np.cos(2 * c), "pelvis_rotation": 0.1 * swing,
      "pelvis_list": 0.04 * cos, "pelvis_tilt": 0.03 * np.sin(2 * c),
      "hip_flexion_r": 0.15 + 0.35 * swing, "hip_flexion_l": 0.15 - 0.35 * swing,
      "knee_angle_r": -0.6 + 0.55 * cos, "knee_angle_l": -0.6 - 0.55 * cos,
      "ankle_angle_r": 0.15 * np.sin(c + 1), "ankle_angle_l": -0.15 * np.sin(c + 1),
      "shoulder_add_r": np.full(frames, -0.25), "shoulder_add_l": np.full(frames, -0.25),
      "shoulder_flex_r": -0.35 * swing, "shoulder_flex_l": 0.35 * swing,
      "elbow_flexion_r": 0.4 + 0.2 * swing, "elbow_flexion_l": 0.4 - 0.2 * swing}
  model, (_, _, markers) = posed_skeleton([{}] + _frames(values, frames))
  feet = [model.marker_index(side + name) for side in "LR" for name in FOOT_MARKERS]
  values["pelvis_ty"] -= markers[1:, feet, 1].min(1) - markers[0, feet, 1].min()
  return _frames(values, frames)


def _frames(values, frames):
  return [{name: v[i] for name, v in values.items()} for i in range(frames)]


def write_fake_amass(path, model_npz, betas, frames, rate=120, seed=0, gender="female"):
  """Writes an AMASS motion npz (poses, betas, trans, mocap_framerate, gender, dmpls) of the
  fake body of ``model_npz`` walking (``walk``); dmpls are random (the pipeline ignores them)."""
  with np.load(model_npz) as body:
    poses, trans = smplh_motion(walk(frames, rate, seed), body["v_template"], body["shapedirs"],
                                body["J_regressor"], np.asarray(betas, np.float64))
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    np.savez(f, poses=poses, betas=np.asarray(betas, np.float64), trans=trans,
             mocap_framerate=np.array(float(rate)), gender=np.array(gender),
             dmpls=rng.normal(0, 0.5, (frames, 8)))
  return path


def write_fake_shape(path, betas, gender):
  """Writes an AMASS per-subject ``shape.npz`` (betas, gender)."""
  with open(path, "wb") as f:
    np.savez(f, betas=np.asarray(betas, np.float64), gender=np.array(gender))
  return path


def write_fake_v3d(path, sid, sex, flags30):
  """Writes a MoVi ``F_v3d_Subject_<sid>.mat`` with the nesting the original reads:
  ``mat["Subject_<sid>_F"]["subject"][0, 0]["sex"][0, 0][0]`` and
  ``mat["Subject_<sid>_F"]["move"][0, 0][0, 0]["flags30"][0][0]`` ((movements, 2) 1-based
  first and last video frames); ``flags120`` likewise, at the mocap rate."""
  flags30 = np.asarray(flags30, np.float64)
  flags120 = np.stack([4 * flags30[:, 0] - 3, 4 * flags30[:, 1]], -1)
  move = {"flags30": _cell(flags30), "flags120": _cell(flags120)}
  scipy.io.savemat(path, {f"Subject_{sid}_F": {"subject": {"sex": sex, "id": float(sid)},
                                               "move": move}})
  return path


def _cell(array):
  """A 1x1 MATLAB cell holding ``array``."""
  cell = np.empty((1, 1), dtype=object)
  cell[0, 0] = array
  return cell


def fake_movi_tree(root, subjects=(1, 2), movements=2, frames=48, seed=0):
  """Lays out SMPL+H models, AMASS BMLmovi motions, shape.npz and MoVi v3d .mat files under
  ``root`` with their real names (no videos). Odd subjects are female, even ones male; movement
  k of a subject is a walk of ``frames`` mocap frames at 120 Hz, video frames (30 fps) listed
  in flags30 one after another with 10 frames between movements.

  Returns {"smplh": {gender: path}, "subjects": {sid: {"gender", "betas", "amass": [paths],
  "shape", "v3d", "flags30"}}}.
  """
  rng = np.random.default_rng(seed)
  tree = {"smplh": {}, "subjects": {}}
  video_frames = (frames - 1) // 4 + 1  # video frame f shows mocap frame 4 f
  for sid in subjects:
    gender = "female" if sid % 2 else "male"
    if gender not in tree["smplh"]:
      tree["smplh"][gender] = write_fake_smplh(
          os.path.join(root, "smplh", gender, "model.npz"), gender, seed)
    betas = np.concatenate([rng.normal(0, 1, 2), rng.normal(0, 0.3, NUM_BETAS - 2)])
    folder = os.path.join(root, "BMLmovi", f"Subject_{sid}_F_MoSh")
    amass = [write_fake_amass(os.path.join(folder, f"Subject_{sid}_F_{k}_poses.npz"),
                              tree["smplh"][gender], betas, frames, seed=seed + 100 * sid + k,
                              gender=gender)
             for k in range(1, movements + 1)]
    starts = 1 + np.arange(movements) * (video_frames + 10)
    flags30 = np.stack([starts, starts + video_frames - 1], -1)
    v3d = os.path.join(root, "MoVi", f"F_v3d_Subject_{sid}.mat")
    os.makedirs(os.path.dirname(v3d), exist_ok=True)
    tree["subjects"][sid] = {
        "gender": gender, "betas": betas, "amass": amass, "flags30": flags30,
        "shape": write_fake_shape(os.path.join(folder, "shape.npz"), betas, gender),
        "v3d": write_fake_v3d(v3d, sid, gender, flags30)}
  return tree


class PicklePayload:
  """Pickles as a call that creates the file ``marker``: what a hostile data file would run
  when unpickled (tests check that the marker never appears)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))
