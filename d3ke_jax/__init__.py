"""d3ke-jax: direct 3D human kinematic estimation from a single camera, in JAX/Flax."""
