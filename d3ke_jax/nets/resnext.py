"""ResNeXt backbone (Xie et al. 2017) in Flax Linen, laid out like torchvision's.

``ResNeXt()`` is ResNeXt-50 (32x4d); ``ResNeXt(stage_sizes=(1, 1, 1, 1), ...)`` is a tiny
variant for tests and CPU runs. Submodule names follow torchvision's state-dict keys
(``layer1_0/conv2`` for ``layer1.0.conv2``) so ``load_torchvision_state_dict`` can map
ImageNet weights onto the parameters one to one.
"""

import functools
from typing import Any, Mapping, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# torchvision's BatchNorm: eps 1e-5, running statistics updated with momentum 0.1.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)

# XLA:CPU computes a grouped convolution as slowly as a dense one of all its channels; on CPU
# it is cut into slices of this many channels (or one group, if wider), each a dense
# convolution with the block-diagonal kernel of the groups in it (the fastest slice width
# found; docs/networks.md).
CPU_SLICE_CHANNELS = 16


class GroupedConv(nn.Module):
  """A grouped convolution with ``nn.Conv``'s parameter (``kernel``: (kh, kw, in / groups,
  out), same initialiser), computed in the form that is fastest on the backend: XLA's
  grouped convolution on accelerators; on CPU, see ``CPU_SLICE_CHANNELS``."""
  features: int
  kernel_size: Tuple[int, int]
  strides: int
  padding: Any
  groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        tuple(self.kernel_size) + (x.shape[-1] // self.groups, self.features))
    x, kernel = jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype)
    options = (self.strides, self.padding, self.groups)
    return jax.lax.platform_dependent(  # chosen where the program is compiled
        x, kernel, cpu=lambda x, kernel: sliced_grouped_conv(x, kernel, *options),
        default=lambda x, kernel: _conv(x, kernel, *options))


def _conv(x, kernel, strides, padding, groups):
  return jax.lax.conv_general_dilated(x, kernel, (strides, strides), padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=groups)


def block_diagonal(kernel, groups):
  """The dense (kh, kw, in, out) kernel equal to a grouped (kh, kw, in / groups, out) one."""
  kh, kw, width, out = kernel.shape
  blocks = kernel.reshape(kh, kw, 1, width, groups, out // groups)
  mask = jnp.eye(groups, dtype=kernel.dtype)[:, None, :, None]
  return (blocks * mask).reshape(kh, kw, groups * width, out)


def groups_per_slice(groups, group_width):
  """The most groups, dividing ``groups``, whose input channels fit one CPU slice."""
  fit = max(1, CPU_SLICE_CHANNELS // group_width)
  return max(d for d in range(1, min(groups, fit) + 1) if groups % d == 0)


def sliced_grouped_conv(x, kernel, strides, padding, groups):
  """The grouped convolution as dense convolutions of channel slices (``CPU_SLICE_CHANNELS``),
  each with the block-diagonal kernel of its groups; concatenated, they are the layer. The
  slices stay separate operations: XLA:CPU would expand one grouped operation over them to
  a dense convolution of all channels again."""
  per_slice = groups_per_slice(groups, kernel.shape[2])
  slices = groups // per_slice
  return jnp.concatenate([
      _conv(part, block_diagonal(weights, per_slice), strides, padding, 1)
      for part, weights in zip(jnp.split(x, slices, axis=-1), jnp.split(kernel, slices, -1))
  ], axis=-1)


class PointwiseConv(nn.Module):
  """A 1x1 convolution with ``nn.Conv``'s parameter (``kernel``: (1, 1, in, out), same
  initialiser) and "SAME" padding, computed as a matrix product over the channels, which
  XLA:CPU runs faster than its convolution."""
  features: int
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (1, 1, x.shape[-1], self.features))
    x, kernel = jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype)
    return x[:, ::self.strides, ::self.strides] @ kernel[0, 0]


class Bottleneck(nn.Module):
  """1x1 -> grouped 3x3 (stride) -> 1x1 (x4 channels), with a projection shortcut."""
  planes: int
  stride: int
  groups: int
  width_per_group: int
  dtype: Any = jnp.float32
  axis_name: Any = None

  @nn.compact
  def __call__(self, x, train):
    width = int(self.planes * (self.width_per_group / 64.0)) * self.groups
    conv = functools.partial(PointwiseConv, dtype=self.dtype)
    norm = functools.partial(BatchNorm, use_running_average=not train, dtype=self.dtype,
                             axis_name=self.axis_name if train else None)
    out = nn.relu(norm(name="bn1")(conv(width, name="conv1")(x)))
    out = GroupedConv(width, (3, 3), self.stride, ((1, 1), (1, 1)), self.groups,
                      dtype=self.dtype, name="conv2")(out)
    out = nn.relu(norm(name="bn2")(out))
    out = norm(name="bn3")(conv(self.planes * 4, name="conv3")(out))
    if self.stride != 1 or x.shape[-1] != self.planes * 4:
      x = conv(self.planes * 4, strides=self.stride, name="downsample_0")(x)
      x = norm(name="downsample_1")(x)
    return nn.relu(out + x)


