"""The uncertainty head: the Laplace arithmetic (against sampled errors), and that the head
leaves D3KE's objective as the paper's (its gradient never reaches the backbone or the
kinematic head), in float32; likewise stage 2's head (never reaching the sequence network),
and stage 1's scales as the sequence network's input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax.nets import heads
from d3ke_jax.nets import uncertainty as uncertainty_lib
from d3ke_jax.nets.d3ke import TemporalD3KE, uncertainty_features
from d3ke_jax.skeleton import load_osim, make_layout
from d3ke_jax.skeleton.rotations import rotvec_to_matrix
from d3ke_jax.train import step as steps
from heads_check import HeadCheck, tiny_windows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_laplace_intervals_temperatures_and_likelihood_match_sampled_errors(seed):
  """Errors drawn from Laplace distributions of known scales: the central 50 % and 90 %
  intervals hold those fractions; the fitted temperature of a head that predicts half the
  true scale is 2; the negative log-likelihood is smallest at the true scale."""
  rng = np.random.default_rng(seed)
  scale = rng.uniform(0.01, 0.2, (1, 5))
  error = np.abs(rng.laplace(0, scale, (20000, 5)))
  for probability in (0.5, 0.9):
    inside = error <= uncertainty_lib.half_width(scale, probability)
    np.testing.assert_allclose(inside.mean(0), probability, atol=0.015)
  valid = rng.uniform(size=(20000, 5)) > 0.2
  np.testing.assert_allclose(uncertainty_lib.temperatures(error, scale / 2, valid), 2.0,
                             rtol=0.04)
  np.testing.assert_allclose(uncertainty_lib.standard_deviation(scale),
                             np.sqrt(2) * scale)
  nll = lambda b: float(uncertainty_lib.negative_log_likelihood(
      jnp.asarray(error), jnp.asarray(b, jnp.float32), jnp.ones(5)))
  assert nll(scale) < min(nll(scale * 0.8), nll(scale * 1.25))


def test_rotation_angle_is_the_angle_between_rotations():
  rng = np.random.default_rng(3)
  base = np.asarray(rotvec_to_matrix(rng.normal(size=(4, 3))), np.float32)
  angles = np.array([0.0, 0.1, 1.0, 3.0], np.float32)
  axis = rng.normal(size=(4, 3))
  turn = np.asarray(rotvec_to_matrix(axis / np.linalg.norm(axis, axis=1, keepdims=True)
                                     * angles[:, None]), np.float32)
  np.testing.assert_allclose(uncertainty_lib.rotation_angle(turn @ base, base), angles,
                             atol=2e-3)


def test_uncertainty_head_leaves_the_kinematics_and_their_gradient_unchanged():
  """The same backbone and kinematic head with and without an uncertainty head: equal
  kinematics, equal D3KE loss terms, equal gradients of every other parameter; the head's
  loss trains the head alone; it starts at ``uncertainty.INITIAL``."""
  check = HeadCheck("uncertainty_head")
  for b, initial in zip(check.sown[uncertainty_lib.UNCERTAINTY][0], uncertainty_lib.INITIAL):
    np.testing.assert_allclose(b, initial, rtol=1e-5)
  check.assert_objective_unchanged("uncertainty")
  assert len(check.predictions) == len(check.plain_predictions) + 1  # the scales too
  # The head's output layer starts at zero weights: only it moves at the first step.
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(
      check.grads["uncertainty_head"]["out"]))


def test_the_head_learns_the_scale_of_the_errors():
  """Trained alone on fixed errors of known Laplace scales (features that say which frames
  are hard), the head predicts those scales: larger where the errors are larger."""
  rng = np.random.default_rng(4)
  hard = rng.uniform(size=512) < 0.5
  scale = np.where(hard, 0.2, 0.02)[:, None]
  error = jnp.asarray(np.abs(rng.laplace(0, scale, (512, 3))), jnp.float32)
  features = jnp.asarray(np.stack([hard, ~hard], 1), jnp.float32)
  head = uncertainty_lib.UncertaintyHead(3, 1, hidden=8)
  params = head.init(jax.random.PRNGKey(0), features)

  def loss(params):
    b = head.apply(params, features).coords
    return uncertainty_lib.negative_log_likelihood(error, b, jnp.ones(3))

  step = jax.jit(lambda p: jax.tree.map(lambda x, g: x - 0.05 * g, p, jax.grad(loss)(p)))
  for _ in range(1500):
    params = step(params)
  b = np.asarray(head.apply(params, features).coords)
  np.testing.assert_allclose(b[hard].mean(), 0.2, rtol=0.1)
  np.testing.assert_allclose(b[~hard].mean(), 0.02, rtol=0.1)


def _sequence_networks():
  """A tiny TCN stage 2 (dropout and BatchNorm) taking stage 1's uncertainty, with and
  without its own uncertainty head."""
  model = load_osim()
  layout = make_layout(model, include_root=False)
  bounds = heads.bounds_for(model, layout)
  make = lambda head: TemporalD3KE(bounds, network="tcn", uncertainty_input=True,
                                   uncertainty_head=head,
                                   options=(("channels", 8), ("dilations", (1, 3)),
                                            ("dropout", 0.1)))
  return model, layout, (make(True), make(False))


def test_sequence_uncertainty_head_leaves_the_refinement_and_its_gradient_unchanged():
  """Stage 2's head as stage 1's: equal refined kinematics, loss terms and gradients of the
  sequence network with and without it; its own loss trains it alone; it starts at
  ``uncertainty.INITIAL``; its scales join the predictions."""
  model, layout, networks = _sequence_networks()
  check = HeadCheck("uncertainty_head", networks, steps.estimates_from_batch,
                    tiny_windows(model, layout))
  for b, initial in zip(check.sown[uncertainty_lib.UNCERTAINTY][0], uncertainty_lib.INITIAL):
    chex.assert_shape(b, (2, 4) + np.shape(b)[2:])
    np.testing.assert_allclose(b, initial, rtol=1e-5)
  check.assert_objective_unchanged("uncertainty")
  assert len(check.predictions) == len(check.plain_predictions) + 1
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(
      check.grads["uncertainty_head"]["out"]))


def test_stage_one_uncertainty_is_an_input_of_the_sequence_network():
  """Stage 1's scales enter as log(b / INITIAL) (zero for an untrained head's); once the
  output layer is not zero, they change the refinement; a network that takes them refuses
  estimates without them."""
  model, layout, (network, _) = _sequence_networks()
  batch = tiny_windows(model, layout)
  estimates = steps.estimates_from_batch(batch)
  start = jax.tree.map(lambda b, s: jnp.full_like(b, s), estimates.uncertainty,
                       uncertainty_lib.Uncertainty(*uncertainty_lib.INITIAL))
  np.testing.assert_allclose(uncertainty_features(start), 0, atol=1e-6)
  variables = network.init(jax.random.PRNGKey(0), estimates)
  variables = jax.tree_util.tree_map_with_path(
      lambda path, v: v + 0.1 if "'out'" in jax.tree_util.keystr(path) else v, variables)
  refined = network.apply(variables, estimates)
  surer = network.apply(variables, estimates._replace(uncertainty=start))
  assert float(jnp.max(jnp.abs(refined.coords - surer.coords))) > 1e-4
  with pytest.raises(ValueError, match="no uncertainty"):
    network.apply(variables, estimates._replace(uncertainty=None))
