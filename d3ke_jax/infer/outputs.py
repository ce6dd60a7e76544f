"""Files of an inference run, written atomically into one folder per video.

Frame of the 3D outputs: the camera's, turned to OpenSim's axes (``CAMERA_TO_GROUND``):
x to the image's right, y up, z towards the viewer. The ``.mot``'s pelvis coordinates are
the predicted pelvis orientation in that frame (the pelvis translations are 0: positions
are root-relative); the ``.trc`` holds the markers of the scaled model in that frame, the
pelvis at the origin, so the ``.mot`` with the scaled ``.osim`` reproduces them. A run
with a calibrated uncertainty head adds ``_sd.mot``: each coordinate's standard deviation
(``standard_deviations``), drawn as a band in ``angles.png`` and as each bone's colour in
the overlay. A warning (a run trained on synthetic renders, ``runs.synthetic_warning``)
goes into every file's header, a column of ``frames.csv`` and the plot's title.
"""

import csv
import os
import queue
import textwrap
import threading

import jax.numpy as jnp
import numpy as np
import PIL.Image
import scipy.spatial.transform
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from d3ke_jax import boxes
from d3ke_jax.drawing import (bones, draw_skeleton, paste, uncertainty_colours,
                              uncertainty_legend)
from d3ke_jax.io.atomic import atomic_write, save_png
from d3ke_jax.io.mot import write_mot
from d3ke_jax.io.trc import MarkerTrajectories, write_trc
from d3ke_jax.io.video import FrameReader, VideoWriter, write_video
from d3ke_jax.nets.uncertainty import standard_deviation
from d3ke_jax.skeleton import forward_kinematics
from d3ke_jax.skeleton.scaling import write_scaled_osim
from d3ke_jax.skeleton.subset import expand_coordinates, expand_scales
from d3ke_jax.calibration import frame_sd_deg

CAMERA_TO_GROUND = np.diag([1.0, -1.0, -1.0])  # camera (x right, y down, z ahead) -> OpenSim
PLOTTED = ("hip_flexion", "knee_angle", "ankle_angle", "shoulder_flex", "elbow_flexion",
           "hip_adduction")  # main joint angles, right and left in one panel
FK_CHUNK = 512  # frames per forward-kinematics call for the .trc
BOX_COLOUR, SKELETON_COLOUR = (255, 255, 0), (0, 255, 0)
OVERLAY_SIDE = 960  # the overlay video's longer side at most, in pixels


def root_coordinates(model, rotation):
  """The root joint's rotational coordinates (T, 3) that turn the root body by ``rotation``
  (T, 3, 3) in ground; the joint's three rotation axes must be coordinate axes, each read
  by one coordinate (as the full-body models' pelvis)."""
  root = model.root_joint
  axes = np.asarray(model.axes)[root, :3]
  order = np.argmax(np.abs(axes), axis=1)
  if not np.allclose(np.abs(axes[np.arange(3), order]), 1.0) or len(set(order)) < 3:
    raise ValueError(f"{model.source}: the root joint's rotation axes are not x, y, z")
  local = (np.asarray(model.parent_rotation)[root].T @ np.asarray(rotation, float)
           @ np.asarray(model.child_rotation)[root])
  angles = scipy.spatial.transform.Rotation.from_matrix(local).as_euler("".join("XYZ"[k]
                                                                                for k in order))
  return angles * np.sign(axes[np.arange(3), order])


def full_coordinates(model, layout, prediction):
  """(T, C) every model coordinate: the predicted ones, the pelvis orientation in the
  ground frame (``CAMERA_TO_GROUND``), translations of the root 0, the rest defaults."""
  coords = np.array(expand_coordinates(model, layout, prediction.coords), float)
  root = [(axis, c) for j, axis, c in model.axis_inputs if j == model.root_joint]
  angles = root_coordinates(model, CAMERA_TO_GROUND @ prediction.rotation)
  for axis, c in root:
    coords[:, c] = angles[:, axis] if axis < 3 else 0.0
  return coords


def subject_scales(model, layout, prediction):
  """(B, 3) body scales relative to the model: the median over frames with a person."""
  valid = prediction.found if prediction.found.any() else np.ones_like(prediction.found)
  return np.median(np.asarray(expand_scales(model, layout, prediction.scales[valid])), axis=0)


