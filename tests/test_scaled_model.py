"""Body scales relative to the model, with a subject model whose own scale factors are not 1
(the paper's full_body_wo_hands.osim: per-body factors 0.65-1.26): the loss is zero at the
true labels and the body metrics measure the scale error in the model's millimetres."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import skeletal_layer
from d3ke_jax.skeleton import forward_kinematics, load_osim, make_layout
from d3ke_jax.skeleton.rotations import rotvec_to_matrix
from d3ke_jax.skeleton.sampling import random_poses
from d3ke_jax.skeleton.subset import expand_scales
from d3ke_jax.train import metrics
from d3ke_jax.train import stage as stages
from d3ke_jax.train.losses import d3ke_loss
from d3ke_jax.train.step import targets_from_batch
from conftest import reference_file

FRAMES = 3


@functools.lru_cache(maxsize=None)
def _scaled_model():
  model = load_osim(reference_file("models", "full_body_wo_hands.osim"))
  assert np.ptp(model.default_scales) > 0.5  # a subject model: its own factors far from 1
  return model, make_layout(model, include_root=False)


def _labels(model, layout):
  """Records as the dataset stores them (float32, camera frame), from scales relative to
  the model, and the same kinematics as the network's output."""
  rng = np.random.default_rng(0)
  coords = random_poses(model, FRAMES, rng, limit=0.5).astype(np.float32)
  groups = rng.uniform(0.85, 1.15, (FRAMES, layout.num_scale_groups, 3)).astype(np.float32)
  scales = np.asarray(expand_scales(model, layout, groups))
  rotation = np.asarray(heads.FACING_CAMERA) @ rotvec_to_matrix(rng.normal(size=(FRAMES, 3)) * 0.3)
  rotation = rotation.astype(np.float32)
  out = forward_kinematics(model, jnp.asarray(coords), scales=scales, root_rotation=rotation)
  records = {"coordinates": coords, "scales": scales, "joints": np.asarray(out.joint_origins),
             "markers": np.asarray(out.markers), "frame_valid": np.ones(FRAMES, bool),
             "coordinate_valid": np.ones((FRAMES, model.num_coordinates), bool)}
  kinematics = heads.Kinematics(jnp.asarray(coords[:, np.array(layout.coordinates)]),
                                jnp.asarray(groups), jnp.asarray(rotation))
  return records, kinematics


def test_loss_is_zero_at_the_true_labels_of_a_scaled_model():
  model, layout = _scaled_model()
  records, kinematics = _labels(model, layout)
  batch = {k: jnp.asarray(v) for k, v in records.items()}
  _, terms = d3ke_loss(kinematics, skeletal_layer(model, layout, kinematics),
                       targets_from_batch(batch, layout), root_joint=model.root_joint)
  for name, value in terms.items():
    assert float(value) < 2e-6, (name, float(value))  # float32 FK round-off, metres
  # A 10 % larger pelvis group moves the pose and costs exactly 0.1 in L_body's sum.
  bigger = kinematics._replace(scales=kinematics.scales.at[:, 0].multiply(1.1))
  _, terms = d3ke_loss(bigger, skeletal_layer(model, layout, bigger),
                       targets_from_batch(batch, layout), root_joint=model.root_joint)
  assert float(terms["joint"]) > 1e-4
  expected = 0.1 * float(jnp.mean(kinematics.scales[:, 0])) / layout.num_scale_groups
  assert float(terms["body"]) == pytest.approx(expected, rel=1e-4)


def test_head_starts_at_the_models_own_size():
  model, layout = _scaled_model()
  bounds = heads.bounds_for(model, layout)
  p = len(bounds.coordinate_low)
  start = heads.decode(bounds, jnp.zeros(p), jnp.zeros((layout.num_scale_groups, 3)),
                       jnp.zeros(6))
  np.testing.assert_array_equal(start.scales, 1.0)
  pose = skeletal_layer(model, layout, start)
  coords = np.array(model.coordinate_defaults, np.float32)
  coords[np.array(layout.coordinates)] = start.coords
  unscaled = forward_kinematics(model, jnp.asarray(coords), root_rotation=start.rotation)
  np.testing.assert_allclose(pose.markers, unscaled.markers, atol=1e-6)


def test_body_metrics_of_a_scaled_model():
  model, layout = _scaled_model()
  records, kinematics = _labels(model, layout)
  truth = dict(records, subject=np.zeros(FRAMES, int), clip=np.zeros(FRAMES, int),
               frame=np.arange(FRAMES), movement=np.array(["m"] * FRAMES),
               view=np.array(["v"] * FRAMES))
  predicted = {"coords": np.asarray(kinematics.coords), "scales": np.asarray(kinematics.scales),
               "joints": records["joints"], "markers": records["markers"], "loss": 0.0}
  exact = stages.frame_metrics(model, layout, predicted, truth, rate=30.0)
  assert exact["mae_body"] == pytest.approx(0.0, abs=1e-3)
  assert exact["mpblpe"] == pytest.approx(0.0, abs=1e-3) and exact["mae_angle"] < 1e-4
  report = stages.predictions(model, layout, predicted, truth)
  np.testing.assert_allclose(report.true_scales, records["scales"])
  assert metrics.rmse_body(report.pred_scales, report.true_scales) < 1e-6
  # Femurs 10 % too long along their longest axis: 10 % of each femur's length in mm.
  axis, extent = metrics.body_extents(model)
  femurs = [model.body_index("femur_r"), model.body_index("femur_l")]
  assert all(axis[f] == 1 and 0.3 < extent[f] < 0.5 for f in femurs)
  group = [g for g, members in enumerate(layout.body_groups) if femurs[0] in members][0]
  longer = np.array(predicted["scales"])
  longer[:, group, 1] *= 1.1
  off = stages.frame_metrics(model, layout, dict(predicted, scales=longer), truth, rate=30.0)
  expected = 100 * np.mean(records["scales"][:, femurs, 1] * extent[femurs], 0).sum()
  assert off["mae_body"] == pytest.approx(expected / model.num_bodies, rel=1e-4)
