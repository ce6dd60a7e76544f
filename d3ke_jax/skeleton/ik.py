"""Inverse kinematics: coordinates that best fit measured markers, batched over frames.

A damped Gauss-Newton (Levenberg-Marquardt) solver, vectorized over frames and warm-started
from the previous chunk of a sequence. The Jacobian is analytic: a rotation axis moves every
point below it by ``omega x (p - o)``, a translation axis along its world direction; this
costs a few FK evaluations instead of one per coordinate (``jax.jacfwd``), which is what
makes batched IK fast. Bounds: clamped coordinates are projected into their ranges.
"""

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax.skeleton import kinematics
from d3ke_jax.skeleton.kinematics import forward_kinematics
from d3ke_jax.skeleton.model import GROUND, SkeletalModel
from d3ke_jax.skeleton.rotations import axis_angle_to_matrix


class IKResult(NamedTuple):
  """Per-frame IK solution; errors in metres over the markers present in each frame."""
  coords: jnp.ndarray  # (T, C) every coordinate (locked and coupled ones resolved)
  rms_error: jnp.ndarray  # (T,)
  max_error: jnp.ndarray  # (T,)
  marker_errors: jnp.ndarray  # (T, M), NaN where the marker is missing
  converged: jnp.ndarray  # (T,) bool: enough markers and the solver settled


def free_coordinates(model: SkeletalModel):
  """Indices IK solves for: independent coordinates that are not locked."""
  locked = np.asarray(model.coordinate_locked)
  return tuple(i for i in model.independent_coordinates if not locked[i])


@functools.lru_cache(maxsize=16)
def _moves(joint_parent_body, joint_child_body, marker_body):
  """(J, M) 1 where joint j moves marker m (the marker's body is below the joint)."""
  mover = {b: j for j, b in enumerate(joint_child_body)}
  out = np.zeros((len(joint_child_body), len(marker_body)))
  for m, body in enumerate(marker_body):
    while body != GROUND:
      j = mover[body]
      out[j, m] = 1
      body = joint_parent_body[j]
  return out


@functools.lru_cache(maxsize=16)
def _columns(axis_inputs, couplers, free):
  """How axis effects add up to Jacobian columns of the free coordinates.

  Every coordinate follows one free coordinate (itself, or the independent coordinate at
  the top of its coupler chain), or none when locked. Returns the first axis of every
  column (-1: none), and the other axes with their columns.
  """
  source = {c: c for c in free}
  for dependent, independent in couplers:  # inputs first
    if independent in source:
      source[dependent] = source[independent]
  column = {c: free.index(source[c]) for c in source}
  axis_column = np.array([column.get(c, -1) for _, _, c in axis_inputs])
  first = np.full(len(free), -1)
  extra_axes, extra_columns = [], []
  for a, f in enumerate(axis_column):
    if f < 0:
      continue
    if first[f] < 0:
      first[f] = a
    else:
      extra_axes.append(a)
      extra_columns.append(f)
  return first, np.array(extra_axes, int), np.array(extra_columns, int)


