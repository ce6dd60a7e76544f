"""A head that reads D3KE's features through a stop-gradient leaves the paper's objective
as it is: the same network (per-frame or sequence) with and without it, on one batch, gives
the same kinematics, the same loss terms and the same gradient of every other parameter
(float32, compiled)."""

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import PerFrameD3KE, images_from_batch
from d3ke_jax.skeleton import load_osim, make_layout
from d3ke_jax.skeleton.rotations import rotvec_to_matrix
from d3ke_jax.train import step as steps


def tiny_batch(model, n=4, size=32):
  """Labels of every kind for ``n`` frames of ``size`` px, the last one invalid."""
  rng = np.random.default_rng(1)
  batch = {"image": rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8),
           "coordinates": rng.normal(0, 0.2, (n, model.num_coordinates)).astype(np.float32),
           "scales": rng.uniform(0.9, 1.1, (n, model.num_bodies, 3)).astype(np.float32),
           "pelvis_rotation": np.asarray(rotvec_to_matrix(rng.normal(size=(n, 3))),
                                         np.float32),
           "joints": rng.normal(0, 0.3, (n, model.num_joints, 3)).astype(np.float32),
           "markers": rng.normal(0, 0.3, (n, model.num_markers, 3)).astype(np.float32),
           "markers_2d": rng.uniform(4, size - 4, (n, model.num_markers, 2)).astype(np.float32),
           "frame_valid": np.array([True] * (n - 1) + [False]),
           "coordinate_valid": rng.uniform(size=(n, model.num_coordinates)) > 0.1}
  return jax.tree.map(jnp.asarray, batch)


def tiny_windows(model, layout, n=2, frames=4):
  """``n`` windows of ``frames`` frames: ``tiny_batch``'s labels and noisy per-frame
  estimates of them with stage 1's uncertainty, as stage 2 reads them."""
  batch = {k: np.asarray(v) for k, v in tiny_batch(model, n * frames).items() if k != "image"}
  rng = np.random.default_rng(2)
  coords = batch["coordinates"][:, np.array(layout.coordinates)]
  groups = np.array([g[0] for g in layout.body_groups])
  batch.update({"input_coords": coords + rng.normal(0, 0.05, coords.shape).astype(np.float32),
                "input_scales": batch["scales"][:, groups],
                "input_rotation": batch["pelvis_rotation"],
                "input_uncertainty_coords": rng.uniform(0.01, 0.3, coords.shape),
                "input_uncertainty_scales": rng.uniform(0.01, 0.1, (n * frames, len(groups), 3)),
                "input_uncertainty_rotation": rng.uniform(0.01, 0.3, n * frames)})
  return {k: jnp.asarray(np.reshape(v, (n, frames) + np.shape(v)[1:]),
                         jnp.float32 if np.asarray(v).dtype == np.float64 else None)
          for k, v in batch.items()}


class HeadCheck:
  """``head`` (a ``PerFrameD3KE`` option such as "box_head", and the name of the head's
  parameters) on a tiny network and one batch, checked against the network without it;
  ``networks`` (with, without), ``inputs`` (batch -> their input) and ``batch`` check
  another network (default: the per-frame network on ``tiny_batch``). Keeps what the head's
  own tests read: ``sown`` (its intermediates at initialisation), ``terms``, ``scores``,
  ``predictions`` and ``grads`` (the whole network's)."""

  def __init__(self, head, networks=None, inputs=images_from_batch, batch=None):
    model = load_osim()
    layout = make_layout(model, include_root=False)
    if networks is None:
      networks = (PerFrameD3KE(heads.bounds_for(model, layout), stage_sizes=(1, 1, 1, 1),
                               groups=4, head_hidden=16, **{head: on}) for on in (True, False))
    network, plain = networks
    batch = tiny_batch(model) if batch is None else batch
    x = inputs(batch)
    variables = jax.jit(network.init)(jax.random.PRNGKey(0), x)
    self.name = head
    assert head in variables["params"], sorted(variables["params"])
    without = {"params": {k: v for k, v in variables["params"].items() if k != head},
               "batch_stats": variables.get("batch_stats", {})}
    kinematics, state = network.apply(variables, x, mutable=["intermediates"])
    self.sown = state["intermediates"]
    for a, b in zip(kinematics, plain.apply(without, x)):
      np.testing.assert_array_equal(a, b)

    def loss(net, params, variables):
      value, (terms, _, predictions, scores) = steps._loss(  # pylint: disable=protected-access
          net, model, layout, None, inputs, steps.d3ke_objective, params,
          variables["batch_stats"], batch, jax.random.PRNGKey(0), True)
      return value, (terms, predictions, scores)

    gradient = lambda net, v: jax.jit(jax.value_and_grad(
        lambda p: loss(net, p, v), has_aux=True))(v["params"])
    (self.loss, (self.terms, self.predictions, self.scores)), self.grads = gradient(
        network, dict(variables, batch_stats=without["batch_stats"]))
    (self.plain_loss, (self.plain_terms, self.plain_predictions, self.plain_scores)), (
        self.plain_grads) = gradient(plain, without)

  def assert_objective_unchanged(self, term):
    """The paper's terms and every gradient but the head's are the plain network's; the
    loss adds the head's ``term`` alone."""
    assert set(self.terms) == set(self.plain_terms) | {term}
    for name in self.plain_terms:
      np.testing.assert_array_equal(self.terms[name], self.plain_terms[name])
    np.testing.assert_allclose(self.loss, self.plain_loss + self.terms[term], rtol=1e-6)
    others = {k: v for k, v in self.grads.items() if k != self.name}
    for (path, g), g_plain in zip(jax.tree_util.tree_leaves_with_path(others),
                                  jax.tree.leaves(self.plain_grads)):
      np.testing.assert_array_equal(g, g_plain, err_msg=jax.tree_util.keystr(path))
