"""The box head (where the person is in the crop): its targets and loss, and that it leaves
D3KE's objective as the paper's (its gradient never reaches the backbone), in float32."""

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import boxes
from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import BOX, PerFrameD3KE, images_from_batch
from d3ke_jax.skeleton import load_osim, make_layout
from d3ke_jax.train import step as steps
from d3ke_jax.train.losses import box_loss


def test_box_loss_is_zero_at_the_truth_and_ignores_masked_frames():
  true = jnp.asarray([[0.1, 0.2, 0.7], [0.0, 0.0, 1.0], [jnp.nan, jnp.nan, jnp.nan]])
  mask = jnp.asarray([1.0, 1.0, 0.0])
  assert float(box_loss(true, true, mask)) == 0.0
  moved = true.at[0, 0].add(0.1)  # the centre 0.1 to the right, in one of 2 x 3 values
  np.testing.assert_allclose(float(box_loss(moved, true, mask)), 0.1 / 6, rtol=1e-5)
  grown = true.at[1, 2].set(np.e)  # side e: log side 1 off; the centre moves by (e - 1) / 2
  np.testing.assert_allclose(float(box_loss(grown, true, mask)),
                             (2 * (np.e - 1) / 2 + 1) / 6, rtol=1e-5)


def _network_and_batch(box_head):
  model = load_osim()
  layout = make_layout(model, include_root=False)
  network = PerFrameD3KE(heads.bounds_for(model, layout), stage_sizes=(1, 1, 1, 1), groups=4,
                         head_hidden=16, box_head=box_head)
  rng = np.random.default_rng(1)
  n, size = 4, 32
  batch = {"image": rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8),
           "coordinates": np.zeros((n, model.num_coordinates), np.float32),
           "scales": np.ones((n, model.num_bodies, 3), np.float32),
           "joints": rng.normal(0, 0.3, (n, model.num_joints, 3)).astype(np.float32),
           "markers": rng.normal(0, 0.3, (n, model.num_markers, 3)).astype(np.float32),
           "markers_2d": rng.uniform(4, 28, (n, model.num_markers, 2)).astype(np.float32),
           "frame_valid": np.array([True, True, True, False]),
           "coordinate_valid": np.ones((n, model.num_coordinates), bool)}
  return model, layout, network, jax.tree.map(jnp.asarray, batch)


def test_box_head_leaves_the_kinematics_and_their_gradient_unchanged():
  """The same backbone and kinematic head with and without a box head: equal kinematics,
  equal D3KE loss terms, equal backbone gradients; the box loss adds only box-head
  gradients; the head starts at the whole crop."""
  model, layout, network, batch = _network_and_batch(True)
  _, _, plain, _ = _network_and_batch(False)
  variables = network.init(jax.random.PRNGKey(0), images_from_batch(batch))
  assert "box_head" in variables["params"]
  without = {"params": {k: v for k, v in variables["params"].items() if k != "box_head"},
             "batch_stats": variables["batch_stats"]}
  images = images_from_batch(batch)
  kinematics, state = network.apply(variables, images, mutable=["intermediates"])
  box = state["intermediates"][BOX][0]
  np.testing.assert_allclose(box, np.broadcast_to([0, 0, 1], box.shape), atol=0.02)
  for a, b in zip(kinematics, plain.apply(without, images)):
    np.testing.assert_array_equal(a, b)

  def loss_of(net, params, variables):
    loss, (terms, _, _, scores) = steps._loss(  # pylint: disable=protected-access
        net, model, layout, None, images_from_batch, steps.d3ke_objective, params,
        variables["batch_stats"], batch, jax.random.PRNGKey(0), True)
    return loss, (terms, scores)

  (loss, (terms, scores)), grads = jax.value_and_grad(
      lambda p: loss_of(network, p, variables), has_aux=True)(variables["params"])
  (plain_loss, (plain_terms, plain_scores)), plain_grads = jax.value_and_grad(
      lambda p: loss_of(plain, p, without), has_aux=True)(without["params"])
  assert set(terms) == set(plain_terms) | {"box"} and set(scores) == {"box_iou"}
  assert not plain_scores
  for name in plain_terms:
    np.testing.assert_array_equal(terms[name], plain_terms[name])
  np.testing.assert_allclose(loss, plain_loss + terms["box"], rtol=1e-6)
  assert float(terms["box"]) > 0
  for (path, g), g_plain in zip(jax.tree_util.tree_leaves_with_path(
      {k: v for k, v in grads.items() if k != "box_head"}), jax.tree.leaves(plain_grads)):
    np.testing.assert_array_equal(g, g_plain, err_msg=jax.tree_util.keystr(path))
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads["box_head"]))


def test_box_targets_are_the_inference_box_of_the_markers():
  """The target of a valid frame is the square box with ``boxes.MARGIN`` around its projected
  markers, as fractions of the crop; an invalid frame is masked."""
  _, _, _, batch = _network_and_batch(True)
  true_box, mask = steps.box_targets(batch)
  size = batch["image"].shape[1]
  for k in range(3):
    np.testing.assert_allclose(
        true_box[k], boxes.square(np.asarray(batch["markers_2d"][k], float), boxes.MARGIN) / size,
        rtol=1e-5)
  np.testing.assert_array_equal(mask, [1, 1, 1, 0])