def _marker_jacobian(model, free, q, scales):
  """Markers (T, M, 3) and their Jacobian (T, F, M, 3) w.r.t. the free coordinates.

  A rotation axis moves every point below it by ``omega x (p - o)``, a translation axis
  along its world direction, each times the derivative of the axis function and of the
  coupler chain from the free coordinate.
  """
  out = forward_kinematics(model, q, scales=scales)
  dtype = q.dtype
  resolve = lambda q: kinematics.resolve_coordinates(model, q.T)  # (C, T)
  # d coordinate / d its free coordinate, all at once: each coordinate has one source.
  tangent = jnp.zeros_like(q).at[:, np.array(free)].set(1.0)
  resolved, chain = jax.jvp(resolve, (q,), (tangent,))
  values = kinematics.axis_values(model, resolved)  # (6, J, T)
  axes = jnp.asarray(model.axes, dtype)  # (J, 6, 3)
  eye = jnp.broadcast_to(jnp.eye(3, dtype=dtype), (q.shape[0], 1, 3, 3))
  rotations = jnp.concatenate([eye, out.body_transforms[..., :3, :3]], axis=1)
  frame = jnp.einsum("tjab,jbc->tjac", rotations[:, np.array(model.joint_parent_body) + 1],
                     jnp.asarray(model.parent_rotation, dtype))  # parent offset frames
  first = axis_angle_to_matrix(axes[:, 0], values[0].T)  # (T, J, 3, 3)
  second = axis_angle_to_matrix(axes[:, 1], values[1].T)
  omega = jnp.stack([
      jnp.einsum("tjab,jb->tja", frame, axes[:, 0]),
      jnp.einsum("tjab,tjbc,jc->tja", frame, first, axes[:, 1]),
      jnp.einsum("tjab,tjbc,tjcd,jd->tja", frame, first, second, axes[:, 2])], 2)
  slide = jnp.einsum("tjab,jkb->tjka", frame, axes[:, 3:])  # (T, J, 3, 3)
  if scales is not None:
    s = jnp.broadcast_to(jnp.asarray(scales, dtype), (q.shape[0], model.num_bodies, 3))
    gain, _ = kinematics.translation_gain(model, s.transpose(2, 1, 0), dtype)  # (3, J, T)
    slide = slide * gain.transpose(2, 1, 0)[..., None]
  joint, axis, coordinate = (np.array(v) for v in zip(*model.axis_inputs))
  x = resolved[coordinate]
  derivative = jax.jvp(model.axis_functions, (x,), (jnp.ones_like(x),))[1]  # (A, T)
  factor = (derivative * chain[coordinate]).T  # (T, A)
  lever = out.markers[:, None] - out.joint_origins[:, joint][:, :, None]  # (T, A, M, 3)
  rotational = jnp.cross(omega[:, joint, np.minimum(axis, 2)][:, :, None], lever)
  translational = jnp.broadcast_to(slide[:, joint, np.maximum(axis - 3, 0)][:, :, None],
                                   lever.shape)
  effect = jnp.where((axis < 3)[:, None, None], rotational, translational)
  moves = _moves(model.joint_parent_body, model.joint_child_body, model.marker_body)[joint]
  effect = effect * (moves[None, :, :, None] * factor[:, :, None, None])
  first_axis, extra_axes, extra_columns = _columns(model.axis_inputs, model.couplers, free)
  padded = jnp.concatenate([effect, jnp.zeros_like(effect[:, :1])], axis=1)
  jacobian = padded[:, np.where(first_axis < 0, len(joint), first_axis)]  # (T, F, M, 3)
  if extra_axes.size:
    jacobian = jacobian.at[:, extra_columns].add(effect[:, extra_axes])
  return out.markers, jacobian


class _Problem(NamedTuple):
  """Frames to fit: marker targets (T, M, 3) with NaN for missing and their weights (T, M);
  coordinate targets (T, F) with weights (F,) for the free coordinates; body scales."""
  targets: jnp.ndarray
  weights: jnp.ndarray
  coordinate_targets: jnp.ndarray
  coordinate_weights: jnp.ndarray
  scales: Optional[jnp.ndarray]


def _full(free, x, base):
  """Coordinates (T, C): ``base`` with the free ones set from x (T, F)."""
  return jnp.broadcast_to(base, x.shape[:-1] + base.shape[-1:]).at[..., np.array(free)].set(x)


def _weighted_error(problem, markers):
  present = ~jnp.isnan(problem.targets[..., 0])
  sqrt_w = jnp.sqrt(jnp.where(present, problem.weights, 0.0))[..., None]
  return sqrt_w, sqrt_w * (markers - jnp.where(present[..., None], problem.targets, 0.0))


def _cost(model, free, x, base, problem):
  markers = forward_kinematics(model, _full(free, x, base), scales=problem.scales).markers
  marker_cost = jnp.sum(_weighted_error(problem, markers)[1]**2, axis=(-1, -2))
  return marker_cost + jnp.sum(problem.coordinate_weights * (x - problem.coordinate_targets)**2,
                               axis=-1)


