"""Skeletons drawn on images: bones follow the model's tree, projection is the pinhole."""

import numpy as np

from d3ke_jax import drawing
from d3ke_jax.skeleton import forward_kinematics, load_osim
from d3ke_jax.skeleton.model import GROUND


def test_bones_link_each_joint_to_the_joint_moving_its_parent_body():
  model = load_osim()
  pairs = drawing.bones(model)
  rooted = [j for j, parent in enumerate(model.joint_parent_body) if parent == GROUND]
  assert len(pairs) == model.num_joints - len(rooted)  # a tree: one bone per non-root joint
  for parent, child in pairs:
    assert model.joint_child_body[parent] == model.joint_parent_body[child]
  names = {(model.joint_names[a], model.joint_names[b]) for a, b in pairs}
  assert ("hip_r", "knee_r") in names and ("knee_r", "ankle_r") in names


def test_projection_and_drawing():
  k = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])
  np.testing.assert_allclose(drawing.project(np.array([[0.1, -0.2, 2.0]]), k),
                             [[37.0, 22.0]])
  image = np.zeros((64, 64, 3), np.uint8)
  drawn = drawing.draw_skeleton(image, np.array([[10.0, 10.0], [10.0, 50.0]]), [(0, 1)],
                                  drawing.PREDICTED)
  assert tuple(drawn[30, 10]) == drawing.PREDICTED and not drawn[30, 40].any()
  assert not image.any()  # the input is left as it was


def test_overlays_place_the_predicted_skeleton_at_the_true_root():
  model = load_osim()
  turn = np.diag([1.0, -1.0, -1.0])  # upright in front of the camera
  joints = np.asarray(forward_kinematics(model, np.asarray(model.coordinate_defaults),
                                         root_rotation=turn).joint_origins) + [0, 0, 3.0]
  frames = {"image": np.zeros((1, 48, 48, 3), np.uint8), "joints": joints[None],
            "intrinsics": np.array([[[40.0, 0, 24], [0, 40.0, 24], [0, 0, 1]]])}
  colours = lambda image: {tuple(c) for c in image.reshape(-1, 3)}
  # Predicted root-relative: drawn over the true skeleton, which it hides.
  (shifted,) = drawing.skeleton_overlays(model, frames, joints[None] - joints[model.root_joint])
  assert shifted.shape == (96, 96, 3)
  assert drawing.PREDICTED in colours(shifted) and drawing.TRUE not in colours(shifted)
  (bent,) = drawing.skeleton_overlays(model, frames, joints[None] * [1, 1.3, 1])
  assert {drawing.PREDICTED, drawing.TRUE} <= colours(bent)
