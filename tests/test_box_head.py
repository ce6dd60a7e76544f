"""The box head (where the person is in the crop): its targets and loss, and that it leaves
D3KE's objective as the paper's (its gradient never reaches the backbone), in float32."""

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import boxes
from d3ke_jax.nets.d3ke import BOX
from d3ke_jax.skeleton import load_osim
from d3ke_jax.train import step as steps
from d3ke_jax.train.losses import box_loss
from heads_check import HeadCheck, tiny_batch


def test_box_loss_is_zero_at_the_truth_and_ignores_masked_frames():
  true = jnp.asarray([[0.1, 0.2, 0.7], [0.0, 0.0, 1.0], [jnp.nan, jnp.nan, jnp.nan]])
  mask = jnp.asarray([1.0, 1.0, 0.0])
  assert float(box_loss(true, true, mask)) == 0.0
  moved = true.at[0, 0].add(0.1)  # the centre 0.1 to the right, in one of 2 x 3 values
  np.testing.assert_allclose(float(box_loss(moved, true, mask)), 0.1 / 6, rtol=1e-5)
  grown = true.at[1, 2].set(np.e)  # side e: log side 1 off; the centre moves by (e - 1) / 2
  np.testing.assert_allclose(float(box_loss(grown, true, mask)),
                             (2 * (np.e - 1) / 2 + 1) / 6, rtol=1e-5)


def test_box_head_leaves_the_kinematics_and_their_gradient_unchanged():
  """The same backbone and kinematic head with and without a box head: equal kinematics,
  equal D3KE loss terms, equal backbone gradients; the box loss adds only box-head
  gradients; the head starts at the whole crop."""
  check = HeadCheck("box_head")
  box = check.sown[BOX][0]
  np.testing.assert_allclose(box, np.broadcast_to([0, 0, 1], box.shape), atol=0.02)
  check.assert_objective_unchanged("box")
  assert set(check.scores) == {"box_iou"} and not check.plain_scores
  assert float(check.terms["box"]) > 0
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(check.grads["box_head"]))


def test_box_targets_are_the_inference_box_of_the_markers():
  """The target of a valid frame is the square box with ``boxes.MARGIN`` around its projected
  markers, as fractions of the crop; an invalid frame is masked."""
  batch = tiny_batch(load_osim())
  true_box, mask = steps.box_targets(batch)
  size = batch["image"].shape[1]
  for k in range(3):
    np.testing.assert_allclose(
        true_box[k], boxes.square(np.asarray(batch["markers_2d"][k], float), boxes.MARGIN) / size,
        rtol=1e-5)
  np.testing.assert_array_equal(mask, [1, 1, 1, 0])
