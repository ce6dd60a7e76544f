"""Hard frames of the synthetic dataset: the truth is there, but hard to see.

A share of every clip's frames (``fraction``, default ``FRACTION``; which ones, and how,
drawn from the dataset's seed and the clip) is made hard in one of three ways, and the
record says which (its ``hard`` field; ``NONE`` for a clean frame):

- ``occluded``: an opaque object (a rectangle or an ellipse, 24-50 % of the crop's side,
  in a furniture, wall or clothing colour, lit from above) in front of the body, centred
  near one of the joints the crop shows;
- ``outside``: the crop zoomed in (0.55-0.85 of the person box's side) and shifted (0.15-0.4
  of it) so that some joints fall outside it, and at least half stay inside; the 2D labels,
  box and intrinsics are those of this crop;
- ``blurred``: strong Gaussian blur (sigma 2.5-5 % of the crop's side) or motion blur (a line
  8-20 % of the side long, any direction).

The labels stay the true ones. Occluders and blur are applied to the rendered image before
the sensor noise; a clean frame is the same whether or not other frames are made hard.
"""

import numpy as np
import scipy.ndimage

NONE = "none"
KINDS = ("occluded", "outside", "blurred")
FRACTION = 0.3  # of each clip's frames, in equal parts of KINDS
STREAM = 2  # tells the hard frames' random stream from the clips' (0) and outfits' (1)

# Plausible occluder colours (sRGB in [0, 1]): wood, walls, metal, plants, upholstery.
OCCLUDER_COLOURS = np.array([
    (0.55, 0.38, 0.22), (0.36, 0.24, 0.15), (0.76, 0.62, 0.42), (0.90, 0.90, 0.87),
    (0.50, 0.50, 0.52), (0.12, 0.12, 0.13), (0.22, 0.40, 0.20), (0.20, 0.30, 0.55),
    (0.60, 0.16, 0.13), (0.82, 0.75, 0.58), (0.70, 0.72, 0.75)])


def choose(rng, frames, fraction=FRACTION):
  """The kind of each of a clip's ``frames`` (a list of ``NONE`` or one of ``KINDS``):
  ``round(fraction * frames)`` of them hard, at random places, the kinds taking turns from
  a random first one."""
  if not 0 <= fraction <= 1:
    raise ValueError(f"hard fraction {fraction} is not between 0 and 1")
  kinds = [NONE] * frames
  chosen = np.sort(rng.choice(frames, int(round(fraction * frames)), replace=False))
  first = int(rng.integers(len(KINDS)))
  for i, t in enumerate(chosen):
    kinds[t] = KINDS[(first + i) % len(KINDS)]
  return kinds


def outside_box(box, points, rng, attempts=50):
  """A square box (x0, y0, side) zoomed into and shifted from ``box`` so that some of
  ``points`` (K, 2) (image pixels) fall outside it and at least half stay inside."""
  x0, y0, side = np.asarray(box, float)
  centre = np.array([x0 + side / 2, y0 + side / 2])
  points = np.asarray(points, float)
  for attempt in range(attempts):
    new_side = side * rng.uniform(0.55, 0.85)
    angle = rng.uniform(0, 2 * np.pi)
    # Shifted further on every try that leaves every point inside.
    shift = side * rng.uniform(0.15, 0.4) * (1 + attempt / 10)
    corner = centre + shift * np.array([np.cos(angle), np.sin(angle)]) - new_side / 2
    inside = np.all((points >= corner) & (points < corner + new_side), axis=1)
    if not inside.all() and inside.mean() >= 0.5:
      break
  return np.array([corner[0], corner[1], new_side])


def occluder_mask(size, centre, half, ellipse):
  """(size, size) bool: pixels (centres at +0.5) inside the axis-aligned rectangle or
  ellipse of ``centre`` (x, y) and half-extents ``half`` (x, y)."""
  v, u = np.mgrid[0:size, 0:size] + 0.5
  dx, dy = (u - centre[0]) / half[0], (v - centre[1]) / half[1]
  return dx ** 2 + dy ** 2 <= 1 if ellipse else (np.abs(dx) <= 1) & (np.abs(dy) <= 1)


def occlude(image, joints_2d, rng):
  """(image, mask): ``image`` (size, size, 3) in [0, 1] with an opaque object drawn over
  it near one of ``joints_2d`` (K, 2) that lies in the image, and where it is."""
  size = image.shape[0]
  inside = np.flatnonzero(np.all((joints_2d >= 0) & (joints_2d < size), axis=1))
  joint = joints_2d[rng.choice(inside)] if len(inside) else np.full(2, size / 2)
  half = rng.uniform(0.12, 0.25, 2) * size
  centre = joint + rng.uniform(-0.3, 0.3, 2) * half  # the joint stays covered
  mask = occluder_mask(size, centre, half, ellipse=rng.uniform() < 0.5)
  colour = OCCLUDER_COLOURS[rng.integers(len(OCCLUDER_COLOURS))] * rng.uniform(0.85, 1.1)
  # Lit from above: 10 % brighter at its top than at its bottom.
  rows = (np.arange(size) + 0.5 - centre[1]) / (2 * half[1])
  shade = np.clip(colour[None, :] * (1 - 0.2 * rows[:, None]), 0, 1)[:, None, :]
  return np.where(mask[..., None], shade, image), mask


def blur(image, rng):
  """``image`` (size, size, 3) strongly blurred: Gaussian or motion blur, at random."""
  size = image.shape[0]
  if rng.uniform() < 0.5:
    sigma = rng.uniform(0.025, 0.05) * size
    return scipy.ndimage.gaussian_filter(image, (sigma, sigma, 0), mode="nearest")
  length = rng.uniform(0.08, 0.2) * size
  angle = rng.uniform(0, np.pi)
  radius = int(np.ceil(length / 2)) + 1
  kernel = np.zeros((2 * radius + 1, 2 * radius + 1))
  for s in np.linspace(-length / 2, length / 2, 4 * radius + 1):  # a line, splatted bilinearly
    x, y = radius + s * np.cos(angle), radius + s * np.sin(angle)
    i, j = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - i, x - j
    kernel[i, j] += (1 - fy) * (1 - fx)
    kernel[i, j + 1] += (1 - fy) * fx
    kernel[i + 1, j] += fy * (1 - fx)
    kernel[i + 1, j + 1] += fy * fx
  kernel /= kernel.sum()
  return np.stack([scipy.ndimage.convolve(image[..., c], kernel, mode="nearest")
                   for c in range(image.shape[-1])], -1)


def groups(kinds):
  """{group: (N,) bool} of a split's ``hard`` labels (N,): "clean", each of ``KINDS``,
  "hard" (any kind) and "all" frames."""
  kinds = np.asarray(kinds).astype(str)
  out = {"clean": kinds == NONE}
  out.update({kind: kinds == kind for kind in KINDS})
  out.update(hard=kinds != NONE, all=np.ones(len(kinds), bool))
  return out