class ResNeXt(nn.Module):
  """Images (N, H, W, 3) -> features (N, 2048), or logits when ``num_classes`` is set.

  Attributes:
    stage_sizes: bottleneck blocks per stage ((3, 4, 6, 3) is ResNeXt-50).
    groups: cardinality. width_per_group: channels per group at the first stage.
    num_classes: size of the classifier (torchvision's ``fc``); 0 returns pooled features.
    dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters stay float32.
    axis_name: pmap axis over which training-mode BatchNorm averages its statistics, so
      N devices normalise like one device with the whole batch.
  """
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  groups: int = 32
  width_per_group: int = 4
  num_classes: int = 0
  dtype: Any = jnp.float32
  axis_name: Any = None

  @nn.compact
  def __call__(self, x, train=False, return_stages=False):
    x = jnp.asarray(x, self.dtype)
    x = nn.Conv(64, (7, 7), strides=2, padding=((3, 3), (3, 3)), use_bias=False,
                dtype=self.dtype, name="conv1")(x)
    x = nn.relu(BatchNorm(use_running_average=not train, dtype=self.dtype,
                          axis_name=self.axis_name if train else None, name="bn1")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    stages = []
    for i, blocks in enumerate(self.stage_sizes):
      for j in range(blocks):
        x = Bottleneck(planes=64 * 2**i, stride=2 if i > 0 and j == 0 else 1,
                       groups=self.groups, width_per_group=self.width_per_group,
                       dtype=self.dtype, axis_name=self.axis_name,
                       name=f"layer{i + 1}_{j}")(x, train)
      stages.append(x)
    out = jnp.mean(x, axis=(1, 2))
    if self.num_classes:
      out = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(out)
    out = jnp.asarray(out, jnp.float32)
    return (out, tuple(stages)) if return_stages else out


def load_torchvision_state_dict(state_dict: Mapping[str, Any], variables=None):
  """Flax variables ({"params", "batch_stats"}) from a torchvision ResNet/ResNeXt state dict.

  Args:
    state_dict: name -> array (torch tensors or NumPy arrays), e.g. from
      ``torch.load("resnext50_32x4d.pth")``.
    variables: optional initialised variables to check shapes against; every parameter
      must be covered and match.

  Raises:
    ValueError: a key has no place in the Flax model, or a shape does not match.
  """
  params, stats = {}, {}
  for key, value in state_dict.items():
    array = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    *path, leaf = key.split(".")
    module = _module_path(path)
    if leaf == "num_batches_tracked":
      continue
    if array.ndim == 4:  # conv: (out, in / groups, kh, kw) -> (kh, kw, in / groups, out)
      _put(params, module + ["kernel"], array.transpose(2, 3, 1, 0))
    elif module[-1] == "fc":
      _put(params, module + [{"weight": "kernel", "bias": "bias"}[leaf]],
           array.T if leaf == "weight" else array)
    elif leaf in ("weight", "bias"):
      _put(params, module + [{"weight": "scale", "bias": "bias"}[leaf]], array)
    elif leaf in ("running_mean", "running_var"):
      _put(stats, module + [{"running_mean": "mean", "running_var": "var"}[leaf]], array)
    else:
      raise ValueError(f"state dict key {key!r} has no place in the Flax ResNeXt")
  converted = {"params": params, "batch_stats": stats}
  if variables is not None:
    _check_same_tree(converted, variables)
  return converted


def _module_path(path):
  """torchvision module names -> Flax names: layer1.0.downsample.1 -> layer1_0/downsample_1."""
  out, i = [], 0
  while i < len(path):
    if path[i].startswith("layer") or path[i] == "downsample":
      out.append(f"{path[i]}_{path[i + 1]}")
      i += 2
    else:
      out.append(path[i])
      i += 1
  return out


def _put(tree, path, value):
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def _check_same_tree(converted, variables, prefix=""):
  for name in set(converted) | set(variables):
    where = f"{prefix}/{name}"
    if name not in converted or name not in variables:
      raise ValueError(f"{where}: present in only one of the state dict and the Flax model")
    a, b = converted[name], variables[name]
    if isinstance(b, Mapping):
      _check_same_tree(a, b, where)
    elif np.shape(a) != np.shape(b):
      raise ValueError(f"{where}: shape {np.shape(a)} in the state dict, {np.shape(b)} in Flax")
