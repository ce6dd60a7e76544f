"""One BML-MoVi subject -> training examples: ground truth from SMPL+H, then video crops.

The subject's SMPL+H body (AMASS betas, sex from MoVi's v3d file) gives virtual markers for
a static trial (zero pose) and for every mocap frame a video frame uses; the project's
scaling, marker placement and IK turn them into coordinates, scales and masks
(``movi_truth``). Each camera's video is then streamed once: every frame inside a movement
is cropped around the projected ground truth (perspective crop, distortion removed) and
stored with its labels in the crop camera's frame, like ``d3ke_synthetic``'s records.
"""

import dataclasses
from typing import Callable, Dict, Iterator, NamedTuple, Tuple

import numpy as np

from d3ke_jax.body import smplh
from d3ke_jax.body import virtual_markers as vm
from d3ke_jax.data import cameras as camera_lib
from d3ke_jax.data import movi_files, movi_truth
from d3ke_jax.data.d3ke_synthetic import encode_jpeg
from d3ke_jax.data.frames import MARGIN_RANGE
from d3ke_jax.errors import UserError
from d3ke_jax.io import video
from d3ke_jax.skeleton import load_osim
from d3ke_jax.skeleton.placement import model_markers


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every subject's build needs (picklable: it travels to worker processes)."""
  image_size: int
  smplh_paths: Dict[str, str]  # "female" / "male" -> model.npz
  cameras: Dict[str, camera_lib.DistortedCamera]
  seed: int = 0


def clip_id(sid, camera, movement):
  """A clip (subject, camera, movement) as one int, increasing in record order."""
  return (sid * len(movi_files.CAMERAS) + movi_files.CAMERAS.index(camera)) * 100 + movement


def example_key(clip, frame):
  """Record keys order clips, then frames (the records keep key order; integers, as TFDS's
  Beam writer needs for unshuffled datasets)."""
  return clip * 100_000 + frame


class MovementTruth(NamedTuple):
  """Per video frame of one movement, in AMASS's world frame (metres, radians)."""
  coords: np.ndarray  # (T, C)
  scales: np.ndarray  # (B, 3) relative to the model
  pelvis_rotation: np.ndarray  # (T, 3, 3) world <- pelvis
  joints: np.ndarray  # (T, J, 3) the fitted model's joint centres
  markers: np.ndarray  # (T, M, 3) labels: the virtual marker where the model marker has one,
  # else the fitted model's marker
  coordinate_valid: np.ndarray  # (T, C) the 2 cm rule
  markers_valid: np.ndarray  # (T, M) label within 2 cm of the fit (no label: True)


def subject_truth(files: movi_files.SubjectFiles, settings: Settings, report: Callable):
  """({movement: video frames (whole video, 0-based)}, {movement: MovementTruth}) of one
  subject; movements without an AMASS file are reported and left out."""
  sex, flags30 = movi_files.read_v3d(files.v3d)
  body = smplh.load_smplh(movi_files.smplh_path(files, sex, settings.smplh_paths))
  movements = []
  for m in range(1, len(flags30) + 1):
    if m in files.motions:
      movements.append(m)
    else:
      report(f"subject {files.sid}: movement {m} has no AMASS file "
             f"Subject_{files.sid}_F_{m}_poses.npz; skipped")
  extra = sorted(set(files.motions) - set(range(1, len(flags30) + 1)))
  if extra:
    report(f"subject {files.sid}: AMASS movements {extra} are not in {files.v3d}'s flags30; "
           "ignored")
  if not movements:
    return {}, {}
  motions = {m: movi_files.read_amass(files.motions[m]) for m in movements}
  betas = motions[movements[0]].betas
  static, static_names = vm.static_markers(body, betas)
  frames, labels = {}, []
  for m in movements:
    motion = motions[m]
    frames[m], mocap = movi_files.movement_frames(flags30, m, len(motion.poses))
    points = smplh.smplh_points(body, betas, motion.poses[mocap], motion.trans[mocap],
                                vm.POINT_VERTICES, vm.POINT_JOINTS)
    labels.append(np.asarray(vm.virtual_markers(points)[0]))
  model = load_osim()
  truth = movi_truth.subject_truth(model, np.asarray(static), labels, vm.MARKER_NAMES,
                                   movi_files.VIDEO_RATE, static_names=static_names)
  labelled = np.array([n in vm.MARKER_NAMES for n in model.marker_names])
  out = {}
  for m, label, motion in zip(movements, labels, truth.motions):
    label = model_markers(model, label, vm.MARKER_NAMES)
    use_label = labelled & np.all(np.isfinite(label), -1)
    out[m] = MovementTruth(
        coords=motion.coords, scales=truth.scales, pelvis_rotation=motion.pelvis_rotation,
        joints=motion.joints, markers=np.where(use_label[..., None], label, motion.markers),
        coordinate_valid=motion.coordinate_mask,
        markers_valid=np.where(labelled, motion.marker_mask, True))
  return frames, out


