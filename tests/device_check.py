"""Run with XLA_FLAGS=--xla_force_host_platform_device_count=4: trains tiny networks for a
few steps on a mesh of 1 device and on one of 4 devices with the same global batches, with
augmentation and dropout on; prints the largest parameter difference of each network (or
of those named as arguments), the uncertainty head's apart. Used by
tests/test_train_step.py."""

import functools
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from d3ke_jax import devices
from d3ke_jax.data import augment
from d3ke_jax.nets import from_config, heads
from d3ke_jax.nets.d3ke import PerFrameD3KE, images_from_batch, skeletal_layer
from d3ke_jax.skeleton import load_osim, make_layout
from d3ke_jax.skeleton.sampling import random_poses
from d3ke_jax.train import step as train_step
from experiments.configs import common, tcn

WINDOW = 9
SEED = 5


def batch_of(model, layout, n, rng, epoch=0):
  """``n`` frames: random images, poses and labels (2 m in front of the camera)."""
  coords = random_poses(model, n, rng, limit=0.5)
  scales = rng.uniform(0.9, 1.1, (n, model.num_bodies, 3))
  kin = heads.Kinematics(jnp.asarray(coords[:, np.array(layout.coordinates)], jnp.float32),
                         jnp.asarray(scales[:, [g[0] for g in layout.body_groups]], jnp.float32),
                         jnp.broadcast_to(jnp.eye(3), (n, 3, 3)))
  pose = skeletal_layer(model, layout, kin)
  shift = np.array([0.0, 0.0, 2.0], np.float32)
  intrinsics = np.array([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]], np.float32)
  return {"image": rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8),
          "coordinates": coords.astype(np.float32), "scales": scales.astype(np.float32),
          "joints": np.asarray(pose.joints) + shift, "markers": np.asarray(pose.markers) + shift,
          "pelvis_rotation": np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3)),
          "intrinsics": np.broadcast_to(intrinsics, (n, 3, 3)),
          "frame_valid": np.ones(n, bool),
          "coordinate_valid": np.ones((n, model.num_coordinates), bool),
          "epoch": np.full(n, epoch, np.int32), "record": rng.permutation(100)[:n].astype(
              np.int32)}, kin


def window_batch_of(model, layout, n, rng):
  """``n`` windows of ``WINDOW`` frames: noisy per-frame estimates and their ground truth."""
  frames, kin = batch_of(model, layout, n * WINDOW, rng)
  for key in ("image", "epoch", "record", "intrinsics"):
    del frames[key]
  batch = {"input_coords": np.asarray(kin.coords) + rng.normal(0, 0.05, kin.coords.shape),
           "input_scales": np.asarray(kin.scales), "input_rotation": np.asarray(kin.rotation),
           "input_uncertainty_coords": rng.uniform(0.01, 0.3, kin.coords.shape),
           "input_uncertainty_scales": rng.uniform(0.01, 0.1, kin.scales.shape),
           "input_uncertainty_rotation": rng.uniform(0.01, 0.3, n * WINDOW), **frames}
  return {k: np.asarray(v).reshape((n, WINDOW) + v.shape[1:]).astype(
      np.float32 if v.dtype == np.float64 else v.dtype) for k, v in batch.items()}


def per_frame_network(model, layout):
  """The per-frame network (ResNeXt BatchNorm), trained on augmented images."""
  network = PerFrameD3KE(heads.bounds_for(model, layout), stage_sizes=(1, 1, 1, 1), groups=4,
                         axis_name=devices.AXIS, box_head=True)
  prepare = functools.partial(augment.augment_batch, seed=SEED, config=augment.Augmentation())
  return network, jnp.zeros((1, 32, 32, 3)), images_from_batch, prepare


def sequence_network(name, model, layout):
  """A sequence network as stage 2 builds it, small, with dropout (the TCN also with its own
  BatchNorm), stage 1's uncertainty as input and its own uncertainty head."""
  config = tcn.get_config()
  config.model.network = name
  config.window = WINDOW
  options = {"lstm": {"hidden": 8, "layers": 1, "dropout": 0.3},
             "tcn": {"channels": 16, "dilations": (1, 3), "dropout": 0.3, "causal": False},
             "transformer": {"hidden": 16, "heads": 2, "feed_forward": 16, "layers": 1,
                             "dropout": 0.3}}
  config.model.options = options[name]
  assert set(options[name]) == set(common.SEQUENCE_OPTIONS[name])
  first = ml_collections.ConfigDict({"model": {"uncertainty_head": True}})  # stage 1's
  network = from_config.sequence_network(config, model, layout, first)
  assert network.uncertainty_input and network.uncertainty_head
  sample = train_step.estimates_from_batch(window_batch_of(model, layout, 1,
                                                           np.random.default_rng(1)))
  return network, sample, train_step.estimates_from_batch, None


def run(mesh, batches, model, layout, network, sample, inputs, prepare):
  # SGD: an update linear in the gradient, so float noise is not amplified (as Adam does
  # for near-zero gradients, where it steps by about the learning rate either way).
  optimizer = optax.sgd(0.05, momentum=0.9)
  state = train_step.init_state(network, optimizer, sample, 0, mesh)
  train, _ = train_step.compile_steps(network, model, layout, None, optimizer, mesh,
                                      inputs=inputs, seed=SEED, prepare=prepare)
  for batch in batches:
    state, metrics = train(state, devices.put_rows(batch, mesh))
  return devices.to_host((state.params, metrics["loss"]))


def main():
  assert jax.local_device_count() == 4, jax.devices()
  model = load_osim()
  layout = make_layout(model, include_root=False)
  rng = np.random.default_rng(0)
  frames = [batch_of(model, layout, 8, rng, epoch)[0] for epoch in range(3)]
  windows = [window_batch_of(model, layout, 8, rng) for _ in range(3)]
  checks = {"per_frame": (per_frame_network, frames)}
  for name in ("lstm", "tcn", "transformer"):
    checks[name] = (functools.partial(sequence_network, name), windows)
  for name in sys.argv[1:] or checks:
    make, batches = checks[name]
    parts = make(model, layout)
    one, loss_one = run(devices.make_mesh(jax.devices()[:1]), batches, model, layout, *parts)
    four, loss_four = run(devices.make_mesh(jax.devices()), batches, model, layout, *parts)
    differences = [(path[0].key == "uncertainty_head", float(np.max(np.abs(a - b))))
                   for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(one),
                                           jax.tree.leaves(four))]
    largest = lambda head: max([d for h, d in differences if h == head] or [0.0])
    print(f"{name} max_param_difference {largest(False):.3e} loss_one {float(loss_one):.6f} "
          f"loss_four {float(loss_four):.6f} head_difference {largest(True):.3e}")


if __name__ == "__main__":
  main()