def scaled_markers(model, coords, scales, chunk=FK_CHUNK):
  """(T, M, 3) markers of the model scaled by ``scales`` (B, 3) in the poses ``coords``
  (T, C), computed ``chunk`` frames at a time (padded, so one compilation serves all)."""
  scales = jnp.asarray(scales, jnp.float32)
  parts = []
  for first in range(0, len(coords), chunk):
    part = coords[first:first + chunk]
    padded = jnp.asarray(np.concatenate([part, np.repeat(part[-1:], chunk - len(part), 0)]),
                         jnp.float32)
    parts.append(np.asarray(forward_kinematics(model, padded, scales=scales).markers)[:len(part)])
  return np.concatenate(parts).astype(float)


def output_paths(out_dir, name):
  """{kind: path} of the files ``write_outputs`` writes for the video ``name``."""
  path = lambda suffix: os.path.join(out_dir, name + suffix)
  return {"mot": path(".mot"), "sd": path("_sd.mot"), "trc": path(".trc"),
          "osim": path("_scaled.osim"),
          "frames": os.path.join(out_dir, "frames.csv"),
          "plot": os.path.join(out_dir, "angles.png"), "overlay": path("_overlay.mp4")}


def write_outputs(model, layout, prediction, out_dir, name, overlay=None, fps=None,
                  warning=None):
  """Writes ``name``.mot, .trc, ``name``_scaled.osim, frames.csv, angles.png, (with the
  prediction's calibrated ``uncertainty``) ``name``_sd.mot and (given the video's
  ``OverlayFrames``) ``name``_overlay.mp4 into ``out_dir`` (``output_paths``), each marked
  with ``warning`` (one line) if given; returns {kind: path} of those written."""
  os.makedirs(out_dir, exist_ok=True)
  paths = output_paths(out_dir, name)
  coords = full_coordinates(model, layout, prediction)
  rotational = [t == "rotational" for t in model.coordinate_types]
  notes = [warning] if warning else []
  write_mot(paths["mot"], prediction.time, coords, model.coordinate_names, rotational,
            notes=notes)
  sd = None
  if prediction.uncertainty is None:
    del paths["sd"]
  else:
    sd = standard_deviations(model, layout, prediction)
    write_mot(paths["sd"], prediction.time, sd, model.coordinate_names, rotational,
              title="Standard deviations", notes=notes)
  scales = subject_scales(model, layout, prediction)
  write_trc(paths["trc"], MarkerTrajectories(model.marker_names, prediction.time,
                                             scaled_markers(model, coords, scales),
                                             fps or _rate(prediction.time)), units="m",
            note=warning)
  write_scaled_osim(model.source, scales, paths["osim"], body_names=list(model.body_names))
  write_frames_csv(paths["frames"], prediction, _confidence(model, layout, prediction),
                   warning)
  plot_angles(paths["plot"], model, coords, prediction.time, prediction.found, sd, warning)
  if overlay is None:
    del paths["overlay"]
  else:
    bone_sd = None if sd is None else bone_sd_deg(model, layout, sd)
    write_overlay(paths["overlay"], overlay, model, prediction, fps, bone_sd)
  return paths


def standard_deviations(model, layout, prediction):
  """(T, C) each model coordinate's calibrated standard deviation (sqrt(2) b t): the
  predicted coordinates', the pelvis rotation angle's for the root's rotational
  coordinates, 0 for those the network does not predict (the root's translations, the
  defaults)."""
  sd = np.zeros((len(prediction.time), model.num_coordinates))
  sd[:, np.array(layout.coordinates, int)] = standard_deviation(prediction.uncertainty.coords)
  for j, axis, c in model.axis_inputs:
    if j == model.root_joint and axis < 3:
      sd[:, c] = standard_deviation(prediction.uncertainty.rotation)
  return sd


def joint_sd_deg(model, layout, sd):
  """(T, J) each joint's uncertainty in degrees: the largest standard deviation ``sd``
  (T, C) (``standard_deviations``) of its rotational coordinates the network predicts (the
  root's: its rotation's); a joint without any takes its parent joint's (on ground: 0)."""
  rotational = np.array(model.coordinate_types) == "rotational"
  known = np.zeros(model.num_coordinates, bool)
  known[np.array(layout.coordinates, int)] = True
  columns = [[] for _ in range(model.num_joints)]
  for j, _, c in model.axis_inputs:
    if rotational[c] and (known[c] or j == model.root_joint):
      columns[j].append(c)
  moved_by = {body: j for j, body in enumerate(model.joint_child_body)}
  per_joint = np.zeros((len(sd), model.num_joints))
  for j in (j for level in model.levels for j in level):  # parents first
    if columns[j]:
      per_joint[:, j] = np.degrees(np.max(sd[:, columns[j]], axis=1))
    elif model.joint_parent_body[j] in moved_by:
      per_joint[:, j] = per_joint[:, moved_by[model.joint_parent_body[j]]]
  return per_joint


