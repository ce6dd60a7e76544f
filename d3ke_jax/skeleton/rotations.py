"""Batched rotation helpers: axis-angle, OpenSim body-fixed Euler angles, 6D representation.

Matrices are (..., 3, 3) and act on column vectors (``R @ v``). Every function broadcasts
over leading batch dimensions and is jittable and differentiable.
"""

import jax.numpy as jnp


def skew(v):
  """The cross-product matrix [v]x (..., 3, 3) of vectors (..., 3): [v]x u = v x u."""
  x, y, z = v[..., 0], v[..., 1], v[..., 2]
  zero = jnp.zeros_like(x)
  return jnp.stack([jnp.stack([zero, -z, y], -1),
                    jnp.stack([z, zero, -x], -1),
                    jnp.stack([-y, x, zero], -1)], -2)


def axis_angle_to_matrix(axis, angle):
  """Rotation by ``angle`` (...) about the unit ``axis`` (..., 3) (Rodrigues' formula)."""
  axis = jnp.asarray(axis)
  angle = jnp.asarray(angle)[..., None, None]
  cross = skew(axis)
  outer = axis[..., :, None] * axis[..., None, :]
  eye = jnp.eye(3, dtype=cross.dtype)
  return jnp.cos(angle) * eye + jnp.sin(angle) * cross + (1 - jnp.cos(angle)) * outer


def rotvec_to_matrix(rotvec, eps=1e-12):
  """Rotation vector (..., 3) (axis times angle, radians) to a matrix; smooth at zero."""
  rotvec = jnp.asarray(rotvec)
  sq = jnp.sum(rotvec**2, axis=-1)
  safe = sq > eps
  angle = jnp.sqrt(jnp.where(safe, sq, 1.0))
  axis = rotvec / angle[..., None]
  exact = axis_angle_to_matrix(axis, angle)
  # Second-order expansion near zero keeps values and gradients finite.
  cross = skew(rotvec)
  approx = jnp.eye(3, dtype=cross.dtype) + cross + 0.5 * cross @ cross
  return jnp.where(safe[..., None, None], exact, approx)


def matrix_to_rotvec(matrix):
  """Rotation matrix (..., 3, 3) to a rotation vector (..., 3), angle in [0, pi]."""
  m = jnp.asarray(matrix)
  trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
  cos = jnp.clip((trace - 1) / 2, -1.0, 1.0)
  angle = jnp.arccos(cos)
  vee = jnp.stack([m[..., 2, 1] - m[..., 1, 2],
                   m[..., 0, 2] - m[..., 2, 0],
                   m[..., 1, 0] - m[..., 0, 1]], -1)
  sin = jnp.sin(angle)
  small = sin < 1e-6
  generic = vee * (angle / jnp.where(small, 1.0, 2 * sin))[..., None]
  # Near pi the axis comes from the diagonal of (R + I) / 2 = a a^T.
  diag = jnp.sqrt(jnp.clip((jnp.diagonal(m, axis1=-2, axis2=-1) + 1) / 2, 0.0, None))
  sign = jnp.where(vee >= 0, 1.0, -1.0)
  near_pi = diag * sign * angle[..., None]
  near_zero = vee / 2
  out = jnp.where((small & (cos > 0))[..., None], near_zero, generic)
  return jnp.where((small & (cos <= 0))[..., None], near_pi, out)


def euler_body_fixed_to_matrix(angles, order="xyz"):
  """Body-fixed (intrinsic) Euler angles (..., 3) to a matrix: R = R_a(q0) R_b(q1) R_c(q2).

  OpenSim's frame ``orientation`` property is body-fixed X-Y-Z in this sense.
  """
  angles = jnp.asarray(angles)
  out = None
  for i, letter in enumerate(order):
    axis = jnp.zeros(3, angles.dtype).at["xyz".index(letter)].set(1.0)
    rot = axis_angle_to_matrix(axis, angles[..., i])
    out = rot if out is None else out @ rot
  return out


def matrix_to_euler_body_fixed_xyz(matrix):
  """Inverse of ``euler_body_fixed_to_matrix(., 'xyz')`` with the middle angle in [-pi/2, pi/2]."""
  m = jnp.asarray(matrix)
  beta = jnp.arcsin(jnp.clip(m[..., 0, 2], -1.0, 1.0))
  alpha = jnp.arctan2(-m[..., 1, 2], m[..., 2, 2])
  gamma = jnp.arctan2(-m[..., 0, 1], m[..., 0, 0])
  return jnp.stack([alpha, beta, gamma], -1)


def sixd_to_matrix(sixd, eps=1e-12):
  """6D representation (..., 6) to a rotation matrix by Gram-Schmidt (Zhou et al. 2019).

  The 6D vector holds the first two columns of the matrix; the output's columns are
  (b1, b2, b1 x b2), so det = +1 for every input.
  """
  sixd = jnp.asarray(sixd)
  a1, a2 = sixd[..., :3], sixd[..., 3:]
  normalize = lambda v: v / jnp.sqrt(jnp.maximum(jnp.sum(v**2, -1, keepdims=True), eps))
  b1 = normalize(a1)
  b2 = normalize(a2 - jnp.sum(b1 * a2, -1, keepdims=True) * b1)
  b3 = jnp.cross(b1, b2)
  return jnp.stack([b1, b2, b3], -1)


def matrix_to_sixd(matrix):
  """Rotation matrix (..., 3, 3) to its 6D representation: the first two columns."""
  matrix = jnp.asarray(matrix)
  return jnp.concatenate([matrix[..., :, 0], matrix[..., :, 1]], -1)
