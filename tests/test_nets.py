"""Heads, sequence networks, the skeletal layer and the D3KE loss, in float32 as trained.

Tolerances are the measured float32 errors times 2-5, or exact where the arithmetic is."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import Estimates, PerFrameD3KE, TemporalD3KE, skeletal_layer
from d3ke_jax.nets.sequence import TCN, BiLSTM, LiftingTransformer
from d3ke_jax.skeleton import forward_kinematics, load_osim, make_layout
from d3ke_jax.skeleton.rotations import rotvec_to_matrix, sixd_to_matrix
from d3ke_jax.skeleton.sampling import random_poses
from d3ke_jax.train.losses import Targets, d3ke_loss


@functools.lru_cache(maxsize=None)
def _setup():
  model = load_osim()
  layout = make_layout(model, include_root=False)
  return model, layout, heads.bounds_for(model, layout)


def test_head_outputs_are_valid_for_extreme_features():
  _, _, bounds = _setup()
  head = heads.KinematicHead(bounds, hidden=16)
  features = jnp.concatenate([jnp.full((1, 32), 1e6), jnp.full((1, 32), -1e6),
                              jax.random.normal(jax.random.PRNGKey(0), (3, 32)) * 100])
  params = head.init(jax.random.PRNGKey(1), features)
  params = jax.tree.map(lambda p: p * 1e3, params)  # saturate every output
  out = head.apply(params, features)
  chex.assert_type([out.coords, out.scales, out.rotation], jnp.float32)
  # The output layer's logits, by hand: each is far from 0, so its output is at a bound.
  layers = {name: jax.tree.map(lambda x: np.asarray(x, np.float64), layer)
            for name, layer in params["params"].items()}
  hidden = np.maximum(np.asarray(features, np.float64) @ layers["hidden"]["kernel"]
                      + layers["hidden"]["bias"], 0)
  logits = hidden @ layers["out"]["kernel"] + layers["out"]["bias"]
  coordinate_logits, scale_logits, _ = heads.unflatten(bounds, logits)
  assert np.abs(coordinate_logits).min() > 100 and np.abs(scale_logits).min() > 100
  low, high = np.array(bounds.coordinate_low), np.array(bounds.coordinate_high)
  # Measured: 1.2e-7 (coordinates), 4.8e-8 (scales), 3e-7 (rotation).
  np.testing.assert_allclose(out.coords, np.where(coordinate_logits > 0, high, low), rtol=0,
                             atol=5e-7)
  np.testing.assert_allclose(out.scales, np.asarray(bounds.scale_centre) * (
      1 + bounds.scale_band * np.sign(scale_logits)), rtol=0, atol=2e-7)
  np.testing.assert_allclose(np.linalg.det(out.rotation), 1.0, atol=1e-6)
  np.testing.assert_allclose(out.rotation @ np.swapaxes(out.rotation, -1, -2),
                             np.broadcast_to(np.eye(3), out.rotation.shape), atol=1e-6)


def test_encode_inverts_decode():
  _, _, bounds = _setup()
  rng = np.random.default_rng(0)
  p, g = len(bounds.coordinate_low), len(bounds.scale_centre)
  raw = (rng.normal(size=(2, p)), rng.normal(size=(2, g, 3)) * 0.5, rng.normal(size=(2, 6)) * 0.1)
  kin = heads.decode(bounds, *(np.asarray(x, np.float32) for x in raw))
  again = heads.decode(bounds, *heads.encode(bounds, kin))
  chex.assert_type([*kin, *again], jnp.float32)
  for a, b in zip(kin, again):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # measured: <= 2.4e-7


def test_zero_logits_decode_to_the_default_pose():
  model, layout, bounds = _setup()
  p, g = len(bounds.coordinate_low), len(bounds.scale_centre)
  kin = heads.decode(bounds, jnp.zeros(p), jnp.zeros((g, 3)), jnp.zeros(6))
  chex.assert_type([kin.coords, kin.scales, kin.rotation], jnp.float32)
  defaults = np.asarray(model.coordinate_defaults)[np.array(layout.coordinates)]
  # All defaults inside their ranges; measured: 2.4e-7.
  np.testing.assert_allclose(kin.coords, defaults, rtol=0, atol=1e-6)
  np.testing.assert_array_equal(kin.scales, np.asarray(bounds.scale_centre, np.float32))
  # Upright and facing the camera: the pelvis's up axis (y) points up the image (-y).
  np.testing.assert_array_equal(kin.rotation @ np.array([0.0, 1.0, 0.0]), [0.0, -1.0, 0.0])
  np.testing.assert_array_equal(kin.rotation, heads.FACING_CAMERA)


def _targets(model, layout, coords, scales, rotation):
  kin = heads.Kinematics(coords, scales, rotation)
  pose = skeletal_layer(model, layout, kin)
  n = coords.shape[0]
  return kin, Targets(coords=coords, scales=scales, joints=pose.joints, markers=pose.markers,
                      frame_mask=jnp.ones(n), coordinate_mask=jnp.ones_like(coords),
                      marker_mask=jnp.ones(pose.markers.shape[:-1]))


def test_loss_is_zero_at_ground_truth_and_each_term_measures_its_error():
  model, layout, bounds = _setup()
  rng = np.random.default_rng(1)
  n, index = 3, np.array(layout.coordinates)
  q = random_poses(model, n, rng, limit=0.5)[:, index].astype(np.float32)
  scales = (np.asarray(bounds.scale_centre)
            * rng.uniform(0.9, 1.1, (n, layout.num_scale_groups, 3))).astype(np.float32)
  rotation = np.asarray(sixd_to_matrix(rng.normal(size=(n, 6))), np.float32)
  # The targets: the model's forward kinematics (checked against OpenSim) of the full
  # coordinates and every body's scales, written out here.
  coords = np.tile(np.asarray(model.coordinate_defaults, np.float32), (n, 1))
  coords[:, index] = q
  body_scales = np.ones((n, model.num_bodies, 3), np.float32)
  for g, members in enumerate(layout.body_groups):
    body_scales[:, list(members)] = scales[:, g, None]
  truth = forward_kinematics(model, jnp.asarray(coords), scales=jnp.asarray(body_scales),
                             root_rotation=jnp.asarray(rotation))
  marker_mask = np.ones((n, model.num_markers), np.float32)
  marker_mask[0, :40] = 0
  targets = Targets(coords=jnp.asarray(q), scales=jnp.asarray(scales), joints=truth.joint_origins,
                    markers=truth.markers, frame_mask=jnp.ones(n),
                    coordinate_mask=jnp.ones((n, len(index))), marker_mask=jnp.asarray(marker_mask))
  kin = heads.Kinematics(jnp.asarray(q), jnp.asarray(scales), jnp.asarray(rotation))
  root = model.root_joint
  loss = lambda k: d3ke_loss(k, skeletal_layer(model, layout, k), targets, root_joint=root)
  total, terms = loss(kin)
  chex.assert_type([total, *terms.values()], jnp.float32)
  assert set(terms) == {"joint", "marker", "body", "angle"}
  assert float(total) == 0.0  # the skeletal layer is that forward kinematics
  # Each term against NumPy (measured: 7e-7, 1.4e-6, 1.5e-7 and 1.7e-7 relative): angles
  # 0.01 rad off, scales 1 % too large ...
  _, terms = loss(kin._replace(coords=kin.coords + 0.01))
  assert float(terms["angle"]) == pytest.approx(0.01, rel=5e-6)
  _, terms = loss(kin._replace(scales=kin.scales * 1.01))
  assert float(terms["body"]) == pytest.approx(0.01 * scales.mean(), rel=1e-5)
  # ... and the pelvis turned 0.2 rad about the camera's axis: root-relative positions turn.
  turn = np.asarray(rotvec_to_matrix(np.array([0.0, 0.0, 0.2])))
  total, terms = loss(kin._replace(rotation=jnp.asarray(turn @ rotation, jnp.float32)))
  moved = lambda points: np.abs(points @ turn.T - points)
  joints = np.asarray(truth.joint_origins, np.float64)
  markers = np.asarray(truth.markers, np.float64)
  relative = lambda points: points - joints[:, root, None]
  assert float(terms["joint"]) == pytest.approx(moved(relative(joints)).mean(), rel=1e-6)
  assert float(terms["marker"]) == pytest.approx(
      moved(relative(markers))[marker_mask > 0].mean(), rel=1e-6)
  assert float(total) == pytest.approx(float(terms["joint"]) + 2 * float(terms["marker"]), rel=1e-6)
  with pytest.raises(KeyError, match="unknown loss weights"):
    d3ke_loss(kin, skeletal_layer(model, layout, kin), targets, weights={"joints": 1.0})


def test_marker_labels_marked_invalid_do_not_count():
  # BML-MoVi records mark a marker label farther than 2 cm from the fitted model invalid
  # (markers_valid); such a label, however wrong, changes neither loss.
  from d3ke_jax.train import cms, step  # pylint: disable=g-import-not-at-top
  model, layout, bounds = _setup()
  n = 2
  coords = jnp.zeros((n, layout.num_coordinates))
  kin, targets = _targets(model, layout, coords, jnp.broadcast_to(
      jnp.asarray(bounds.scale_centre), (n, layout.num_scale_groups, 3)),
      jnp.broadcast_to(jnp.eye(3), (n, 3, 3)))
  pose = skeletal_layer(model, layout, kin)
  wrong = targets.markers.at[0, 5].add(0.5)
  valid = jnp.ones(targets.marker_mask.shape, bool).at[0, 5].set(False)
  batch = {"markers": wrong, "joints": targets.joints, "frame_valid": jnp.ones(n, bool)}
  assert step.marker_labels_valid(batch).shape == targets.marker_mask.shape
  for marked in (False, True):
    if marked:
      batch["markers_valid"] = valid
    mask = step.marker_labels_valid(batch)
    _, terms = d3ke_loss(kin, pose, targets._replace(markers=wrong, marker_mask=mask))
    cms_loss, _, _ = cms.marker_objective(model, layout, {"marker": 1.0}, pose.markers
                                          - pose.joints[..., model.root_joint, None, :], batch)
    if marked:
      assert float(terms["marker"]) == 0.0 and float(cms_loss) == 0.0
    else:
      assert float(terms["marker"]) > 1e-3 and float(cms_loss) > 1e-3


def test_skeletal_layer_is_root_relative_and_scales_bones():
  model, layout, bounds = _setup()
  coords = jnp.zeros((1, layout.num_coordinates))
  centre = jnp.asarray(bounds.scale_centre)[None]
  kin = heads.Kinematics(coords, centre, jnp.eye(3)[None])
  pose = skeletal_layer(model, layout, kin)
  chex.assert_type([pose.joints, pose.markers], jnp.float32)
  root = model.joint_index(model.joint_names[model.root_joint])
  np.testing.assert_allclose(pose.joints[0, root], 0, atol=1e-7)  # measured: 0
  bigger = skeletal_layer(model, layout, kin._replace(scales=centre * 1.1))
  # Measured: 1.6e-7 m.
  np.testing.assert_allclose(bigger.markers, pose.markers * 1.1, rtol=0, atol=5e-7)


@pytest.mark.parametrize("network", [BiLSTM(hidden=8, layers=2),
                                     TCN(channels=8, dilations=(1, 3)),
                                     LiftingTransformer(hidden=16, heads=2, feed_forward=32,
                                                        layers=1, max_frames=16)])
def test_sequence_networks_keep_shape_and_start_as_identity(network):
  """Identity at initialisation, of all channels or (``outputs``) the first ones."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 5), jnp.float32)
  for outputs, kept in ((0, 5), (3, 3)):
    net = network.clone(outputs=outputs)
    variables = net.init({"params": jax.random.PRNGKey(1)}, x)
    y, features = net.apply(variables, x)
    chex.assert_shape(y, x.shape[:-1] + (kept,))
    chex.assert_type([y, features], jnp.float32)
    chex.assert_shape(features, x.shape[:-1] + (variables["params"]["out"]["kernel"].shape[0],))
    np.testing.assert_array_equal(y, x[..., :kept])  # zero-initialised residual output: x + 0