def bone_sd_deg(model, layout, sd):
  """(T, len(bones)) each bone's uncertainty in degrees: that of the joint moving the body
  it lies in (the thigh's: the hip's; ``joint_sd_deg``)."""
  return joint_sd_deg(model, layout, sd)[:, [a for a, _ in bones(model)]]


def _confidence(model, layout, prediction):
  """(T,) ``calibration.frame_sd_deg`` of a prediction with calibrated scales, else None."""
  if prediction.uncertainty is None:
    return None
  types = np.asarray(model.coordinate_types)[np.array(layout.coordinates, int)]
  return frame_sd_deg(prediction.uncertainty.coords, types == "rotational")


def person_corners(crops, margin=boxes.MARGIN):
  """(T, 4) x0, y0, x1, y1: the person box inside each square crop (T, 3), the one that
  ``--boxes`` (``locate.read_boxes``: a square with ``margin`` around it) turns back into
  that crop."""
  crops = np.asarray(crops, float)
  inner = crops[:, 2:] / (1 + 2 * margin)
  low = boxes.centre(crops) - inner / 2
  return np.concatenate([low, low + inner], 1)


def write_frames_csv(path, prediction, confidence=None, warning=None):
  """One row per frame: the person box of its crop as ``frame,x0,y0,x1,y1`` first (the
  columns ``--boxes`` reads, which ignores the rest: the file, edited or not, can be fed
  back; ``person_corners``), its time, whether the person was found, the box's source, the
  crop's moves, (given ``confidence`` (T,) degrees) ``confidence_sd_deg`` and (given
  ``warning``) a ``warning`` column repeating it (a plain CSV: every reader takes it)."""
  extra = (["confidence_sd_deg"] if confidence is not None else []) + (
      ["warning"] if warning else [])
  corners = person_corners(prediction.boxes)
  with atomic_write(path) as f:
    out = csv.writer(f)
    out.writerow(["frame", "x0", "y0", "x1", "y1", "time", "person_found", "box_source",
                  "steered"] + extra)
    for k, (t, box, found, source, steered) in enumerate(zip(
        prediction.time, corners, prediction.found, prediction.source, prediction.steered)):
      sd = [f"{confidence[k]:.3f}"] if confidence is not None else []
      out.writerow([k, *(f"{v:.3f}" for v in box), f"{t:.6f}", int(found), source, steered,
                    *sd, *([warning] if warning else [])])
  return path


def plot_angles(path, model, coords, time, found, sd=None, warning=None):
  """Saves ``angles_figure`` as a PNG."""
  return save_png(angles_figure(model, coords, time, found, sd, warning), path, dpi=80)


def angles_figure(model, coords, time, found, sd=None, warning=None):
  """One panel per main joint angle (right solid, left dashed) over time, in degrees: a
  +-1 standard deviation band around each curve given ``sd`` (T, C), frames without a
  person shaded grey, both named in the first panel's legend; ``warning`` as a red title."""
  names = [stem for stem in PLOTTED if f"{stem}_r" in model.coordinate_names] or [
      model.coordinate_names[int(np.argmax(np.std(coords, 0)))]]
  figure = Figure(figsize=(9, 1.8 * len(names) + (0.6 if warning else 0)),
                  layout="constrained")
  if warning:
    figure.suptitle(textwrap.fill(warning, 110), color="red", fontsize="medium",
                    fontweight="bold")
  for k, stem in enumerate(names):
    axis = figure.add_subplot(len(names), 1, k + 1)
    for suffix, style in (("_r", "-"), ("_l", "--"), ("", "-")):
      if stem + suffix in model.coordinate_names:
        c = model.coordinate_index(stem + suffix)
        _curve(axis, time, np.degrees(coords[:, c]), None if sd is None else np.degrees(sd[:, c]),
               style, stem + suffix)
    half = 0.5 / _rate(time)
    for t in time[~found]:
      axis.axvspan(t - half, t + half, color="grey", alpha=0.3, linewidth=0)
    axis.set_ylabel("deg")
    keys = _keys(sd is not None, ~found) if k == 0 else []
    axis.legend(handles=axis.get_legend_handles_labels()[0] + keys, loc="upper left",
                bbox_to_anchor=(1.0, 1.0), fontsize="small")
  figure.axes[-1].set_xlabel("time (s)")
  return figure


def _curve(axis, time, values, spread, style, label):
  """A line, with a band of +-``spread`` (None: none) in its colour."""
  (line,) = axis.plot(time, values, style, label=label)
  if spread is not None:
    axis.fill_between(time, values - spread, values + spread, color=line.get_color(),
                      alpha=0.25, linewidth=0)


