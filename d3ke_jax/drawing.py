"""Skeletons drawn on images: the model's bones, pinhole projection and line drawing, for
training summaries and inference overlays; bones coloured by their uncertainty, with a
legend."""

import matplotlib
import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

from d3ke_jax.skeleton.model import GROUND, root_relative

PREDICTED, TRUE = (0, 255, 0), (255, 0, 255)
UNSURE_DEG = 20.0  # a standard deviation (degrees) drawn red; 0 is green
COLOURMAP = "RdYlGn_r"  # green, yellow, red


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
  """A copy of ``image`` (H, W, 3) uint8 with the bones ``pairs`` of ``joints_2d`` drawn in
  ``colour``: one RGB, or one per pair (len(pairs), 3)."""
  colours = np.broadcast_to(np.asarray(colour, int), (len(pairs), 3))
  canvas = PIL.Image.fromarray(np.asarray(image))
  draw = PIL.ImageDraw.Draw(canvas)
  for (a, b), fill in zip(pairs, colours):
    draw.line([tuple(map(float, joints_2d[a])), tuple(map(float, joints_2d[b]))],
              fill=tuple(map(int, fill)), width=width)
  return np.asarray(canvas)


def uncertainty_colours(sd_deg):
  """RGB uint8 (..., 3) of standard deviations (...,) in degrees: green at 0, yellow, red
  at ``UNSURE_DEG`` and above."""
  rgba = matplotlib.colormaps[COLOURMAP](np.clip(np.asarray(sd_deg, float) / UNSURE_DEG, 0, 1))
  return np.round(rgba[..., :3] * 255).astype(np.uint8)


def uncertainty_legend(length=48):
  """A small image (H, W, 3) uint8 explaining ``uncertainty_colours``: "SD 0", a bar of
  ``length`` pixels from green to red, and ``UNSURE_DEG``, white on black."""
  font = PIL.ImageFont.load_default()
  left, right = "SD 0", f"{UNSURE_DEG:g} deg"
  height = font.getbbox("SD 0123456789")[3] + 4
  gap = 4
  x_bar = int(font.getlength(left)) + 2 * gap
  width = x_bar + length + gap + int(font.getlength(right)) + gap
  canvas = PIL.Image.new("RGB", (width, height))
  draw = PIL.ImageDraw.Draw(canvas)
  draw.text((gap, 2), left, fill=(255, 255, 255), font=font)
  draw.text((x_bar + length + gap, 2), right, fill=(255, 255, 255), font=font)
  image = np.array(canvas)
  bar = uncertainty_colours(np.linspace(0, UNSURE_DEG, length))
  image[height // 2 - 2:height // 2 + 2, x_bar:x_bar + length] = bar
  return image


def paste(image, patch, margin=4):
  """A copy of ``image`` with ``patch`` in its bottom left corner (cut to fit)."""
  out = np.array(image)
  h = min(patch.shape[0], out.shape[0] - margin)
  w = min(patch.shape[1], out.shape[1] - margin)
  out[out.shape[0] - margin - h:out.shape[0] - margin, margin:margin + w] = patch[-h:, :w]
  return out


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