def _levenberg_marquardt(model, free, active, low, high, iterations, x, base, problem):
  """LM iterations for frames x (T, F); ``active`` (F,) masks coordinates that may move.

  Returns the solution, its cost, and whether the last iteration still lowered the cost
  by more than 0.1 % and (0.1 mm)^2 per marker (the frame has not settled).
  """
  def step(_, state):
    x, damping, cost, _ = state
    markers, jac = _marker_jacobian(model, free, _full(free, x, base), problem.scales)
    sqrt_w, residual = _weighted_error(problem, markers)
    jac = jac * sqrt_w[:, None]  # (T, F, M, 3)
    gradient = jnp.einsum("tfmk,tmk->tf", jac, residual)
    gradient = gradient + problem.coordinate_weights * (x - problem.coordinate_targets)
    # Coordinates held at a bound that the descent direction pushes against stay out of
    # the step (an active set); clipping a full step instead can stall on the boundary.
    blocked = ((x <= low) & (gradient > 0)) | ((x >= high) & (gradient < 0))
    moves = active * ~blocked  # (T, F)
    jac = jac * moves[..., None, None]
    hessian = jnp.einsum("tfmk,tgmk->tfg", jac, jac)
    hessian = hessian + jax.vmap(jnp.diag)(problem.coordinate_weights * moves)
    # Marquardt scaling, plus a floor that keeps coordinates no marker sees well-posed.
    diag = jnp.diagonal(hessian, axis1=1, axis2=2) + 1e-4
    system = hessian + jax.vmap(jnp.diag)(damping[:, None] * diag + (1.0 - moves))
    dx = -jnp.linalg.solve(system, (gradient * moves)[..., None])[..., 0] * moves
    trial = jnp.clip(x + dx, low, high)
    trial_cost = _cost(model, free, trial, base, problem)
    better = trial_cost < cost
    new_cost = jnp.where(better, trial_cost, cost)
    return (jnp.where(better[:, None], trial, x), jnp.where(better, damping * 0.3, damping * 10),
            new_cost, cost - new_cost > 1e-3 * new_cost + settled)

  settled = 1e-8 * model.num_markers  # an improvement below (0.1 mm)^2 per marker
  damping = jnp.full(x.shape[:1], 1e-3, x.dtype)
  cost = _cost(model, free, x, base, problem)
  x, _, cost, moving = jax.lax.fori_loop(0, iterations, step,
                                         (x, damping, cost, jnp.ones_like(cost, bool)))
  return x, cost, moving


