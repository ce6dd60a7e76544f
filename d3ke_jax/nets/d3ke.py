"""D3KE: the per-frame network (ResNeXt + kinematic head) and the temporal network (a
sequence net over per-frame estimates), each followed by the skeletal-model layer."""

from typing import Any, NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from d3ke_jax.nets import heads
from d3ke_jax.nets.resnext import ResNeXt
from d3ke_jax.nets.sequence import SEQUENCE_NETWORKS
from d3ke_jax.skeleton.kinematics import forward_kinematics
from d3ke_jax.skeleton.subset import PredictionLayout, expand_coordinates, expand_scales


class Pose(NamedTuple):
  """The skeletal-model layer's output: root-relative positions in the camera's orientation."""
  joints: jnp.ndarray  # (..., J, 3)
  markers: jnp.ndarray  # (..., M, 3)


def skeletal_layer(model, layout: PredictionLayout, kinematics: heads.Kinematics):
  """FK of predicted kinematics (scales relative to the model; bodies outside the layout
  keep the model's size), the root rotated as the predicted pelvis."""
  coords = expand_coordinates(model, layout, kinematics.coords)
  scales = expand_scales(model, layout, kinematics.scales)
  out = forward_kinematics(model, coords, scales=scales, root_rotation=kinematics.rotation)
  return Pose(joints=out.joint_origins, markers=out.markers)


class PerFrameD3KE(nn.Module):
  """Images (N, H, W, 3) -> ``Kinematics`` (the skeletal layer is applied by the caller)."""
  bounds: heads.Bounds
  stage_sizes: Any = (3, 4, 6, 3)
  groups: int = 32
  width_per_group: int = 4
  head_hidden: int = 0
  dtype: Any = jnp.float32
  axis_name: Any = None  # pmap axis for BatchNorm statistics in training

  @nn.compact
  def __call__(self, images, train=False):
    features = ResNeXt(stage_sizes=self.stage_sizes, groups=self.groups,
                       width_per_group=self.width_per_group, dtype=self.dtype,
                       axis_name=self.axis_name, name="backbone")(images, train=train)
    return heads.KinematicHead(self.bounds, hidden=self.head_hidden, name="head")(features)


class TemporalD3KE(nn.Module):
  """A window of per-frame ``Kinematics`` (B, T, ...) -> refined ``Kinematics``."""
  bounds: heads.Bounds
  network: str = "transformer"
  options: Any = ()  # (name, value) pairs passed to the sequence network

  @nn.compact
  def __call__(self, kinematics: heads.Kinematics, train=False):
    if self.network not in SEQUENCE_NETWORKS:
      raise ValueError(f"unknown sequence network {self.network!r}; "
                       f"choose from {sorted(SEQUENCE_NETWORKS)}")
    features = heads.flatten(*heads.encode(self.bounds, kinematics)).astype(jnp.float32)
    refined = SEQUENCE_NETWORKS[self.network](**dict(self.options), name="sequence")(
        features, train=train)
    return heads.decode(self.bounds, *heads.unflatten(self.bounds, refined))
