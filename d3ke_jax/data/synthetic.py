"""Synthetic subjects and movements of the default model, with exact kinematics.

A subject is a set of body scale factors (one stature factor times correlated per-segment
factors, left and right equal). A movement is a named template of coordinate trajectories
modelled on BML-MoVi's repertoire; each subject performs it with its own style (amplitude,
tempo, phase) plus small smooth motion of every other coordinate, at 30 fps, inside the
coordinate ranges.
"""

import dataclasses
from typing import Dict

import numpy as np

from d3ke_jax.skeleton.model import SkeletalModel
from d3ke_jax.skeleton.subset import mirror_of

RATE = 30.0  # frames per second, as MoVi's videos
STANDING_HEIGHT = 1.0  # pelvis origin above the floor for the default model, metres


def _both(name, value_r, value_l):
  return {f"{name}_r": value_r, f"{name}_l": value_l}


def _walk(p, amplitude):
  a = amplitude
  out = {"pelvis_ty": 0.02 * a * np.cos(2 * p), "pelvis_rotation": 0.08 * a * np.sin(p)}
  out.update(_both("hip_flexion", 0.1 + 0.35 * a * np.sin(p), 0.1 - 0.35 * a * np.sin(p)))
  out.update(_both("knee_angle", -0.1 - 0.55 * a * (0.5 + 0.5 * np.sin(p + 2.0)),
                   -0.1 - 0.55 * a * (0.5 - 0.5 * np.sin(p + 2.0))))
  out.update(_both("ankle_angle", 0.15 * a * np.sin(p - 0.5), -0.15 * a * np.sin(p - 0.5)))
  out.update(_both("shoulder_flex", -0.3 * a * np.sin(p), 0.3 * a * np.sin(p)))
  out.update(_both("elbow_flexion", 0.3 + 0.15 * a * np.sin(p), 0.3 - 0.15 * a * np.sin(p)))
  return out


def _jog(p, amplitude):
  out = _walk(p, 1.6 * amplitude)
  out["pelvis_ty"] = 0.05 * amplitude * np.abs(np.sin(p))
  out.update(_both("elbow_flexion", 1.3 + 0.2 * np.sin(p), 1.3 - 0.2 * np.sin(p)))
  return out


def _squat(p, amplitude):
  depth = amplitude * 0.5 * (1 - np.cos(p))
  out = {"pelvis_ty": -0.4 * depth, "pelvis_tilt": -0.3 * depth, "pelvis_tx": -0.1 * depth}
  out.update(_both("hip_flexion", 1.4 * depth, 1.4 * depth))
  out.update(_both("knee_angle", -1.8 * depth, -1.8 * depth))
  out.update(_both("ankle_angle", 0.4 * depth, 0.4 * depth))
  out.update(_both("shoulder_flex", 1.3 * depth, 1.3 * depth))
  return out


def _jumping_jacks(p, amplitude):
  open_ = amplitude * 0.5 * (1 - np.cos(p))
  out = {"pelvis_ty": 0.08 * np.abs(np.sin(p))}
  out.update(_both("hip_adduction", -0.35 * open_, -0.35 * open_))
  out.update(_both("shoulder_add", -2.6 * open_, -2.6 * open_))
  out.update(_both("elbow_flexion", 0.2 * open_, 0.2 * open_))
  return out


def _arm_raises(p, amplitude):
  up = amplitude * 0.5 * (1 - np.cos(p))
  return {**_both("shoulder_flex", 2.6 * up, 2.6 * up), **_both("elbow_flexion", 0.1, 0.1)}


def _throw(p, amplitude):
  s = np.sin(p)
  out = {"L5_S1_AR": 0.15 * amplitude * s, "T12_L1_AR": 0.15 * amplitude * s,
         "T8_T9_AR": 0.1 * amplitude * s}
  out.update({"shoulder_flex_r": 1.2 + 0.9 * amplitude * s, "shoulder_add_r": -0.9,
              "shoulder_rot_r": -0.6 * amplitude * s, "elbow_flexion_r": 1.2 - 0.8 * s * amplitude,
              "shoulder_flex_l": 0.5 - 0.4 * s, "hip_flexion_l": 0.3 + 0.2 * s,
              "knee_angle_l": -0.3 - 0.2 * s})
  return out


def _kick(p, amplitude):
  swing = amplitude * 0.5 * (1 - np.cos(p))
  return {"hip_flexion_r": -0.3 + 1.5 * swing, "knee_angle_r": -1.2 + 1.1 * swing ** 2,
          "ankle_angle_r": -0.3 * swing, "knee_angle_l": -0.15, "shoulder_flex_l": 0.6 * swing,
          "shoulder_flex_r": -0.4 * swing}


