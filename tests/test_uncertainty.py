"""The uncertainty head: the Laplace arithmetic (against sampled errors), and that the head
leaves D3KE's objective as the paper's (its gradient never reaches the backbone or the
kinematic head), in float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax.nets import uncertainty as uncertainty_lib
from d3ke_jax.skeleton.rotations import rotvec_to_matrix
from heads_check import HeadCheck


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
