"""Skeleton overlays for TensorBoard: bones follow the model's tree, projection is the pinhole."""

import numpy as np

from d3ke_jax.skeleton import load_osim
from d3ke_jax.skeleton.model import GROUND
from d3ke_jax.train import summaries


def test_bones_link_each_joint_to_the_joint_moving_its_parent_body():
  model = load_osim()
  pairs = summaries.bones(model)
  rooted = [j for j, parent in enumerate(model.joint_parent_body) if parent == GROUND]
  assert len(pairs) == model.num_joints - len(rooted)  # a tree: one bone per non-root joint
  for parent, child in pairs:
    assert model.joint_child_body[parent] == model.joint_parent_body[child]
  names = {(model.joint_names[a], model.joint_names[b]) for a, b in pairs}
  assert ("hip_r", "knee_r") in names and ("knee_r", "ankle_r") in names


def test_projection_and_drawing():
  k = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])
  np.testing.assert_allclose(summaries.project(np.array([[0.1, -0.2, 2.0]]), k),
                             [[37.0, 22.0]])
  image = np.zeros((64, 64, 3), np.uint8)
  drawn = summaries.draw_skeleton(image, np.array([[10.0, 10.0], [10.0, 50.0]]), [(0, 1)],
                                  summaries.PREDICTED)
  assert tuple(drawn[30, 10]) == summaries.PREDICTED and not drawn[30, 40].any()
  assert not image.any()  # the input is left as it was