def inverse_kinematics(model: SkeletalModel, markers, weights=None, scales=None, initial=None,
                       coordinate_targets=None, coordinate_weights=None, sequence=True,
                       segment=8, iterations=6, anchor_iterations=15, cold_iterations=60,
                       root_iterations=8):
  """Solves IK for every frame.

  For a sequence (the default), frames are warm-started from the previous frame as in
  OpenSim, and still solved in parallel: every ``segment``-th frame (an anchor) is solved
  in turn from the previous anchor, then all segments advance frame by frame together; a
  second pass restarts every anchor from the end of the segment before it and keeps the
  better solution of each frame. Independent frames (``sequence=False``) are all solved at
  once from ``initial``.

  Args:
    model: the skeletal model.
    markers: (T, M, 3) positions in metres in the model's marker order; NaN = missing.
    weights: (M,) marker weights (default 1).
    scales: (B, 3) body scale factors relative to the model (default unscaled).
    initial: (C,) coordinates the first (or every independent) frame starts from
      (default: the model's defaults).
    coordinate_targets: (C,) or (T, C) values the coordinate tasks pull towards.
    coordinate_weights: (C,) weights of the coordinate tasks (per squared radian or metre);
      0 (the default) for coordinates without a task.
    sequence: warm-start each frame from its predecessor.
    segment: frames between anchors.
    iterations: Levenberg-Marquardt iterations per warm-started frame.
    anchor_iterations: iterations per anchor (a segment away from its warm start).
    cold_iterations: iterations for frames solved from ``initial``.
    root_iterations: iterations for the root joint alone before a cold solve, fitted to
      the root body's markers where at least three are present.

  Returns:
    ``IKResult``. Frames with fewer than 3 markers, or still improving after their last
    iteration, have ``converged`` False.
  """
  markers = jnp.asarray(markers)
  dtype = markers.dtype if jnp.issubdtype(markers.dtype, jnp.floating) else jnp.float32
  markers = markers.astype(dtype)
  if markers.ndim != 3 or markers.shape[1:] != (model.num_markers, 3):
    raise ValueError(f"inverse_kinematics({model.name}): markers must be (frames, "
                     f"{model.num_markers}, 3), got {markers.shape}")
  frames = markers.shape[0]
  free = free_coordinates(model)
  index = np.array(free)
  weights = jnp.ones(model.num_markers, dtype) if weights is None else jnp.asarray(weights, dtype)
  if weights.shape != (model.num_markers,):
    raise ValueError(f"inverse_kinematics({model.name}): weights must be "
                     f"({model.num_markers},), got {weights.shape}")
  problem = _Problem(
      targets=markers,
      weights=jnp.broadcast_to(weights, markers.shape[:2]),
      coordinate_targets=jnp.broadcast_to(jnp.asarray(
          0.0 if coordinate_targets is None else coordinate_targets, dtype),
          (frames, model.num_coordinates))[:, index],
      coordinate_weights=jnp.zeros(len(free), dtype) if coordinate_weights is None else (
          jnp.asarray(coordinate_weights, dtype)[index]),
      scales=None if scales is None else jnp.asarray(scales, dtype))
  base = jnp.asarray(model.coordinate_defaults if initial is None else initial, dtype)
  if sequence:
    x, moving = _solve_sequence(model, problem, base, free=free, segment=min(segment, frames),
                                iterations=iterations, anchor_iterations=anchor_iterations,
                                cold_iterations=cold_iterations,
                                root_iterations=root_iterations)
  else:
    x, moving = _solve_independent(model, problem, base, free=free,
                                   iterations=cold_iterations, root_iterations=root_iterations)
  coords = kinematics.resolve_coordinates(model, _full(free, x, base).T).T
  return _report(model, coords, markers, problem.scales, moving)


def _bounds(model, free, dtype):
  index = np.array(free)
  low, high = jnp.asarray(model.coordinate_ranges, dtype)[index].T
  clamped = jnp.asarray(model.coordinate_clamped)[index]
  return jnp.where(clamped, low, -jnp.inf), jnp.where(clamped, high, jnp.inf)


def _solve_frames(model, free, problem, x, base, root_iterations, iterations):
  """Frames of ``problem`` from starting points x (N, F): the root alone, then everything."""
  dtype = x.dtype
  low, high = _bounds(model, free, dtype)
  if root_iterations:
    root_coords = {c for j, _, c in model.axis_inputs if j == model.root_joint}
    root_active = jnp.asarray([c in root_coords for c in free], dtype)
    root_markers = np.array([b == model.root_body for b in model.marker_body], float)
    present = jnp.sum(~jnp.isnan(problem.targets[..., 0]) * root_markers, axis=1, keepdims=True)
    root_weights = jnp.where(present >= 3, problem.weights * root_markers, problem.weights)
    x, _, _ = _levenberg_marquardt(model, free, root_active, low, high, root_iterations, x,
                                   base, problem._replace(weights=root_weights))
  return _levenberg_marquardt(model, free, jnp.ones(len(free), dtype), low, high, iterations,
                              x, base, problem)


@functools.partial(jax.jit, static_argnames=("free", "iterations", "root_iterations"))
def _solve_independent(model, problem, base, *, free, iterations, root_iterations):
  x = jnp.broadcast_to(base[np.array(free)], (problem.targets.shape[0], len(free)))
  x, _, moving = _solve_frames(model, free, problem, x, base, root_iterations, iterations)
  return x, moving


def _per_frame(problem, fn):
  """Applies fn to the per-frame fields of a problem (targets, weights, coordinate targets)."""
  return problem._replace(targets=fn(problem.targets), weights=fn(problem.weights),
                          coordinate_targets=fn(problem.coordinate_targets))


@functools.partial(jax.jit, static_argnames=("free", "segment", "iterations",
                                             "anchor_iterations", "cold_iterations",
                                             "root_iterations"))
