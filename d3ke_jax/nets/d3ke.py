"""D3KE: the per-frame network (ResNeXt + kinematic head) and the temporal network (a
sequence net over per-frame estimates), each followed by the skeletal-model layer; and the
multi-step baseline's network (ResNeXt + marker head).

The per-frame networks take images in [0, 1] and normalise them per channel,
``(image - mean) / std``, as ``INPUT_NORMALISATIONS`` names: "imagenet" is torchvision's
(what ImageNet weights expect), "centred" maps [0, 1] to [-0.5, 0.5] (runs from before
ImageNet initialisation).
"""

from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from d3ke_jax.nets import heads
from d3ke_jax.nets import uncertainty as uncertainty_lib
from d3ke_jax.nets.resnext import ResNeXt
from d3ke_jax.nets.sequence import SEQUENCE_NETWORKS
from d3ke_jax.nets.uncertainty import UNCERTAINTY, Uncertainty, UncertaintyHead
from d3ke_jax.skeleton.kinematics import forward_kinematics
from d3ke_jax.skeleton.subset import PredictionLayout, expand_coordinates, expand_scales


INPUT_NORMALISATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "centred": ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
}


def images_from_batch(batch):
  """The per-frame network's input: images scaled to [0, 1] (the network normalises them)."""
  return batch["image"].astype(jnp.float32) / 255.0


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


