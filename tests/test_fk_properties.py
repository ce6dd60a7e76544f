"""Forward kinematics as a JAX function: gradients, transformations, shapes, one scan.

Float32 (as users run it) unless a test says otherwise; tolerances are the measured errors
times 2-4 (and exact where the arithmetic is the same)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax.skeleton import forward_kinematics, load_osim
from d3ke_jax.skeleton.kinematics import CPU_CHUNK
from d3ke_jax.skeleton.rotations import rotvec_to_matrix
from conftest import float64, reference_file


@functools.lru_cache(maxsize=None)
def _model():
  return load_osim()  # the project's default model


def _random_pose(model, rng, batch=()):
  low, high = np.asarray(model.coordinate_ranges).T
  low, high = np.maximum(low, -1.0), np.minimum(high, 1.0)
  return rng.uniform(low, high, batch + (model.num_coordinates,))


# Central differences with steps of 1e-6 resolve gradients only in float64.
@pytest.mark.float64
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
    np.testing.assert_allclose(grad_q[i], fd, rtol=1e-7)  # measured: <= 2.5e-8
  for b in rng.choice(model.num_bodies, 6, replace=False):
    ds = np.zeros_like(s)
    ds[b, 1] = eps
    fd = (loss(q, s + ds) - loss(q, s - ds)) / (2 * eps)
    np.testing.assert_allclose(grad_s[b, 1], fd, rtol=1e-7)


@pytest.mark.float64  # finite differences, as above
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
                               rtol=3e-9)  # measured: <= 7.1e-10


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_any_leading_batch_shape(batch):
  model = _model()
  q = _random_pose(model, np.random.default_rng(2), batch).astype(np.float32)
  out = forward_kinematics(model, q)
  chex.assert_type(out.markers, np.float32)
  chex.assert_shape(out.markers, batch + (model.num_markers, 3))
  chex.assert_shape(out.joint_origins, batch + (model.num_joints, 3))
  chex.assert_shape(out.body_transforms, batch + (model.num_bodies, 4, 4))
  flat = forward_kinematics(model, q.reshape(-1, model.num_coordinates))
  np.testing.assert_array_equal(out.markers.reshape(-1, model.num_markers, 3), flat.markers)


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
  q = _random_pose(model, np.random.default_rng(12), (n,)).astype(np.float32)
  s = np.random.default_rng(13).uniform(0.9, 1.1, (n, model.num_bodies, 3)).astype(np.float32)
  whole = forward_kinematics(model, q, scales=s)
  parts = [forward_kinematics(model, q[i:i + 100], scales=s[i:i + 100]) for i in range(0, n, 100)]
  # Each pose's arithmetic does not depend on its batch (measured: identical); 2 float32
  # ulps at 1 m allow another CPU's instruction choice.
  for field in ("markers", "joint_origins", "body_transforms"):
    np.testing.assert_allclose(getattr(whole, field),
                               np.concatenate([getattr(p, field) for p in parts]), rtol=0,
                               atol=2.4e-7)


def test_accelerator_layout_gives_the_same_results():
  """Off CPU the scan is unrolled and the optimization barriers left out: same numbers,
  same gradients (the accelerator's form compiled here for CPU)."""
  model = load_osim(reference_file("models", "full_body_wo_hands.osim"))
  q = _random_pose(model, np.random.default_rng(5), (3,)).astype(np.float32)
  s = np.random.default_rng(6).uniform(0.9, 1.1, (3, model.num_bodies, 3)).astype(np.float32)

  def run(layout):  # compiled as one program (eagerly, every operation compiles apart)
    @jax.jit
    def both(q):
      out = forward_kinematics(model, q, scales=s, root_rotation=np.eye(3, dtype=np.float32),
                               layout=layout)
      grad = jax.grad(lambda q: jnp.sum(forward_kinematics(model, q, scales=s,
                                                           layout=layout).markers ** 2))(q)
      return out, grad
    return both(q)

  cpu, cpu_grad = run("cpu")
  accelerator, accelerator_grad = run("accelerator")
  # Without a layout, the form of the platform the program is compiled for.
  own = cpu if jax.default_backend() == "cpu" else accelerator
  np.testing.assert_array_equal(run(None)[0].markers, own.markers)
  # Another fusion order (measured: 2.4e-7 m, 1 float32 ulp at 2 m).
  for field in ("markers", "joint_origins", "body_transforms"):
    np.testing.assert_allclose(getattr(accelerator, field), getattr(cpu, field), rtol=0,
                               atol=5e-7)
  np.testing.assert_allclose(accelerator_grad, cpu_grad, rtol=1e-5, atol=1e-4)


def test_accelerator_gradient_scatters_once_per_row_selection():
  """Off CPU the 12 frame components are picked by one gather of their stack, so the
  gradient has one scatter (a kernel of its own on a GPU) per selection, not twelve."""
  model = _model()
  q = np.zeros((2, model.num_coordinates), np.float32)

  def scatters(layout):
    grad = jax.grad(lambda q: jnp.sum(forward_kinematics(
        model, q, np.ones((model.num_bodies, 3), np.float32), np.eye(3, dtype=np.float32),
        layout=layout).markers ** 2))
    return _count_primitives(jax.make_jaxpr(grad)(q).jaxpr, "scatter-add")

  assert 5 * scatters("accelerator") < scatters("cpu")  # measured: 6 against 50


def test_vmap_and_jit_agree_with_batched_call():
  model = _model()
  q = _random_pose(model, np.random.default_rng(3), (4,)).astype(np.float32)
  s = np.random.default_rng(4).uniform(0.9, 1.1, (4, model.num_bodies, 3)).astype(np.float32)
  batched = forward_kinematics(model, q, scales=s)
  mapped = jax.vmap(lambda q, s: forward_kinematics(model, q, scales=s))(q, s)
  jitted = jax.jit(forward_kinematics)(model, q, s)
  chex.assert_type([mapped.markers, jitted.markers], np.float32)
  # vmap lays the batch out differently (measured: 1.5e-8 m, 6e-8 on transforms).
  np.testing.assert_allclose(mapped.markers, batched.markers, rtol=0, atol=1e-7)
  np.testing.assert_allclose(mapped.body_transforms, batched.body_transforms, rtol=0, atol=2e-7)
  np.testing.assert_array_equal(jitted.markers, batched.markers)
  np.testing.assert_array_equal(jitted.body_transforms, batched.body_transforms)


def test_scales_broadcast_over_batch():
  model = _model()
  q = _random_pose(model, np.random.default_rng(5), (3,)).astype(np.float32)
  s = np.random.default_rng(6).uniform(0.9, 1.1, (model.num_bodies, 3)).astype(np.float32)
  shared = forward_kinematics(model, q, scales=s)
  each = forward_kinematics(model, q, scales=np.broadcast_to(s, (3,) + s.shape))
  np.testing.assert_array_equal(shared.markers, each.markers)


@pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=pytest.mark.float64)])
def test_output_dtype_follows_input(dtype):
  model = _model()
  out = forward_kinematics(model, _random_pose(model, np.random.default_rng(7)).astype(dtype))
  chex.assert_type([out.markers, out.joint_origins, out.body_transforms], dtype)