def _cross_arms(p, amplitude):
  hold = 0.85 + 0.15 * np.sin(p) * amplitude
  return {**_both("shoulder_flex", 0.7 * hold, 0.7 * hold),
          **_both("shoulder_add", 0.4 * hold, 0.4 * hold),
          **_both("shoulder_rot", 0.9 * hold, 0.9 * hold),
          **_both("elbow_flexion", 1.9 * hold, 1.9 * hold)}


def _stretch(p, amplitude):
  side = amplitude * np.sin(p)
  out = {f"{joint}_LB": 0.08 * side for joint in ("L5_S1", "L4_L5", "T12_L1", "T11_T12",
                                                  "T10_T11", "T9_T10", "T8_T9")}
  out.update(_both("shoulder_add", -2.8 * np.maximum(side, 0), -2.8 * np.maximum(-side, 0)))
  return out


def _sit_down(p, amplitude):
  down = amplitude * 0.5 * (1 - np.cos(p))
  out = {"pelvis_ty": -0.45 * down, "pelvis_tx": -0.25 * down, "L5_S1_FE": -0.2 * down}
  out.update(_both("hip_flexion", 1.5 * down, 1.5 * down))
  out.update(_both("knee_angle", -1.5 * down, -1.5 * down))
  out.update(_both("elbow_flexion", 0.5 * down, 0.5 * down))
  return out


# name -> (template of phase p (radians) and amplitude, cycles per second)
MOVEMENTS: Dict[str, tuple] = {
    "walking": (_walk, 0.9), "jogging": (_jog, 1.4), "squatting": (_squat, 0.35),
    "jumping_jacks": (_jumping_jacks, 0.9), "arm_raises": (_arm_raises, 0.4),
    "throwing": (_throw, 0.6), "kicking": (_kick, 0.5), "crossing_arms": (_cross_arms, 0.3),
    "stretching": (_stretch, 0.25), "sitting_down": (_sit_down, 0.25),
}


@dataclasses.dataclass(frozen=True)
class Subject:
  index: int
  stature: float  # overall size factor
  scales: np.ndarray  # (B, 3) relative to the model
  style: int  # seed of the subject's movement style


def make_subject(model: SkeletalModel, index, seed=0):
  """Body proportions: stature factor N(1, 0.06) times per-segment N(1, 0.05) factors
  (axis-correlated, equal on left and right), within +-15 % of the model's."""
  rng = np.random.default_rng([seed, index])
  stature = np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)
  own = np.clip(rng.normal(1.0, 0.05, model.num_bodies)[:, None]
                * rng.normal(1.0, 0.02, (model.num_bodies, 3)), 0.85, 1.15)
  for b, name in enumerate(model.body_names):
    twin = mirror_of(name, model.body_names)
    if twin is not None:
      own[model.body_index(twin)] = own[b]
  return Subject(index=index, stature=float(stature), scales=np.clip(stature * own, 0.8, 1.2),
                 style=int(rng.integers(2**31)))


def movement(model: SkeletalModel, name, subject: Subject, frames, rate=RATE):
  """(frames, C) coordinates of ``subject`` performing movement ``name``."""
  if name not in MOVEMENTS:
    raise KeyError(f"unknown movement {name!r}; choose from {sorted(MOVEMENTS)}")
  template, frequency = MOVEMENTS[name]
  rng = np.random.default_rng([subject.style, sorted(MOVEMENTS).index(name)])
  time = np.arange(frames) / rate
  phase = 2 * np.pi * frequency * rng.uniform(0.85, 1.15) * time + rng.uniform(0, 2 * np.pi)
  coords = np.tile(np.asarray(model.coordinate_defaults, float), (frames, 1))
  # Small smooth motion everywhere (style), then the movement itself.
  amplitude = rng.uniform(0.0, 0.06, model.num_coordinates)
  frequency_noise = rng.uniform(0.1, 0.6, model.num_coordinates)
  offset = rng.uniform(0, 2 * np.pi, model.num_coordinates)
  coords += amplitude * np.sin(2 * np.pi * frequency_noise * time[:, None] + offset)
  for coordinate, values in template(phase, rng.uniform(0.8, 1.2)).items():
    if coordinate in model.coordinate_names:
      coords[:, model.coordinate_index(coordinate)] += values
  root = {c for j, _, c in model.axis_inputs if j == model.root_joint}
  for c in root:
    if model.coordinate_names[c] == "pelvis_ty":
      coords[:, c] += STANDING_HEIGHT * subject.stature
  low, high = np.asarray(model.coordinate_ranges).T
  return np.clip(coords, low, high)
