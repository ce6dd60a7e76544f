"""``python -m experiments.occluded_arm --workdir RUN --out DIR``: does a run's uncertainty
head see a limb it cannot see? (``docs/uncertain_overlay.png``)

A subject the run never saw walks in place facing a static camera (the synthetic renderer,
the run's dataset's colours), once as rendered (``clean``) and once behind a grey panel
over their right forearm, elbow to hand, wherever it swings (``occluded``). Both clips go
through ``experiments.infer`` with their true boxes; the command prints, per clip and
side, the median over frames of each arm joint's calibrated SD (deg; the largest of its
angles', as the overlay colours the bone it turns) and the arm's MAE_angle, and writes
``DIR/frame.png``: the two overlays' frame where the hidden arm's SD exceeds the visible
one's by the clip's median amount, side by side.
"""

import argparse
import os

import numpy as np
import PIL.Image

from d3ke_jax import cli, runs
from d3ke_jax.data import frames as frames_lib
from d3ke_jax.data import hard, render, synthetic
from d3ke_jax.drawing import paste, uncertainty_legend
from d3ke_jax.infer.outputs import person_corners
from d3ke_jax.io.mot import read_mot
from d3ke_jax.io.video import FrameReader, write_video
from d3ke_jax.skeleton import forward_kinematics
from experiments import infer

SUBJECT = 10_000  # never trained on
WIDTH, HEIGHT, FOCAL, DISTANCE, FRAMES = 480, 360, 420.0, 6.0, 60  # as bench steer's
HIDDEN = ("elbow_r", "radiocarpal_r")  # the panel covers them in every frame
JOINTS = {"shoulder": ("shoulder_flex", "shoulder_add", "shoulder_rot"),
          "elbow": ("elbow_flexion",), "forearm": ("pro_sup",),
          "wrist": ("wrist_flex", "wrist_dev")}
ZOOM = 3  # the picture's pixels per video pixel


def clips(workdir):
  """({"clean", "occluded": frames (T, H, W, 3) uint8}, true boxes (T, 3), true
  coordinates (T, C))."""
  colours = getattr(runs.dataset_config(runs.load_config(workdir))[1], "colours", "sided")
  images, truth, coords, _ = frames_lib.crossing_scene(
      SUBJECT, "walking", FRAMES, WIDTH, HEIGHT, FOCAL, DISTANCE, travel=0.0, seed=SUBJECT,
      colours=colours)
  model = frames_lib.default_model()
  joints = forward_kinematics(model, coords, scales=synthetic.make_subject(
      model, SUBJECT).scales).joint_origins
  view = render.look_at((DISTANCE, 1.1, 0.0), (0.0, 0.9, 0.0), FOCAL, (WIDTH / 2, HEIGHT / 2))
  hidden = np.asarray(render.project(view, joints)[0])[:, [model.joint_index(j)
                                                           for j in HIDDEN]].reshape(-1, 2)
  pad = 0.06 * np.median(truth[:, 2])
  (x0, y0), (x1, y1) = (np.round(hidden.min(0) - pad).astype(int),
                        np.round(hidden.max(0) + pad).astype(int))
  shade = 1.05 - 0.2 * np.linspace(0, 1, y1 - y0)[:, None, None]  # lit from above
  occluded = images.copy()
  occluded[:, y0:y1, x0:x1] = np.round(255 * hard.OCCLUDER_COLOURS[4] * shade)
  return {"clean": images, "occluded": occluded}, truth, coords


def frame_of(path, index):
  """Frame ``index`` of the video ``path``."""
  for k, (chunk, _) in enumerate(FrameReader(path, 1)):
    if k == index:
      return chunk[0]
  raise IndexError(f"{path}: no frame {index}")


def picture(out, names, index, box):
  """The overlays' frame ``index`` side by side, each cut to ``box`` and enlarged, with
  the colours' legend."""
  x0, y0, side = np.round(box).astype(int)
  parts = []
  for name in names:
    frame = frame_of(os.path.join(out, name, f"{name}_overlay.mp4"), index)
    part = PIL.Image.fromarray(frame[max(y0, 0):y0 + side, max(x0, 0):x0 + side])
    parts.append(np.asarray(part.resize((part.width * ZOOM, part.height * ZOOM),
                                        PIL.Image.NEAREST)))
  return paste(np.concatenate(parts, 1), uncertainty_legend(96))


def arm_sd(table, side):
  """(T, len(JOINTS)) each arm joint's SD (deg) in a ``_sd.mot`` table."""
  return np.stack([np.max([table.column(f"{c}_{side}") for c in coordinates], 0)
                   for coordinates in JOINTS.values()], 1)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a trained per-frame run, calibrated")
  parser.add_argument("--out", required=True, help="a folder for the clips and outputs")
  args = parser.parse_args(argv)
  videos, boxes_dir = os.path.join(args.out, "videos"), os.path.join(args.out, "boxes")
  os.makedirs(videos, exist_ok=True)
  os.makedirs(boxes_dir, exist_ok=True)
  images, truth, coords = clips(args.workdir)
  rows = np.column_stack([np.arange(len(truth)), person_corners(truth)])
  for name, frames in images.items():
    write_video(os.path.join(videos, f"{name}.mp4"), frames, synthetic.RATE)
    np.savetxt(os.path.join(boxes_dir, f"{name}.csv"), rows, fmt="%g", delimiter=",",
               header="frame,x0,y0,x1,y1", comments="")
  infer.main(["--video", videos, "--boxes", boxes_dir, "--workdir", args.workdir,
              "--out", args.out, "--steer", "0"])
  names = frames_lib.default_model().coordinate_names
  print("| clip | arm | " + " | ".join(f"{j} SD" for j in JOINTS) + " | MAE_angle |")
  print("|---|---|" + "---|" * (len(JOINTS) + 1))
  sd = {}
  for name in images:
    table = read_mot(os.path.join(args.out, name, f"{name}_sd.mot"))
    angles = read_mot(os.path.join(args.out, name, f"{name}.mot"))
    for side, arm in (("r", "right"), ("l", "left")):
      sd[name, side] = arm_sd(table, side)
      columns = [f"{c}_{side}" for coordinates in JOINTS.values() for c in coordinates]
      error = np.mean([np.abs(angles.column(c) - np.degrees(coords[:, names.index(c)]))
                       for c in columns])
      print(f"| {name} | {arm} | " + " | ".join(
          f"{v:.1f}" for v in np.median(sd[name, side], 0)) + f" | {error:.1f} |")
  excess = sd["occluded", "r"].mean(1) - sd["occluded", "l"].mean(1)
  index = int(np.argsort(excess)[len(excess) // 2])
  print(f"occluded: the right arm's mean joint SD above the left's in "
        f"{np.mean(excess > 0):.0%} of the frames, by {np.median(excess):.1f} deg (median)")
  path = os.path.join(args.out, "frame.png")
  PIL.Image.fromarray(picture(args.out, list(images), index, truth[index])).save(path)
  print(f"frame {index} -> {path}")


if __name__ == "__main__":
  cli.run(main)