def subject_examples(files: movi_files.SubjectFiles, settings: Settings,
                     report: Callable[[str], None]) -> Iterator[Tuple[str, dict]]:
  """(key, example) of every video frame of the subject that has ground truth."""
  frames, truths = subject_truth(files, settings, report)
  if not truths:
    return
  for camera in movi_files.CAMERAS:
    path = files.videos.get(camera)
    if path is None:
      report(f"subject {files.sid}: no video F_{camera}_Subject_{files.sid}_L.avi; skipped")
      continue
    wanted = {int(g): (m, f) for m in truths for f, g in enumerate(frames[m])}
    yield from _camera_examples(files.sid, camera, path, wanted, truths, settings, report)


def _camera_examples(sid, camera, path, wanted, truths, settings, report):
  real = settings.cameras[camera]
  margins = {}
  found = outside = 0
  try:
    reader = video.FrameReader(path)
    size = (reader.info.width, reader.info.height)
    if size != tuple(real.size):
      raise UserError(f"{path}: {size[0]}x{size[1]} px; the {camera} calibration is for "
                      f"{real.size[0]}x{real.size[1]}")
    for images, _, first in _numbered(reader):
      for i, image in enumerate(images):
        if first + i not in wanted:
          continue
        movement, frame = wanted[first + i]
        clip = clip_id(sid, camera, movement)
        if clip not in margins:
          rng = np.random.default_rng([settings.seed, clip])
          margins[clip] = rng.uniform(*MARGIN_RANGE)
        example = _example(truths[movement], frame, image, real, settings.image_size,
                           margins[clip])
        found += 1
        if example is None:
          outside += 1
          continue
        example.update(subject=sid, clip=clip, frame=frame, movement=f"movement_{movement:02d}",
                       view=camera, movement_index=movement, video_frame=first + i)
        yield example_key(clip, frame), example
    if reader.cut is not None:
      report(f"{reader.cut}; the frames after it are skipped")
  except UserError as e:
    report(f"{e}; video skipped")
    return
  if found < len(wanted):
    report(f"{path}: {len(wanted) - found} of the {len(wanted)} frames the movements need "
           "are not in the video; skipped")
  if outside:
    report(f"{path}: {outside} frames show too little of the person (fewer than two points "
           "in the image); skipped")


def _numbered(reader):
  first = 0
  for images, times in reader:
    yield images, times, first
    first += len(images)


def _example(truth: MovementTruth, t, image, real, size, margin):
  """The record of one video frame: crop and labels in the crop camera's frame (None when
  the person is not in the image)."""
  joints, markers = truth.joints[t], truth.markers[t]
  pixels, _ = camera_lib.project(real, np.concatenate([joints, markers]))
  box = camera_lib.person_box(np.asarray(pixels), margin, real.size)
  if box is None:
    return None
  crop = camera_lib.crop_camera(real, box, size)
  rotation, translation = np.asarray(crop.rotation), np.asarray(crop.translation)
  to_camera = lambda p: (p @ rotation.T + translation).astype(np.float32)
  project = lambda p: (lambda q: q[:, :2] / q[:, 2:])(to_camera(p) @ crop.intrinsics.T)
  return {
      "image": encode_jpeg(camera_lib.crop_image(image, real, crop, size)),
      "coordinates": truth.coords[t].astype(np.float32),
      "scales": truth.scales.astype(np.float32),
      "pelvis_rotation": (rotation @ truth.pelvis_rotation[t]).astype(np.float32),
      "joints": to_camera(joints), "markers": to_camera(markers),
      "joints_2d": project(joints).astype(np.float32),
      "markers_2d": project(markers).astype(np.float32),
      "box": np.asarray(box, np.float32),
      "intrinsics": np.asarray(crop.intrinsics, np.float32),
      "camera_rotation": rotation.astype(np.float32),
      "camera_translation": translation.astype(np.float32),
      "frame_valid": True,
      "coordinate_valid": truth.coordinate_valid[t],
      "markers_valid": truth.markers_valid[t],
  }