def _solve_sequence(model, problem, base, *, free, segment, iterations, anchor_iterations,
                    cold_iterations, root_iterations):
  frames = problem.targets.shape[0]
  count = -(-frames // segment)
  pad = count * segment - frames  # empty frames (no markers) complete the last segment

  def split(a):  # (T, ...) -> (segment, count, ...): position in the segment first
    fill = np.nan if a.ndim == 3 else 0.0
    a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1), constant_values=fill)
    return jnp.swapaxes(a.reshape((count, segment) + a.shape[1:]), 0, 1)

  parts = _per_frame(problem, split)
  anchors_problem = _per_frame(parts, lambda a: a[0])  # (count, ...)
  x0 = base[np.array(free)][None]
  first, _, _ = _solve_frames(model, free, _per_frame(anchors_problem, lambda a: a[:1]), x0,
                              base, root_iterations, cold_iterations)

  def anchor(previous, k):  # anchors in turn, each from the one before
    one = _per_frame(anchors_problem, lambda a: jax.lax.dynamic_index_in_dim(a, k))
    x, cost, moving = _solve_frames(model, free, one, previous, base, 0, anchor_iterations)
    return x, (x[0], cost[0], moving[0])

  def advance(previous, part):  # every segment one frame on, from the frame before
    x, cost, moving = _solve_frames(model, free, problem._replace(
        targets=part[0], weights=part[1], coordinate_targets=part[2]), previous, base, 0,
        iterations)
    return x, (x, cost, moving)

  rest = (parts.targets[1:], parts.weights[1:], parts.coordinate_targets[1:])

  def segments(anchors):  # (segment, count, ...) solutions, costs and flags
    _, out = jax.lax.scan(advance, anchors[0], rest)
    return tuple(jnp.concatenate([a[None], b]) for a, b in zip(anchors, out))

  _, anchors = jax.lax.scan(anchor, first, jnp.arange(count))
  x, cost, moving = segments(anchors)
  # Second pass: every anchor again, now from the last frame of the segment before it (one
  # frame earlier, where the first pass came from an anchor a segment away); keep the
  # better solution of each frame.
  start = jnp.concatenate([x[0, :1], x[-1, :-1]])
  again = _solve_frames(model, free, anchors_problem, start, base, 0, iterations)
  x2, cost2, moving2 = segments(again)
  better = cost2 < cost
  x = jnp.where(better[..., None], x2, x)
  moving = jnp.where(better, moving2, moving)
  unsplit = lambda a: jnp.swapaxes(a, 0, 1).reshape((count * segment,) + a.shape[2:])[:frames]
  return unsplit(x), unsplit(moving)


def _report(model, coords, markers, scales, moving):
  fitted = forward_kinematics(model, coords, scales=scales).markers
  errors = jnp.linalg.norm(fitted - markers, axis=-1)  # NaN where missing
  present = ~jnp.isnan(errors)
  count = jnp.sum(present, axis=1)
  rms = jnp.sqrt(jnp.sum(jnp.where(present, errors, 0.0)**2, axis=1) / jnp.maximum(count, 1))
  worst = jnp.max(jnp.where(present, errors, -1.0), axis=1)
  return IKResult(coords=coords, rms_error=jnp.where(count > 0, rms, jnp.nan),
                  max_error=jnp.where(count > 0, worst, jnp.nan), marker_errors=errors,
                  converged=(count >= 3) & jnp.isfinite(rms) & ~moving)


def inverse_kinematics_chunks(model: SkeletalModel, markers, chunk=256, initial=None, **kwargs):
  """Yields ``IKResult``s of consecutive chunks of a long sequence (for progress reports).

  Each chunk starts from the previous chunk's last solution; the last chunk is padded with
  empty frames so that every chunk reuses one compilation.
  """
  markers = np.asarray(markers)
  for start in range(0, markers.shape[0], chunk):
    block = markers[start:start + chunk]
    valid = block.shape[0]
    if start and valid < chunk:
      block = np.concatenate([block, np.full((chunk - valid,) + block.shape[1:], np.nan)])
    result = inverse_kinematics(model, block, initial=initial, **kwargs)
    result = jax.tree.map(lambda a: a[:valid], result)
    initial = result.coords[-1]
    yield result
