"""Forward kinematics as a JAX function: gradients, transformations, shapes, one scan."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax.skeleton import forward_kinematics, load_osim
from d3ke_jax.skeleton.kinematics import CPU_CHUNK
from d3ke_jax.skeleton.rotations import rotvec_to_matrix
from conftest import reference_file


@functools.lru_cache(maxsize=None)
def _model():
  return load_osim()  # the project's default model


def _random_pose(model, rng, batch=()):
  low, high = np.asarray(model.coordinate_ranges).T
  low, high = np.maximum(low, -1.0), np.minimum(high, 1.0)
  return rng.uniform(low, high, batch + (model.num_coordinates,))


def test_gradients_match_finite_differences():
  model = _model()
  rng = np.random.default_rng(0)
  q = _random_pose(model, rng)
  s = rng.uniform(0.8, 1.2, (model.num_bodies, 3))
  w = rng.normal(size=(model.num_markers, 3))

  def loss(q, s):
    out = forward_kinematics(model, q, scales=s)
    return jnp.sum(out.markers * w) + jnp.sum(out.joint_origins**2)

  grad_q, grad_s = jax.grad(loss, argnums=(0, 1))(q, s)
  eps = 1e-6
  for i in rng.choice(model.num_coordinates, 12, replace=False):
    dq = np.zeros_like(q)
    dq[i] = eps
    fd = (loss(q + dq, s) - loss(q - dq, s)) / (2 * eps)
    np.testing.assert_allclose(grad_q[i], fd, rtol=1e-5, atol=1e-7)
  for b in rng.choice(model.num_bodies, 6, replace=False):
    ds = np.zeros_like(s)
    ds[b, 1] = eps
    fd = (loss(q, s + ds) - loss(q, s - ds)) / (2 * eps)
    np.testing.assert_allclose(grad_s[b, 1], fd, rtol=1e-5, atol=1e-7)


def test_root_rotation_gradient_is_finite_and_matches_fd():
  model = _model()
  rng = np.random.default_rng(1)
  q = _random_pose(model, rng)
  rotvec = rng.normal(size=3)

  def loss(v):
    return jnp.sum(forward_kinematics(model, q, root_rotation=rotvec_to_matrix(v)).markers[:, 1])

  grad = jax.grad(loss)(rotvec)
  for i in range(3):
    dv = np.zeros(3)
    dv[i] = 1e-6
    np.testing.assert_allclose(grad[i], (loss(rotvec + dv) - loss(rotvec - dv)) / 2e-6,
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_any_leading_batch_shape(batch):
  model = _model()
  q = _random_pose(model, np.random.default_rng(2), batch)
  out = forward_kinematics(model, q)
  chex.assert_shape(out.markers, batch + (model.num_markers, 3))
  chex.assert_shape(out.joint_origins, batch + (model.num_joints, 3))
  chex.assert_shape(out.body_transforms, batch + (model.num_bodies, 4, 4))
  flat = forward_kinematics(model, q.reshape(-1, model.num_coordinates))
  np.testing.assert_allclose(out.markers.reshape(-1, model.num_markers, 3), flat.markers,
                             atol=1e-12)


@pytest.mark.parametrize("batch", [(0,), (2, 0)])
def test_empty_batches_give_empty_outputs(batch):
  model = _model()
  out = forward_kinematics(model, np.zeros(batch + (model.num_coordinates,), np.float32),
                           scales=np.ones((model.num_bodies, 3)), root_rotation=np.eye(3))
  chex.assert_shape(out.markers, batch + (model.num_markers, 3))
  chex.assert_shape(out.joint_origins, batch + (model.num_joints, 3))
  chex.assert_shape(out.body_transforms, batch + (model.num_bodies, 4, 4))
  assert out.markers.dtype == np.float32


def test_large_batches_are_chunked_without_changing_results():
  model = _model()
  n = CPU_CHUNK + 7  # more than one chunk, not a multiple of it
  q = _random_pose(model, np.random.default_rng(12), (n,))
  s = np.random.default_rng(13).uniform(0.9, 1.1, (n, model.num_bodies, 3))
  whole = forward_kinematics(model, q, scales=s)
  parts = [forward_kinematics(model, q[i:i + 100], scales=s[i:i + 100]) for i in range(0, n, 100)]
  for field in ("markers", "joint_origins", "body_transforms"):
    np.testing.assert_allclose(getattr(whole, field),
                               np.concatenate([getattr(p, field) for p in parts]), atol=1e-12)


def test_vmap_and_jit_agree_with_batched_call():
  model = _model()
  q = _random_pose(model, np.random.default_rng(3), (4,))
  s = np.random.default_rng(4).uniform(0.9, 1.1, (4, model.num_bodies, 3))
  batched = forward_kinematics(model, q, scales=s)
  mapped = jax.vmap(lambda q, s: forward_kinematics(model, q, scales=s))(q, s)
  jitted = jax.jit(forward_kinematics)(model, q, s)
  for out in (mapped, jitted):
    np.testing.assert_allclose(out.markers, batched.markers, atol=1e-12)
    np.testing.assert_allclose(out.body_transforms, batched.body_transforms, atol=1e-12)


def test_scales_broadcast_over_batch():
  model = _model()
  q = _random_pose(model, np.random.default_rng(5), (3,))
  s = np.random.default_rng(6).uniform(0.9, 1.1, (model.num_bodies, 3))
  shared = forward_kinematics(model, q, scales=s)
  each = forward_kinematics(model, q, scales=np.broadcast_to(s, (3,) + s.shape))
  np.testing.assert_allclose(shared.markers, each.markers, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_dtype_follows_input(dtype):
  model = _model()
  out = forward_kinematics(model, _random_pose(model, np.random.default_rng(7)).astype(dtype))
  chex.assert_type([out.markers, out.joint_origins, out.body_transforms], dtype)


def test_float32_close_to_float64():
  model = _model()
  q = _random_pose(model, np.random.default_rng(8), (16,))
  out32 = forward_kinematics(model, q.astype(np.float32))
  out64 = forward_kinematics(model, q)
  np.testing.assert_allclose(out32.markers, out64.markers, atol=2e-5)


def _count_primitives(jaxpr, name):
  count = 0
  for eqn in jaxpr.eqns:
    count += eqn.primitive.name == name
    for param in eqn.params.values():
      inner = getattr(param, "jaxpr", param)
      if hasattr(inner, "eqns"):
        count += _count_primitives(inner, name)
  return count


def test_tree_is_composed_by_one_scan():
  model = _model()
  q = _random_pose(model, np.random.default_rng(9), (2,))
  jaxpr = jax.make_jaxpr(lambda q: forward_kinematics(model, q))(q).jaxpr
  assert _count_primitives(jaxpr, "scan") == 1
  assert _count_primitives(jaxpr, "while") == 0
  # The per-joint work is vectorized: the number of operations does not grow with joints.
  assert len(jaxpr.eqns) < 10


def test_root_rotation_gives_root_relative_positions():
  model = _model()
  rng = np.random.default_rng(10)
  q = _random_pose(model, rng, (3,))
  rotation = np.asarray(rotvec_to_matrix(rng.normal(size=(3, 3))))
  ground = forward_kinematics(model, q)
  relative = forward_kinematics(model, q, root_rotation=rotation)
  root = ground.body_transforms[:, model.root_body]
  align = rotation @ np.swapaxes(root[:, :3, :3], 1, 2)
  expected = np.einsum("nij,nmj->nmi", align, ground.markers - root[:, None, :3, 3])
  np.testing.assert_allclose(relative.markers, expected, atol=1e-12)
  np.testing.assert_allclose(relative.body_transforms[:, model.root_body, :3, :3], rotation,
                             atol=1e-12)
  np.testing.assert_allclose(relative.body_transforms[:, model.root_body, :3, 3], 0,
                             atol=1e-12)


def test_locked_and_coupled_inputs_are_ignored():
  # The paper's model with hands has both locked coordinates and enforced couplers.
  model = load_osim(reference_file("models", "full_body.osim"))
  rng = np.random.default_rng(11)
  q = _random_pose(model, rng)
  ignored = [d for d, _ in model.couplers] + list(np.nonzero(model.coordinate_locked)[0])
  assert len(ignored) > 20
  changed = q.copy()
  changed[ignored] += 0.3
  np.testing.assert_allclose(forward_kinematics(model, changed).markers,
                             forward_kinematics(model, q).markers, atol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(coords=np.zeros(3)), "coords must have shape"),
    (dict(scales=np.ones((2, 3))), "scales must have shape"),
    (dict(root_rotation=np.eye(4)), "root_rotation must have shape"),
])
def test_wrong_shapes_are_reported(kwargs, message):
  model = _model()
  args = dict(coords=np.zeros(model.num_coordinates))
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    forward_kinematics(model, **args)
