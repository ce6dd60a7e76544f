"""Run with XLA_FLAGS=--xla_force_host_platform_device_count=4: trains a tiny D3KE for a few
steps on 1 device and on 4 devices with the same global batch; prints the largest
parameter difference. Used by tests/test_train_step.py."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import PerFrameD3KE, skeletal_layer
from d3ke_jax.skeleton import load_osim, make_layout
from d3ke_jax.skeleton.sampling import random_poses
from d3ke_jax.train import step as train_step


def batch_of(model, layout, n, rng):
  coords = random_poses(model, n, rng, limit=0.5)
  scales = rng.uniform(0.9, 1.1, (n, model.num_bodies, 3))
  bounds = heads.bounds_for(model, layout)
  kin = heads.Kinematics(jnp.asarray(coords[:, np.array(layout.coordinates)], jnp.float32),
                         jnp.asarray(scales[:, [g[0] for g in layout.body_groups]], jnp.float32),
                         jnp.broadcast_to(jnp.eye(3), (n, 3, 3)))
  pose = skeletal_layer(model, layout, kin)
  return {"image": rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8),
          "coordinates": coords.astype(np.float32), "scales": scales.astype(np.float32),
          "joints": np.asarray(pose.joints), "markers": np.asarray(pose.markers),
          "frame_valid": np.ones(n, bool),
          "coordinate_valid": np.ones((n, model.num_coordinates), bool)}, bounds


def run(devices, batches, model, layout, bounds):
  network = PerFrameD3KE(bounds, stage_sizes=(1, 1, 1, 1), groups=4, axis_name=train_step.AXIS)
  # SGD: an update linear in the gradient, so float noise is not amplified (as Adam does
  # for near-zero gradients, where it steps by about the learning rate either way).
  optimizer = optax.sgd(0.05, momentum=0.9)
  state = train_step.create_state(network, optimizer, jnp.zeros((1, 32, 32, 3)),
                                  jax.random.PRNGKey(0))
  train, _ = train_step.pmapped(network, model, layout, None, optimizer, devices=devices)
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
  batches, bounds = [], None
  for _ in range(3):
    batch, bounds = batch_of(model, layout, 8, rng)
    batches.append(batch)
  one, loss_one = run(jax.local_devices()[:1], batches, model, layout, bounds)
  four, loss_four = run(jax.local_devices(), batches, model, layout, bounds)
  difference = max(float(np.max(np.abs(a - b))) for a, b in
                   zip(jax.tree.leaves(one), jax.tree.leaves(four)))
  print(f"max_param_difference {difference:.3e} loss_one {loss_one:.6f} loss_four {loss_four:.6f}")


if __name__ == "__main__":
  main()
