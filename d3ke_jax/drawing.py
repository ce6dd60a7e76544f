"""Skeletons drawn on images: the model's bones, pinhole projection and line drawing, for
training summaries and inference overlays."""

import numpy as np
import PIL.Image
import PIL.ImageDraw

from d3ke_jax.skeleton.model import GROUND, root_relative

PREDICTED, TRUE = (0, 255, 0), (255, 0, 255)


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