def _backbone_features(network, images, train, return_stages=False):
  """Features of images in [0, 1] from a ResNeXt ``backbone`` submodule of ``network`` (a
  per-frame network, inside its compact ``__call__``), after its input normalisation (and
  with ``return_stages``, each stage's feature map)."""
  if network.normalisation not in INPUT_NORMALISATIONS:
    raise ValueError(f"unknown input normalisation {network.normalisation!r}; choose from "
                     f"{sorted(INPUT_NORMALISATIONS)}")
  mean, std = INPUT_NORMALISATIONS[network.normalisation]
  images = (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
  return ResNeXt(stage_sizes=network.stage_sizes, groups=network.groups,
                 width_per_group=network.width_per_group, dtype=network.dtype,
                 axis_name=network.axis_name, name="backbone")(images, train=train,
                                                               return_stages=return_stages)


BOX = "box"  # the name under which a box head's output is sown (collection "intermediates")


class PerFrameD3KE(nn.Module):
  """Images (N, H, W, 3) in [0, 1] -> ``Kinematics`` (the skeletal layer is applied by the
  caller). With ``box_head``, the person's box in each crop (``heads.BoxHead``) is sown as
  ``intermediates/box``; it reads the third stage's feature map (stride 16). With
  ``uncertainty_head``, the Laplace scales of the kinematics' errors
  (``uncertainty.UncertaintyHead``) are sown as ``intermediates/uncertainty``; it reads the
  backbone's features. Both read without training what they read (stop_gradient), so
  D3KE's objective and its backbone are the paper's."""
  bounds: heads.Bounds
  stage_sizes: Any = (3, 4, 6, 3)
  groups: int = 32
  width_per_group: int = 4
  head_hidden: int = 0
  dtype: Any = jnp.float32
  axis_name: Any = None  # pmap axis for BatchNorm statistics in training
  normalisation: str = "imagenet"  # a key of INPUT_NORMALISATIONS
  box_head: bool = False
  uncertainty_head: bool = False

  @nn.compact
  def __call__(self, images, train=False):
    features = _backbone_features(self, images, train, return_stages=self.box_head)
    if self.box_head:
      features, stages = features
      box = heads.BoxHead(name="box_head")(jax.lax.stop_gradient(stages[-2]))
      self.sow("intermediates", BOX, box)
    if self.uncertainty_head:
      head = UncertaintyHead(len(self.bounds.coordinate_low), len(self.bounds.scale_centre),
                             name="uncertainty_head")
      self.sow("intermediates", UNCERTAINTY, head(jax.lax.stop_gradient(features)))
    return heads.KinematicHead(self.bounds, hidden=self.head_hidden, name="head")(features)


class PerFrameMarkers(nn.Module):
  """The multi-step baseline's network: images (N, H, W, 3) in [0, 1] -> root-relative
  markers (N, M, 3) in the camera's orientation, with D3KE's backbone."""
  template: Any  # (M, 3), ``heads.marker_template``
  stage_sizes: Any = (3, 4, 6, 3)
  groups: int = 32
  width_per_group: int = 4
  head_hidden: int = 0
  dtype: Any = jnp.float32
  axis_name: Any = None
  normalisation: str = "imagenet"

  @nn.compact
  def __call__(self, images, train=False):
    features = _backbone_features(self, images, train)
    return heads.MarkerHead(self.template, hidden=self.head_hidden, name="head")(features)


class Estimates(NamedTuple):
  """The sequence network's input: a window of stage 1's per-frame ``Kinematics`` and, from
  a per-frame network with an uncertainty head, its (uncalibrated) ``Uncertainty``."""
  kinematics: heads.Kinematics
  uncertainty: Optional[Uncertainty] = None


def uncertainty_features(uncertainty: Uncertainty):
  """(..., P + 3 G + 1) the sequence network's uncertainty channels: log(b / INITIAL) of
  stage 1's raw scales b. Raw, not calibrated: b is a function of the stage-1 checkpoint
  alone (what stage 2's cache is keyed by), while its calibration may be fitted again, and
  a temperature, a constant factor per output, is a constant offset of the log that the
  first layer absorbs. The log, as scales span orders of magnitude; relative to
  ``uncertainty.INITIAL``, so an untrained head's scales give zeros."""
  b = uncertainty_lib.flatten(uncertainty)
  start = uncertainty_lib.initial(uncertainty.coords.shape[-1], uncertainty.scales.shape[-2])
  return jnp.log(b.astype(jnp.float32) / jnp.asarray(start, jnp.float32))


class TemporalD3KE(nn.Module):
  """A window of ``Estimates`` (B, T, ...) -> refined ``Kinematics``. With
  ``uncertainty_input``, stage 1's scales (``uncertainty_features``) are input channels
  beside the kinematics (the residual update refines the kinematics alone). With
  ``uncertainty_head``, the Laplace scales of the refined kinematics' errors are sown as
  ``intermediates/uncertainty``, from the sequence network's features through a
  stop_gradient, as ``PerFrameD3KE`` does."""
  bounds: heads.Bounds
  network: str = "transformer"
  options: Any = ()  # (name, value) pairs passed to the sequence network
  uncertainty_input: bool = False
  uncertainty_head: bool = False

  @nn.compact
  def __call__(self, estimates: Estimates, train=False):
    if self.network not in SEQUENCE_NETWORKS:
      raise ValueError(f"unknown sequence network {self.network!r}; "
                       f"choose from {sorted(SEQUENCE_NETWORKS)}")
    features = heads.flatten(*heads.encode(self.bounds, estimates.kinematics)).astype(
        jnp.float32)
    size = features.shape[-1]
    if self.uncertainty_input:
      if estimates.uncertainty is None:
        raise ValueError("TemporalD3KE(uncertainty_input=True): the estimates have no "
                         "uncertainty")
      features = jnp.concatenate([features, uncertainty_features(estimates.uncertainty)], -1)
    refined, hidden = SEQUENCE_NETWORKS[self.network](**dict(self.options), outputs=size,
                                                      name="sequence")(features, train=train)
    if self.uncertainty_head:
      head = UncertaintyHead(len(self.bounds.coordinate_low), len(self.bounds.scale_centre),
                             name="uncertainty_head")
      self.sow("intermediates", UNCERTAINTY, head(jax.lax.stop_gradient(hidden)))
    return heads.decode(self.bounds, *heads.unflatten(self.bounds, refined))