def _dependence(network, frames=300, t=150):
  """Which input frames output frame t depends on (with a non-zero output layer)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (1, frames, 3), jnp.float32)
  variables = network.init(jax.random.PRNGKey(1), x)
  variables = jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.ones_like(v) * 0.1 if "out" in jax.tree_util.keystr(path) else v,
      variables)
  grad = jax.grad(lambda x: jnp.sum(network.apply(variables, x)[0][0, t]))(x)
  return np.nonzero(np.any(np.abs(grad[0]) > 0, axis=-1))[0]


def test_tcn_receptive_field_is_243_frames():
  network = TCN(channels=4)
  assert network.receptive_field == 243
  frames = _dependence(network)
  assert frames.min() == 150 - 121 and frames.max() == 150 + 121
  causal = _dependence(TCN(channels=4, causal=True), t=280)
  assert causal.min() == 280 - 242 and causal.max() == 280


def test_bilstm_is_bidirectional():
  frames = _dependence(BiLSTM(hidden=4, layers=1), frames=20, t=10)
  assert frames.min() == 0 and frames.max() == 19


def test_temporal_model_keeps_kinematics_valid():
  model, layout, bounds = _setup()
  rng = np.random.default_rng(2)
  q = random_poses(model, 8, rng, limit=0.5)[:, np.array(layout.coordinates)]
  kin = heads.Kinematics(jnp.asarray(q, jnp.float32)[None],
                         jnp.asarray(bounds.scale_centre, jnp.float32)[None, None].repeat(8, 1),
                         jnp.eye(3)[None, None].repeat(8, 1))
  net = TemporalD3KE(bounds, network="tcn", options=(("channels", 8), ("dilations", (1, 3))))
  variables = net.init(jax.random.PRNGKey(0), Estimates(kin))
  out = net.apply(variables, Estimates(kin))
  chex.assert_type([out.coords, out.scales, out.rotation], jnp.float32)
  # Identity at init, up to decode(encode(.)); measured: 3.5e-7.
  np.testing.assert_allclose(out.coords, kin.coords, rtol=0, atol=1e-6)
  with pytest.raises(ValueError, match="unknown sequence network"):
    TemporalD3KE(bounds, network="gru").init(jax.random.PRNGKey(0), Estimates(kin))


@pytest.mark.slow  # about 1-2 minutes on 2 cores: ``pytest -m slow``
def test_tiny_d3ke_overfits_a_few_frames():
  model, layout, bounds = _setup()
  rng = np.random.default_rng(3)
  n = 4
  q = random_poses(model, n, rng, limit=0.6)[:, np.array(layout.coordinates)]
  scales = np.asarray(bounds.scale_centre) * rng.uniform(0.9, 1.1, (n, layout.num_scale_groups, 3))
  # Pelvis orientations within ~30 deg of upright and facing the camera (where the head
  # starts): far-apart rotations let L1 on positions trade the pelvis against hip and
  # shoulder rotations (a local minimum, not capacity).
  rotation = np.asarray(heads.FACING_CAMERA) @ rotvec_to_matrix(rng.normal(size=(n, 3)) * 0.3)
  _, targets = _targets(model, layout, jnp.asarray(q, jnp.float32),
                        jnp.asarray(scales, jnp.float32), jnp.asarray(rotation, jnp.float32))
  # Distinguishable images: a colour each, plus texture.
  images = jnp.asarray(rng.uniform(size=(n, 1, 1, 3)) + 0.1 * rng.uniform(size=(n, 64, 64, 3)),
                       jnp.float32)
  net = PerFrameD3KE(bounds, stage_sizes=(1, 1, 1, 1), groups=4, head_hidden=64)
  variables = net.init(jax.random.PRNGKey(0), images)
  steps = 300
  optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=1e-3))
  state = (variables["params"], variables["batch_stats"], optimizer.init(variables["params"]))

  def loss_fn(params, stats):
    kin, updates = net.apply({"params": params, "batch_stats": stats}, images, train=True,
                             mutable=["batch_stats"])
    loss, _ = d3ke_loss(kin, skeletal_layer(model, layout, kin), targets)
    return loss, updates["batch_stats"]

  @jax.jit
  def step(state):
    params, stats, opt = state
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats)
    updates, opt = optimizer.update(grads, opt, params)
    return (optax.apply_updates(params, updates), stats, opt), loss, grads

  state, first, grads = step(state)
  # Gradients reach every parameter (backbone, head) through the skeletal layer.
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))
  for _ in range(steps):
    state, loss, _ = step(state)
  # The first loss is that of the default pose (where the head starts), the last < 1/40 of it.
  assert float(loss) < float(first) / 40, (float(first), float(loss))