def _keys(bands, missing):
  """Legend entries of the bands (if ``bands``) and of the grey frames (if any ``missing``)."""
  return ([Patch(color="tab:blue", alpha=0.25, label="\u00b11 SD")] if bands else []) + (
      [Patch(color="grey", alpha=0.3, label="no person found")] if missing.any() else [])


def skeleton_in_box(joints, box, margin=boxes.MARGIN):
  """Root-relative camera-frame joints (J, 3) drawn into a box (x0, y0, side): their
  image-plane extent scaled to the box less its margin and centred (weak perspective)."""
  planar = joints[:, :2]
  low, high = planar.min(0), planar.max(0)
  scale = box[2] / (1 + 2 * margin) / max(float(np.max(high - low)), 1e-6)
  return (planar - (low + high) / 2) * scale + boxes.centre(box)


class OverlayFrames:
  """A video's frames kept for its overlay while they are decoded once: called with each
  chunk (``pipeline.predict_video``'s ``keep``), a background thread reduces them (the
  longer side to at most ``OVERLAY_SIDE``) and encodes them into a temporary video beside
  ``path``, so that neither blocks the network; ``write_overlay`` draws on them."""

  def __init__(self, path, fps):
    directory, name = os.path.split(os.path.abspath(path))
    self.path = os.path.join(directory, f".{name}.frames.mp4")
    self.scale = None  # overlay pixels per frame pixel
    self._writer = VideoWriter(self.path, fps, preset="ultrafast")
    self._chunks, self._error = queue.Queue(maxsize=4), None
    self._thread = threading.Thread(target=self._work, daemon=True)
    self._thread.start()

  def __call__(self, frames):
    if self._error is None:
      self._chunks.put(frames)

  def _work(self):
    while (frames := self._chunks.get()) is not None:
      try:
        for frame in frames:
          self._writer.write(self._reduce(frame))
      except Exception as e:  # pylint: disable=broad-except  # raised by ``finish``
        self._error = e

  def _reduce(self, frame):
    factor = -(-max(frame.shape[:2]) // OVERLAY_SIDE)
    self.scale = 1.0 / factor
    return _even(np.asarray(PIL.Image.fromarray(frame).reduce(factor)) if factor > 1 else frame)

  def finish(self):
    """The temporary video of the frames kept (its caller removes it)."""
    self._chunks.put(None)
    self._thread.join()
    if self._error is not None:
      self._writer.abort(self._error)
      raise self._error
    return self._writer.close()

  def discard(self):
    """Stops and removes what was written."""
    self._chunks.put(None)
    self._thread.join()
    self._writer.abort()
    if os.path.exists(self.path):
      os.remove(self.path)


def write_overlay(path, overlay: OverlayFrames, model, prediction, fps=None, bone_sd=None):
  """The video (``overlay``'s reduced frames) with each frame's box and predicted skeleton
  drawn on it: given ``bone_sd`` (T, len(bones)) degrees (``bone_sd_deg``), each bone
  coloured by it (``uncertainty_colours``, with a legend), else green; grey where no
  person was found."""
  pairs = bones(model)
  frames_path = overlay.finish()
  scale = overlay.scale
  colours = None if bone_sd is None else uncertainty_colours(bone_sd)
  legend = None if colours is None else uncertainty_legend(
      int(np.clip(FrameReader(frames_path).info.width // 8, 24, 96)))

  def frames():
    index = 0
    for chunk, _ in FrameReader(frames_path):
      for frame in chunk[:len(prediction.time) - index]:
        box = prediction.boxes[index] * scale
        colour = SKELETON_COLOUR if colours is None else colours[index]
        if not prediction.found[index]:
          colour = (128, 128, 128)
        image = draw_skeleton(frame, skeleton_in_box(prediction.joints[index], box), pairs,
                              colour, width=max(1, int(box[2] // 150)))
        image = draw_skeleton(image, boxes.corners(box), [(0, 1), (1, 2), (2, 3), (3, 0)],
                              BOX_COLOUR)
        yield image if legend is None else paste(image, legend)
        index += 1

  try:
    return write_video(path, frames(), fps or _rate(prediction.time))
  finally:
    os.remove(frames_path)


def _even(image):
  """Cut to even sizes (the encoder's 4:2:0 sampling needs them)."""
  return image[:image.shape[0] // 2 * 2, :image.shape[1] // 2 * 2]


def _rate(time):
  return float(1 / np.median(np.diff(time))) if len(time) > 1 else 30.0
