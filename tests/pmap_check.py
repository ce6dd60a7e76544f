"""Run with XLA_FLAGS=--xla_force_host_platform_device_count=4: trains a tiny per-frame D3KE
and a tiny TCN (stage 2) for a few steps on 1 device and on 4 devices with the same global
batch; prints the largest parameter difference of each (or of those named as arguments).
Used by tests/test_train_step.py."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import PerFrameD3KE, skeletal_layer
from d3ke_jax.skeleton import load_osim, make_layout
from d3ke_jax.skeleton.sampling import random_poses
from d3ke_jax.train import step as train_step
from d3ke_jax.train import temporal
from experiments.configs import tcn

WINDOW = 9


def batch_of(model, layout, n, rng):
  coords = random_poses(model, n, rng, limit=0.5)
  scales = rng.uniform(0.9, 1.1, (n, model.num_bodies, 3))
  kin = heads.Kinematics(jnp.asarray(coords[:, np.array(layout.coordinates)], jnp.float32),
                         jnp.asarray(scales[:, [g[0] for g in layout.body_groups]], jnp.float32),
                         jnp.broadcast_to(jnp.eye(3), (n, 3, 3)))
  pose = skeletal_layer(model, layout, kin)
  return {"image": rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8),
          "coordinates": coords.astype(np.float32), "scales": scales.astype(np.float32),
          "joints": np.asarray(pose.joints), "markers": np.asarray(pose.markers),
          "frame_valid": np.ones(n, bool),
          "coordinate_valid": np.ones((n, model.num_coordinates), bool)}, kin


def window_batch_of(model, layout, n, rng):
  """``n`` windows of ``WINDOW`` frames: noisy per-frame estimates and their ground truth."""
  frames, kin = batch_of(model, layout, n * WINDOW, rng)
  del frames["image"]
  batch = {"input_coords": np.asarray(kin.coords) + rng.normal(0, 0.05, kin.coords.shape),
           "input_scales": np.asarray(kin.scales), "input_rotation": np.asarray(kin.rotation),
           **frames}
  return {k: np.asarray(v).reshape((n, WINDOW) + v.shape[1:]).astype(v.dtype)
          for k, v in batch.items()}


def per_frame_network(model, layout):
  network = PerFrameD3KE(heads.bounds_for(model, layout), stage_sizes=(1, 1, 1, 1), groups=4,
                         axis_name=train_step.AXIS)
  return network, jnp.zeros((1, 32, 32, 3)), train_step.images_from_batch


def tcn_network(model, layout):
  """The TCN as stage 2 builds it, small and without dropout."""
  config = tcn.get_config()
  config.window = WINDOW
  config.model.options = {"channels": 16, "dilations": (1, 3), "dropout": 0.0, "causal": False}
  bounds = heads.bounds_for(model, layout)
  window = lambda x: jnp.broadcast_to(jnp.asarray(x, jnp.float32), (1, WINDOW) + np.shape(x))
  sample = heads.Kinematics(window(bounds.coordinate_centre), window(bounds.scale_centre),
                            window(np.eye(3)))
  return temporal.build_network(config, model, layout), sample, train_step.kinematics_from_batch


def run(devices, batches, model, layout, network, sample, inputs):
  # SGD: an update linear in the gradient, so float noise is not amplified (as Adam does
  # for near-zero gradients, where it steps by about the learning rate either way).
  optimizer = optax.sgd(0.05, momentum=0.9)
  state = train_step.create_state(network, optimizer, sample, jax.random.PRNGKey(0))
  train, _ = train_step.pmapped(network, model, layout, None, optimizer, devices=devices,
                                inputs=inputs)
  state = train_step.replicate(state, len(devices))
  for batch in batches:
    sharded = {k: v.reshape((len(devices), -1) + v.shape[1:]) for k, v in batch.items()}
    state, metrics = train(state, sharded)
  return jax.tree.map(lambda x: np.asarray(x[0]), state.params), float(metrics["loss"][0])


def main():
  assert jax.local_device_count() == 4, jax.devices()
  model = load_osim()
  layout = make_layout(model, include_root=False)
  rng = np.random.default_rng(0)
  checks = {"per_frame": (per_frame_network, [batch_of(model, layout, 8, rng)[0]
                                              for _ in range(3)]),
            "tcn": (tcn_network, [window_batch_of(model, layout, 8, rng) for _ in range(3)])}
  for name in sys.argv[1:] or checks:
    make, batches = checks[name]
    network, sample, inputs = make(model, layout)
    one, loss_one = run(jax.local_devices()[:1], batches, model, layout, network, sample, inputs)
    four, loss_four = run(jax.local_devices(), batches, model, layout, network, sample, inputs)
    difference = max(float(np.max(np.abs(a - b))) for a, b in
                     zip(jax.tree.leaves(one), jax.tree.leaves(four)))
    print(f"{name} max_param_difference {difference:.3e} loss_one {loss_one:.6f} "
          f"loss_four {loss_four:.6f}")


if __name__ == "__main__":
  main()
