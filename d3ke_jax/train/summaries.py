"""Training summaries: a JSON-lines metrics file and TensorBoard events in the workdir,
and frames with the projected skeleton drawn on them."""

import json
import os

import numpy as np
import PIL.Image
import PIL.ImageDraw
import tensorboardX

from d3ke_jax.io.atomic import atomic_write
from d3ke_jax.skeleton.model import GROUND, root_relative

PREDICTED, TRUE = (0, 255, 0), (255, 0, 255)
METRICS = "metrics.jsonl"


class Writer:
  """Writes scalars to ``metrics.jsonl`` and to TensorBoard (``tensorboard/<split>``).

  A run resumed from ``step`` drops what an interrupted run wrote after it (rows of
  ``metrics.jsonl``, rewritten atomically; TensorBoard purges events past it), so the
  replayed steps are not logged twice. Only one process of a multi-host run writes
  (``enabled``); the others do nothing.
  """

  def __init__(self, workdir, enabled=True, step=0):
    self.workdir, self.enabled, self.step, self._boards = workdir, enabled, step, {}
    self.path = os.path.join(workdir, METRICS)
    if enabled and os.path.exists(self.path):
      with open(self.path) as f:
        rows = [row for row in map(_row, f) if row is not None and row["step"] <= step]
      with atomic_write(self.path) as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)

  def _board(self, split):
    if split not in self._boards:
      self._boards[split] = tensorboardX.SummaryWriter(
          os.path.join(self.workdir, "tensorboard", split), purge_step=self.step + 1)
    return self._boards[split]

  def scalars(self, step, split, values):
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, "split": split, **values}) + "\n")
    for name, value in values.items():
      self._board(split).add_scalar(name, value, step)

  def images(self, step, split, name, images):
    """``images`` (N, H, W, 3) uint8, shown side by side."""
    if self.enabled and len(images):
      self._board(split).add_image(name, np.concatenate(list(images), axis=1), step,
                                   dataformats="HWC")

  def close(self):
    for board in self._boards.values():
      board.close()


def _row(line):
  """A ``metrics.jsonl`` row, or None for a line a killed run left unfinished."""
  try:
    return json.loads(line)
  except ValueError:
    return None


def bones(model):
  """(parent joint, joint) pairs: each joint linked to the joint that moves its parent body."""
  moved_by = {body: j for j, body in enumerate(model.joint_child_body)}
  return [(moved_by[parent], j) for j, parent in enumerate(model.joint_parent_body)
          if parent != GROUND and parent in moved_by]


def project(points, intrinsics):
  """Camera-frame points (..., 3) -> pixels (..., 2)."""
  pixels = points @ np.asarray(intrinsics).T
  return pixels[..., :2] / pixels[..., 2:]


def draw_skeleton(image, joints_2d, pairs, colour, width=1):
  """A copy of ``image`` (H, W, 3) uint8 with the bones ``pairs`` of ``joints_2d`` drawn."""
  canvas = PIL.Image.fromarray(np.asarray(image))
  draw = PIL.ImageDraw.Draw(canvas)
  for a, b in pairs:
    draw.line([tuple(map(float, joints_2d[a])), tuple(map(float, joints_2d[b]))], fill=colour,
              width=width)
  return np.asarray(canvas)


def skeleton_overlays(model, frames, joints, scale=2):
  """``frames`` (``image`` (N, H, W, 3) uint8, true ``joints`` (N, J, 3) and ``intrinsics``),
  magnified ``scale`` times, with the true (magenta) and predicted (green) skeletons: the
  predicted root-relative ``joints`` (N, J, 3) placed at the true root."""
  pairs = bones(model)
  root = model.root_joint
  true = np.asarray(frames["joints"])
  joints = np.asarray(joints)
  predicted = root_relative(joints, joints, root) + true[:, root, None]
  out = []
  for image, t, p, k in zip(frames["image"], true, predicted, frames["intrinsics"]):
    big = np.asarray(PIL.Image.fromarray(image).resize((image.shape[1] * scale,
                                                        image.shape[0] * scale)))
    big = draw_skeleton(big, project(t, k) * scale, pairs, TRUE)
    out.append(draw_skeleton(big, project(p, k) * scale, pairs, PREDICTED))
  return np.stack(out)
