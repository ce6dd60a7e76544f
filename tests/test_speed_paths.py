"""The fast paths give the same numbers as the plain ones: the model's device copy, the
chunked FK gradient (each chunk's forward pass recomputed) against unchunked batches, and
ResNeXt's grouped convolution (sliced on CPU) against XLA's grouped convolution, and its
1x1 convolutions (matrix products) against ``nn.Conv``."""

import gc

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax.nets.resnext import (GroupedConv, PointwiseConv, groups_per_slice,
                                   sliced_grouped_conv)
from d3ke_jax.skeleton import forward_kinematics, load_osim
from d3ke_jax.skeleton import kinematics
from conftest import float64


@pytest.fixture(scope="module")
def model():
  return load_osim()


def _poses(model, n, seed):
  low, high = np.asarray(model.coordinate_ranges).T
  rng = np.random.default_rng(seed)
  return rng.uniform(np.maximum(low, -1), np.minimum(high, 1), (n, model.num_coordinates))


def test_device_copy_is_made_once_per_model_and_precision(model):
  copy = kinematics.on_device(model)
  assert kinematics.on_device(model) is copy
  assert kinematics.on_device(copy) is copy  # already on the device
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(copy))
  assert copy.axes.dtype == np.float32  # as jnp.asarray makes it without 64-bit mode
  with float64():
    assert kinematics.on_device(model).axes.dtype == np.float64
  other = load_osim()
  key = (id(other), False)
  kinematics.on_device(other)
  assert key in kinematics._DEVICE_COPIES  # pylint: disable=protected-access
  del other
  gc.collect()
  assert key not in kinematics._DEVICE_COPIES  # pylint: disable=protected-access


def test_first_call_under_jit_leaves_no_tracer_behind():
  model = load_osim()  # a fresh object: no device copy yet
  q = _poses(model, 3, 0).astype(np.float32)
  traced = jax.jit(lambda q: forward_kinematics(model, q).markers)(q)
  eager = forward_kinematics(model, q).markers  # raised UnexpectedTracerError once
  np.testing.assert_array_equal(traced, eager)


def test_chunked_gradient_matches_unchunked(model, monkeypatch):
  monkeypatch.setattr(kinematics, "CPU_CHUNK", 8)
  jax.clear_caches()
  n = 21  # three chunks, the last one padded
  q = jnp.asarray(_poses(model, n, 1), jnp.float32)
  s = jnp.asarray(np.random.default_rng(2).uniform(0.9, 1.1, (n, model.num_bodies, 3)),
                  jnp.float32)
  w = jnp.asarray(np.random.default_rng(3).normal(size=(n, model.num_markers, 3)), jnp.float32)

  def loss(q, s, w):
    out = forward_kinematics(model, q, scales=s)
    return jnp.sum(out.markers * w) + jnp.sum(out.joint_origins ** 2)

  grad = jax.grad(loss, argnums=(0, 1))
  whole = grad(q, s, w)
  parts = [grad(q[i:i + 7], s[i:i + 7], w[i:i + 7]) for i in range(0, n, 7)]  # one chunk each
  jax.clear_caches()
  for got, pieces in zip(whole, zip(*parts)):
    expected = np.concatenate(pieces)
    # The same arithmetic per pose (measured: identical); float32 ulps of the largest
    # gradient allow another CPU's instruction choice.
    np.testing.assert_allclose(got, expected, rtol=0, atol=4 * np.finfo(np.float32).eps *
                               np.max(np.abs(expected)))


def test_groups_per_slice_fill_16_channels_and_divide_the_groups():
  assert [groups_per_slice(32, width) for width in (2, 4, 8, 16, 32)] == [8, 4, 2, 1, 1]
  assert groups_per_slice(6, 2) == 6 and groups_per_slice(6, 4) == 3  # 12 of 16 channels


# The CPU form: two slices of four groups, four slices of two groups, eight slices of one
# group (``GroupedConv`` itself runs the form of the platform it is compiled for).
@pytest.mark.parametrize("group_width", [4, 8, 32])
def test_grouped_conv_matches_xla_grouped_convolution(group_width):
  groups, stride, padding = 8, 2, ((1, 1), (1, 1))
  rng = np.random.default_rng(group_width)
  x = jnp.asarray(rng.normal(size=(2, 9, 9, groups * group_width)), jnp.float32)
  conv = GroupedConv(groups * 8, (3, 3), stride, padding, groups)
  variables = conv.init(jax.random.PRNGKey(0), x)
  kernel = variables["params"]["kernel"]
  assert kernel.shape == (3, 3, group_width, groups * 8)  # nn.Conv's parameter
  reference = nn.Conv(groups * 8, (3, 3), stride, padding, feature_group_count=groups,
                      use_bias=False)
  np.testing.assert_array_equal(kernel, reference.init(jax.random.PRNGKey(0), x)["params"][
      "kernel"])  # the same initialiser
  w = jnp.asarray(rng.normal(size=(2, 5, 5, groups * 8)), jnp.float32)
  loss = lambda apply: jax.grad(lambda x, k: jnp.sum(apply({"params": {"kernel": k}}, x) * w),
                                argnums=(0, 1))
  sliced = lambda variables, x: sliced_grouped_conv(x, variables["params"]["kernel"], stride,
                                                     padding, groups)
  expected = (reference.apply(variables, x),) + loss(reference.apply)(x, kernel)
  for apply in (conv.apply, sliced):
    got = (apply(variables, x),) + loss(apply)(x, kernel)
    # Sums of the same products in another order (measured: <= 3e-7 relative).
    for a, b in zip(got, expected):
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.max(np.abs(b)))


@pytest.mark.parametrize("stride, size", [(1, 8), (2, 8), (2, 7)])
def test_pointwise_conv_matches_nn_conv(stride, size):
  rng = np.random.default_rng(size)
  x = jnp.asarray(rng.normal(size=(2, size, size, 24)), jnp.float32)
  conv = PointwiseConv(40, strides=stride)
  variables = conv.init(jax.random.PRNGKey(0), x)
  reference = nn.Conv(40, (1, 1), strides=stride, use_bias=False)
  kernel = variables["params"]["kernel"]
  np.testing.assert_array_equal(kernel, reference.init(jax.random.PRNGKey(0), x)["params"][
      "kernel"])  # the same parameter and initialiser
  out = conv.apply(variables, x)
  w = jnp.asarray(rng.normal(size=out.shape), jnp.float32)
  loss = lambda apply: jax.grad(lambda x, k: jnp.sum(apply({"params": {"kernel": k}}, x) * w),
                                argnums=(0, 1))
  got = (out,) + loss(conv.apply)(x, kernel)
  expected = (reference.apply(variables, x),) + loss(reference.apply)(x, kernel)
  for a, b in zip(got, expected):  # sums of the same products in another order
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.max(np.abs(b)))