def test_float32_close_to_float64():
  model = _model()
  q = _random_pose(model, np.random.default_rng(8), (16,))
  out32 = forward_kinematics(model, q.astype(np.float32))
  with float64():
    out64 = jax.tree.map(np.asarray, forward_kinematics(model, q))
  chex.assert_type(out64.markers, np.float64)
  for field in ("markers", "joint_origins", "body_transforms"):  # measured: <= 2.8e-7
    np.testing.assert_allclose(getattr(out32, field), getattr(out64, field), rtol=0, atol=1e-6)


def _equations(jaxpr):
  """The equations of ``jaxpr`` and of the jaxprs inside it."""
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      inner = getattr(param, "jaxpr", param)
      if hasattr(inner, "eqns"):
        yield from _equations(inner)


def _count_primitives(jaxpr, name):
  """Equations of primitive ``name`` (any when None) in ``jaxpr`` and the jaxprs inside it."""
  return sum(name is None or eqn.primitive.name == name for eqn in _equations(jaxpr))


def _fk_jaxpr(model, layout="cpu"):
  q = np.zeros((2, model.num_coordinates), np.float32)
  return jax.make_jaxpr(lambda q: forward_kinematics(model, q, layout=layout))(q).jaxpr


@pytest.mark.parametrize("layout", ["cpu", "accelerator"])
def test_tree_is_composed_by_one_scan(layout):
  jaxpr = _fk_jaxpr(_model(), layout)
  assert _count_primitives(jaxpr, "scan") == 1  # inside the jitted function's jaxpr
  assert _count_primitives(jaxpr, "while") == 0


def test_operations_do_not_grow_with_joints():
  """The paper's model with hands has 112 joints, the one without 58, with the same kinds of
  joints, functions and constraints: the same number of operations computes both."""
  with_hands = load_osim(reference_file("models", "full_body.osim"))
  without = load_osim(reference_file("models", "full_body_wo_hands.osim"))
  assert with_hands.num_joints > 1.5 * without.num_joints
  assert _count_primitives(_fk_jaxpr(with_hands), None) == _count_primitives(
      _fk_jaxpr(without), None)


def test_root_rotation_gives_root_relative_positions():
  model = _model()
  rng = np.random.default_rng(10)
  q = _random_pose(model, rng, (3,)).astype(np.float32)
  rotation = np.asarray(rotvec_to_matrix(rng.normal(size=(3, 3))), np.float32)
  ground = jax.tree.map(lambda x: np.asarray(x, np.float64), forward_kinematics(model, q))
  relative = forward_kinematics(model, q, root_rotation=rotation)
  chex.assert_type(relative.markers, np.float32)
  root = ground.body_transforms[:, model.root_body]
  align = rotation @ np.swapaxes(root[:, :3, :3], 1, 2)
  expected = np.einsum("nij,nmj->nmi", align, ground.markers - root[:, None, :3, 3])
  # Measured: 2.6e-7 m on markers, 7.5e-8 on the rotation, 6e-8 m on the root's origin.
  np.testing.assert_allclose(relative.markers, expected, rtol=0, atol=1e-6)
  np.testing.assert_allclose(relative.body_transforms[:, model.root_body, :3, :3], rotation,
                             rtol=0, atol=3e-7)
  np.testing.assert_allclose(relative.body_transforms[:, model.root_body, :3, 3], 0,
                             atol=3e-7)


def test_locked_and_coupled_inputs_are_ignored():
  # The paper's model with hands has both locked coordinates and enforced couplers.
  model = load_osim(reference_file("models", "full_body.osim"))
  rng = np.random.default_rng(11)
  q = _random_pose(model, rng).astype(np.float32)
  ignored = [d for d, _ in model.couplers] + list(np.nonzero(model.coordinate_locked)[0])
  assert len(ignored) > 20
  changed = q.copy()
  changed[ignored] += 0.3
  np.testing.assert_array_equal(forward_kinematics(model, changed).markers,
                                forward_kinematics(model, q).markers)


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
