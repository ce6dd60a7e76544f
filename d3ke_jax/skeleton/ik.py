"""Inverse kinematics: coordinates that best fit measured markers, batched over frames.

A damped Gauss-Newton (Levenberg-Marquardt) solver, vectorized over frames. The Jacobian is
analytic: a rotation axis moves every point below it by ``omega x (p - o)``, a translation
axis along its world direction; this costs a few FK evaluations instead of one per
coordinate (``jax.jacfwd``), which is what makes batched IK fast. Bounds: clamped
coordinates stay in their ranges (an active set); unclamped ones are free. A sequence is
tracked frame to frame and then smoothed with a temporal prior (``inverse_kinematics``).
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


# The temporal prior of a sequence (see ``inverse_kinematics``): weight per squared
# radian per second of each rotational coordinate's velocity. In a frame's units (marker
# weight times squared metres) a change from one frame to the next weighs
# ``SMOOTHING_WEIGHT * rate**2`` per squared radian (0.02 at 100 Hz), so that a coordinate
# the markers barely determine, with curvature h per squared radian, is averaged over about
# ``sqrt(SMOOTHING_WEIGHT / h)`` seconds whatever the frame rate.
SMOOTHING_WEIGHT = 2e-6
# The same pass pulls every rotational coordinate towards the model's default pose with this
# weight per squared radian: negligible where markers determine a coordinate (curvature
# 1e-2 and more), it decides the directions they leave open (how the spine's nine joints
# share a bend) instead of the marker noise, which would make them drift.
POSE_WEIGHT = 1e-4
# Tracking: each solve of a sequence also pulls the rotational coordinates towards its
# starting pose with this weight per squared radian, so that coordinates the markers do
# not separate (the spine's nine joints, gimbal-locked shoulders) stay where they were
# instead of following the noise or jumping to an equally good mirror solution.
TRACKING_WEIGHT = 1e-3


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


def unobserved_coordinates(model: SkeletalModel, marker_names=None):
  """Free coordinates that move none of the markers (default: all of the model's): IK
  leaves them at their starting values."""
  names = model.marker_names if marker_names is None else set(marker_names)
  seen = np.array([n in names for n in model.marker_names], float)
  moved = _moves(model.joint_parent_body, model.joint_child_body, model.marker_body) @ seen
  observed = {c for j, _, c in model.axis_inputs if moved[j] > 0}
  return tuple(c for c in free_coordinates(model) if c not in observed)


def inseparable_coordinates(model: SkeletalModel, marker_names=None, poses=8):
  """Groups of free coordinates that the markers (default: all of the model's) move, yet
  never tell apart: only a combination of each group is determined, at every pose (e.g.
  two rotations about one axis with no marker on the body between them). IK leaves the
  rest of such a group where its pose prior puts it.

  Found from the marker Jacobian at ``poses`` poses (the default and random ones): its
  directions that move no marker at any of them. A coordinate that the markers separate
  only weakly, or only at some poses, is not in a group.
  """
  names = model.marker_names if marker_names is None else set(marker_names)
  used = np.array([n in names for n in model.marker_names])
  free = free_coordinates(model)
  blind = set(unobserved_coordinates(model, marker_names))
  observed = np.array([k for k, c in enumerate(free) if c not in blind])
  base = np.asarray(model.coordinate_defaults, np.float32)
  q = _full(free, _starting_poses(model, free, base, poses), base)
  _, jacobian = jax.jit(_marker_jacobian, static_argnums=1)(model, free, q, None)
  columns = np.moveaxis(np.asarray(jacobian, float)[:, observed][:, :, used], 1, -1)
  columns = columns.reshape(-1, len(observed))
  columns /= np.linalg.norm(columns, axis=0)
  _, singular, directions = np.linalg.svd(columns, full_matrices=False)
  # Exact null directions sit at float32 rounding (~1e-8 of the largest singular value);
  # the weakest real ones of the paper's models at ~1e-3.
  null = directions[singular < 1e-5 * singular[0]]
  linked = np.abs(null.T @ null) > 1e-2  # (F', F'): share a null direction
  groups, seen = [], set()
  for k in np.nonzero(np.diag(linked))[0]:
    if k not in seen:
      group = set(np.nonzero(linked[k])[0])
      seen |= group
      groups.append(tuple(sorted(free[observed[i]] for i in group)))
  return tuple(groups)


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
  return (first.astype(np.int32), np.array(extra_axes, np.int32),
          np.array(extra_columns, np.int32))


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
  present = _present(problem.targets)
  sqrt_w = jnp.sqrt(jnp.where(present, problem.weights, 0.0))[..., None]
  return sqrt_w, sqrt_w * (markers - jnp.where(present[..., None], problem.targets, 0.0))


def _cost_of(problem, x, residual):
  """Per-frame cost: squared weighted marker residuals plus the coordinate tasks."""
  return jnp.sum(residual**2, axis=(-1, -2)) + jnp.sum(
      problem.coordinate_weights * (x - problem.coordinate_targets)**2, axis=-1)


def _evaluate(model, free, base, problem, x):
  """Frames x (N, F): their markers, marker Jacobian and per-frame cost."""
  markers, jac = _marker_jacobian(model, free, _full(free, x, base), problem.scales)
  return markers, jac, _cost_of(problem, x, _weighted_error(problem, markers)[1])


def _gauss_newton(problem, x, markers, jac, low, high, active, extra_gradient=0.0):
  """The gradient (N, F) of the frames' costs at x (plus ``extra_gradient``), which
  coordinates move (N, F; 0/1: ``active`` and not held at a bound the descent pushes
  against), and the Gauss-Newton Hessian (N, F, F) of the marker and coordinate costs in
  the moving coordinates."""
  sqrt_w, residual = _weighted_error(problem, markers)
  # (N, F, 3M): one contracted axis makes the products batched matrix products (on
  # XLA:CPU three times faster than contracting markers and components apart).
  weighted = (jac * sqrt_w[:, None]).reshape(jac.shape[:2] + (-1,))
  gradient = jnp.einsum("tfa,ta->tf", weighted, residual.reshape(len(x), -1)) + (
      problem.coordinate_weights * (x - problem.coordinate_targets)) + extra_gradient
  blocked = ((x <= low) & (gradient > 0)) | ((x >= high) & (gradient < 0))
  moves = (active & ~blocked).astype(x.dtype)
  weighted = weighted * moves[..., None]
  hessian = jnp.einsum("tfa,tga->tfg", weighted, weighted)
  hessian = hessian + jax.vmap(jnp.diag)(problem.coordinate_weights * moves)
  return gradient, moves, hessian


def _levenberg_marquardt(model, free, x, base, problem, iterations, root=None):
  """Levenberg-Marquardt iterations for frames x (N, F).

  ``iterations`` may be traced (one compiled loop for several uses). ``root`` (optional):
  (iterations, weights (N, M)) of a first phase in which only the
  root joint's coordinates move, fitted with those marker weights. Clamped coordinates
  stay in their ranges (an active set: a coordinate held at a bound that the descent
  pushes against is left out of the step). Each iteration evaluates the model once, at
  its trial point (markers and Jacobian together; an accepted trial's Jacobian is the
  next step's), so the loop body holds one forward kinematics. Returns the solution, its
  markers, its cost, and whether the last iteration still lowered the cost by more than
  0.1 % and (0.1 mm)^2 per marker (the frame has not settled).
  """
  dtype = x.dtype
  low, high = _bounds(model, free, dtype)
  root_iterations, root_weights = root if root is not None else (0, problem.weights)
  root_coordinates = {c for j, _, c in model.axis_inputs if j == model.root_joint}
  root_active = jnp.asarray([c in root_coordinates for c in free])
  settled = 1e-8 * model.num_markers  # an improvement below (0.1 mm)^2 per marker

  def step(i, state):
    x, markers, jac, damping, _, _ = state
    # Iteration 0 evaluates the start (a zero step); then the iterations proper.
    in_root_phase = i <= root_iterations
    phase = problem._replace(weights=jnp.where(in_root_phase, root_weights, problem.weights))
    cost = jnp.where(i > 0, _cost_of(phase, x, _weighted_error(phase, markers)[1]), jnp.inf)
    gradient, moves, hessian = _gauss_newton(
        phase, x, markers, jac, low, high, jnp.where(in_root_phase, root_active, True) & (i > 0))
    # Marquardt scaling, plus a floor that keeps coordinates no marker sees well-posed.
    diag = jnp.diagonal(hessian, axis1=1, axis2=2) + 1e-4
    system = hessian + jax.vmap(jnp.diag)(damping[:, None] * diag + (1.0 - moves))
    dx = -jnp.linalg.solve(system, (gradient * moves)[..., None])[..., 0] * moves
    trial = jnp.clip(x + dx, low, high)
    trial_markers, trial_jac, trial_cost = _evaluate(model, free, base, phase, trial)
    better = trial_cost < cost
    new_cost = jnp.where(better, trial_cost, cost)
    damping = jnp.where(i > 0, jnp.where(better, damping * 0.3, damping * 10), damping)
    pick = lambda new, old: jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
    return (pick(trial, x), pick(trial_markers, markers), pick(trial_jac, jac), damping,
            new_cost, cost - new_cost > 1e-3 * new_cost + settled)

  n, f = x.shape
  state = (x, jnp.zeros((n, model.num_markers, 3), dtype),
           jnp.zeros((n, f, model.num_markers, 3), dtype), jnp.full((n,), 1e-3, dtype),
           jnp.zeros((n,), dtype), jnp.ones((n,), bool))
  x, markers, _, _, cost, moving = jax.lax.fori_loop(0, 1 + root_iterations + iterations,
                                                     step, state)
  return x, markers, cost, moving


def inverse_kinematics(model: SkeletalModel, markers, weights=None, scales=None, initial=None,
                       coordinate_targets=None, coordinate_weights=None, sequence=True,
                       rate=None, smoothing_weight=SMOOTHING_WEIGHT, starts=8, segment=2,
                       iterations=3, anchor_iterations=5, cold_iterations=60,
                       root_iterations=8, smoothing_iterations=8):
  """Solves IK for every frame.

  A sequence (the default) is solved in two passes. Tracking: the first frame from
  ``starts`` starting poses (the best fit, with a pull towards the default pose, wins),
  then every ``segment``-th frame (an anchor) warm-started from the anchor before, as
  OpenSim does from frame to frame; then all frames between anchors at once, each started
  on the line between its two anchors. Smoothing (the temporal prior): the whole
  sequence at once, from the tracked solution, minimising the marker costs of all frames
  plus ``smoothing_weight`` times each rotational coordinate's squared velocity, and a
  weak pull towards the default pose (``POSE_WEIGHT``). Coordinates the markers barely
  determine (how the spine's joints share a rotation, forearm rotation, toes) are then
  averaged over many frames instead of following the marker noise, while well-determined
  ones keep their fit. Independent frames (``sequence=False``) are all solved at once
  from ``initial``, without a prior.

  Args:
    model: the skeletal model.
    markers: (T, M, 3) positions in metres in the model's marker order; a marker with a
      NaN or infinite component is missing in that frame.
    weights: (M,) marker weights (default 1).
    scales: (B, 3) body scale factors relative to the model (default unscaled).
    initial: (C,) coordinates the first (or every independent) frame starts from; when
      given, the first frame of a sequence starts from it alone and the temporal prior
      links the first frame to it (continuing a sequence).
      Default: the model's default pose.
    coordinate_targets: (C,) or (T, C) values the coordinate tasks pull towards.
    coordinate_weights: (C,) weights of the coordinate tasks (per squared radian or metre);
      0 (the default) for coordinates without a task.
    sequence: solve the frames as a sequence (tracking and smoothing).
    rate: frames per second of a sequence (needed to smooth one of several frames).
    smoothing_weight: weight of the temporal prior per squared radian per second, in the
      units of the marker cost (marker weight times squared metres); 0 turns it off, and
      the pull towards the default pose with it (the smoothing pass then fits each frame
      on its own).
    starts: starting poses of the first frame of a sequence: the default pose and
      ``starts - 1`` random poses within the coordinates' ranges (fixed seed).
    segment: frames from one anchor to the next (2: larger gaps are faster but lose fast
      motions, e.g. limbs swinging 60 deg in 8 frames at 30 fps).
    iterations: Levenberg-Marquardt iterations of the frames between anchors.
    anchor_iterations: iterations per anchor (a segment away from its warm start).
    cold_iterations: iterations for frames solved from a starting pose.
    root_iterations: iterations for the root joint alone before a cold solve, fitted to
      the root body's markers where at least three are present.
    smoothing_iterations: iterations of the smoothing pass.

  Returns:
    ``IKResult``. Frames with fewer than 3 markers, or still improving after their last
    iteration, have ``converged`` False.

  Raises:
    ValueError: no frames, or arrays of the wrong shape.
  """
  markers = markers if isinstance(markers, jax.Array) else np.asarray(markers)
  dtype = jax.dtypes.canonicalize_dtype(
      markers.dtype if jnp.issubdtype(markers.dtype, jnp.floating) else jnp.float32)
  if markers.ndim != 3 or markers.shape[1:] != (model.num_markers, 3):
    raise ValueError(f"inverse_kinematics({model.name}): markers must be (frames, "
                     f"{model.num_markers}, 3), got {markers.shape}")
  frames = markers.shape[0]
  if not frames:
    raise ValueError(f"inverse_kinematics({model.name}): no frames to solve")
  smoothing = sequence and frames > 1 and smoothing_weight > 0
  if smoothing and not (rate is not None and rate > 0):
    raise ValueError(f"inverse_kinematics({model.name}): a sequence needs its frame rate "
                     f"(rate, frames per second) for the temporal prior, got {rate}")
  free = free_coordinates(model)
  index = np.array(free)
  weights = np.ones(model.num_markers, dtype) if weights is None else weights
  if np.shape(weights) != (model.num_markers,):
    raise ValueError(f"inverse_kinematics({model.name}): weights must be "
                     f"({model.num_markers},), got {np.shape(weights)}")
  base = np.asarray(model.coordinate_defaults if initial is None else initial, dtype)
  if not sequence:
    first = None
  elif initial is None:
    first = _starting_poses(model, free, base, starts)
  else:  # a given start fills every row, so that continuing a sequence reuses the program
    first = np.broadcast_to(base[index], (starts, len(free)))
  used_starts = np.int32(starts if initial is None else 1)
  coordinate_weights = (np.zeros(len(free), dtype) if coordinate_weights is None
                        else np.asarray(coordinate_weights, dtype)[index])
  return _solve(model, markers, weights, scales, base, first, used_starts,
                0.0 if coordinate_targets is None else coordinate_targets, coordinate_weights,
                (smoothing_weight * rate**2, POSE_WEIGHT) if smoothing else (0.0, 0.0),
                free=free, dtype=dtype, segment=min(segment, frames), iterations=iterations,
                anchor_iterations=anchor_iterations, cold_iterations=cold_iterations,
                root_iterations=root_iterations, smoothing_iterations=smoothing_iterations)


@functools.partial(jax.jit, static_argnames=(
    "free", "dtype", "segment", "iterations", "anchor_iterations", "cold_iterations",
    "root_iterations", "smoothing_iterations"))
def _solve(model, markers, weights, scales, base, first, used_starts, coordinate_targets,
           coordinate_weights, priors, *, free, dtype, segment, iterations,
           anchor_iterations, cold_iterations, root_iterations, smoothing_iterations):
  """``inverse_kinematics`` after its checks, compiled as one program (no operation runs
  eagerly, each of which would compile on its own)."""
  markers = markers.astype(dtype)
  # A marker with any component missing is missing.
  markers = jnp.where(jnp.all(jnp.isfinite(markers), -1, keepdims=True), markers, jnp.nan)
  frames = markers.shape[0]
  problem = _Problem(
      targets=markers,
      weights=jnp.broadcast_to(jnp.asarray(weights, dtype), markers.shape[:2]),
      coordinate_targets=jnp.broadcast_to(jnp.asarray(coordinate_targets, dtype),
                                          (frames, model.num_coordinates))[:, np.array(free)],
      coordinate_weights=coordinate_weights,
      scales=None if scales is None else jnp.asarray(scales, dtype))
  if first is None:
    x, fitted, moving = _solve_independent(model, problem, base, free=free,
                                           iterations=cold_iterations,
                                           root_iterations=root_iterations)
  else:
    x, fitted, moving = _solve_sequence(
        model, problem, base, first, used_starts, jnp.asarray(priors, dtype),
        free=free, segment=segment, iterations=iterations,
        anchor_iterations=anchor_iterations, cold_iterations=cold_iterations,
        root_iterations=root_iterations, smoothing_iterations=smoothing_iterations)
  coords = kinematics.resolve_coordinates(model, _full(free, x, base).T).T
  return _report(coords, fitted, markers, moving)


def _bounds(model, free, dtype):
  index = np.array(free)
  low, high = jnp.asarray(model.coordinate_ranges, dtype)[index].T
  clamped = jnp.asarray(model.coordinate_clamped)[index]
  return jnp.where(clamped, low, -jnp.inf), jnp.where(clamped, high, jnp.inf)


def _starting_poses(model, free, base, starts):
  """(starts, F): the free coordinates of ``base``, then random poses (fixed seed) with
  rotations uniform in their ranges (within +-pi) and translations at ``base``."""
  index = np.array(free)
  low, high = np.clip(np.asarray(model.coordinate_ranges, float)[index].T, -np.pi, np.pi)
  rotational = np.array([model.coordinate_types[i] == "rotational" for i in free])
  random = np.random.default_rng(0).uniform(low, high, (starts - 1, len(free)))
  poses = np.where(rotational, random, base[index])
  return np.concatenate([base[index][None], poses]).astype(base.dtype)


def _root_weights(model, problem):
  """Marker weights that fit the root joint to the root body's markers where at least
  three are present (else to all markers)."""
  root_markers = np.array([b == model.root_body for b in model.marker_body], float)
  present = jnp.sum(_present(problem.targets) * root_markers, axis=1, keepdims=True)
  return jnp.where(present >= 3, problem.weights * root_markers, problem.weights)


def _cold_solve(model, free, problem, x, base, root_iterations, iterations):
  """Frames of ``problem`` from starting poses x (N, F): the root alone, then everything."""
  return _levenberg_marquardt(model, free, x, base, problem, iterations,
                              root=(root_iterations, _root_weights(model, problem)))


def _solve_independent(model, problem, base, *, free, iterations, root_iterations):
  x = jnp.broadcast_to(base[np.array(free)], (problem.targets.shape[0], len(free)))
  x, markers, _, moving = _cold_solve(model, free, problem, x, base, root_iterations,
                                      iterations)
  return x, markers, moving


def _per_frame(problem, fn):
  """Applies fn to the per-frame fields of a problem (targets, weights, coordinate targets)."""
  return problem._replace(targets=fn(problem.targets), weights=fn(problem.weights),
                          coordinate_targets=fn(problem.coordinate_targets))


def _with_prior(model, free, problem, target, weight):
  """``problem`` with its rotational coordinates also pulled towards ``target`` (N, F) with
  ``weight`` (two quadratic pulls on a coordinate add up to one towards their weighted
  mean)."""
  rotational = jnp.asarray([model.coordinate_types[c] == "rotational" for c in free],
                           target.dtype)
  prior = weight * rotational
  total = problem.coordinate_weights + prior
  mean = (problem.coordinate_weights * problem.coordinate_targets
          + prior * target) / jnp.where(total > 0, total, 1.0)
  return problem._replace(coordinate_targets=mean, coordinate_weights=total)


def _block_tridiagonal_solve(diagonal, coupling, rhs):
  """Solves the symmetric block-tridiagonal system with diagonal blocks (T, F, F) and
  off-diagonal blocks -diag(coupling[t]) (T, F) between frames t - 1 and t (coupling[0]
  unused), right-hand side (T, F): block elimination forwards, substitution backwards."""

  def eliminate(carry, inputs):
    inverse, z = carry
    block, c, b = inputs
    block = block - c[:, None] * inverse * c[None, :]
    z = b + c * (inverse @ z)
    inverse = jnp.linalg.inv(block)
    return (inverse, z), (inverse, z)

  f = rhs.shape[-1]
  start = (jnp.zeros((f, f), rhs.dtype), jnp.zeros((f,), rhs.dtype))
  _, (inverses, zs) = jax.lax.scan(eliminate, start, (diagonal, coupling, rhs))

  def substitute(y_next, inputs):
    inverse, z, c_next = inputs
    y = inverse @ (z + c_next * y_next)
    return y, y

  c_next = jnp.concatenate([coupling[1:], jnp.zeros_like(coupling[:1])])
  _, y = jax.lax.scan(substitute, jnp.zeros((f,), rhs.dtype), (inverses, zs, c_next),
                      reverse=True)
  return y


def _smooth(model, free, problem, x, base, valid, weight, previous, link, iterations):
  """Gauss-Newton on the whole sequence: the marker and coordinate costs of every frame
  plus ``weight`` times the squared change of each rotational coordinate from one valid
  frame to the next (a first-difference prior), and ``link`` times its change from
  ``previous`` (F,), the last frame of the chunk before, to the first frame. Each step
  solves one block-tridiagonal system, so a coordinate the markers barely determine is
  averaged over many frames while a well-determined one keeps its fit. Returns the
  solution, its markers, and per frame whether the last step still changed its cost by
  more than 0.1 % and (0.1 mm)^2 per marker (as ``_levenberg_marquardt``)."""
  dtype = x.dtype
  low, high = _bounds(model, free, dtype)
  rotational = jnp.asarray([model.coordinate_types[c] == "rotational" for c in free], dtype)
  pair = weight * (valid[1:] & valid[:-1]).astype(dtype)  # (T - 1,)
  pair = jnp.concatenate([(link * valid[0])[None], pair])  # pair[t]: frames t - 1 and t
  settled = 1e-8 * model.num_markers

  prior = pair[:, None] * rotational  # (T, F): weight of each change from the frame before

  def change(x):  # (T, F): from each frame's predecessor
    return x - jnp.concatenate([previous[None], x[:-1]])

  def prior_cost(x):
    return jnp.sum(prior * change(x)**2)

  def step(i, state):
    x, markers, jac, damping, _ = state
    frame_cost = _cost_of(problem, x, _weighted_error(problem, markers)[1])
    cost = jnp.where(i > 0, jnp.sum(frame_cost) + prior_cost(x), jnp.inf)
    difference = prior * change(x)
    zero = jnp.zeros_like(x[:1])
    gradient, moves, hessian = _gauss_newton(
        problem, x, markers, jac, low, high, i > 0,
        difference - jnp.concatenate([difference[1:], zero]))
    extra = (prior + jnp.concatenate([prior[1:], zero])) * moves
    diag = jnp.diagonal(hessian, axis1=1, axis2=2) + extra + 1e-4
    system = hessian + jax.vmap(jnp.diag)(extra + damping * diag + (1.0 - moves))
    coupling = prior * moves * jnp.concatenate([zero, moves[:-1]])
    dx = _block_tridiagonal_solve(system, coupling, -gradient * moves) * moves
    trial = jnp.clip(x + dx, low, high)
    trial_markers, trial_jac, trial_frame_cost = _evaluate(model, free, base, problem, trial)
    better = jnp.sum(trial_frame_cost) + prior_cost(trial) < cost
    progress = jnp.where(better & (i > 0), jnp.abs(trial_frame_cost - frame_cost), 0.0)
    damping = jnp.where(i > 0, jnp.where(better, damping * 0.3, damping * 10), damping)
    pick = lambda new, old: jnp.where(better, new, old)
    return (pick(trial, x), pick(trial_markers, markers), pick(trial_jac, jac), damping,
            progress > 1e-3 * pick(trial_frame_cost, frame_cost) + settled)

  n, f = x.shape
  state = (x, jnp.zeros((n, model.num_markers, 3), dtype),
           jnp.zeros((n, f, model.num_markers, 3), dtype), jnp.asarray(1e-3, dtype),
           jnp.ones((n,), bool))
  x, markers, _, _, moving = jax.lax.fori_loop(0, 1 + iterations, step, state)
  return x, markers, moving


def _solve_sequence(model, problem, base, first, used_starts, priors, *, free, segment,
                    iterations, anchor_iterations, cold_iterations, root_iterations,
                    smoothing_iterations):
  """Tracking frame to frame, then the in-between frames, then the temporal prior.

  Two compiled Levenberg-Marquardt loops serve the tracking: one for a single frame (the
  first frame from each start, then the anchors in turn), one for all frames at once;
  the smoothing is one Gauss-Newton loop over the whole sequence (``_smooth``). ``priors``:
  the weights of the temporal prior (per squared radian from one frame to the next) and of
  the pull towards the default pose.
  """
  frames = problem.targets.shape[0]
  anchor_frames = np.arange(0, frames, segment)
  anchors = _per_frame(problem, lambda a: a[anchor_frames])
  starts = first.shape[0]

  def track(carry, k):
    """Step k < starts: the first frame from start k (the lowest cost wins; all share one
    objective: the markers and the pull towards the first start). Then anchor k - starts
    from the anchor before."""
    previous, best = carry
    cold = k < starts
    skipped = cold & (k >= used_starts)
    one = _per_frame(anchors, lambda a: jax.lax.dynamic_slice_in_dim(
        a, jnp.maximum(k - starts, 0), 1))
    one = _with_prior(model, free, one, jnp.where(cold, first[0], previous)[None],
                      TRACKING_WEIGHT)
    start = jnp.where(cold, first[jnp.minimum(k, starts - 1)], previous)
    count = jnp.where(cold, cold_iterations, anchor_iterations) * ~skipped
    root = (root_iterations * (cold & ~skipped), _root_weights(model, one))
    x, _, cost, _ = _levenberg_marquardt(model, free, start[None], base, one, count, root)
    cost = jnp.where(skipped, jnp.inf, cost[0])
    previous = jnp.where(cold & (cost >= best), previous, x[0])
    return (previous, jnp.where(cold, jnp.minimum(best, cost), best)), x[0]

  steps = jnp.arange(starts + len(anchor_frames))
  _, tracked = jax.lax.scan(track, (first[0], jnp.asarray(jnp.inf, first.dtype)), steps)
  tracked = tracked[starts:]
  # Frames between anchors start between them (linearly), and the frames after the last
  # anchor from it.
  position = np.minimum(np.arange(frames) / segment, len(anchor_frames) - 1)
  below = np.floor(position).astype(int)
  above = np.minimum(below + 1, len(anchor_frames) - 1)
  fraction = jnp.asarray(position - below, tracked.dtype)[:, None]
  x = (1 - fraction) * tracked[below] + fraction * tracked[above]
  x, markers, _, moving = _levenberg_marquardt(
      model, free, x, base, _with_prior(model, free, problem, x, TRACKING_WEIGHT), iterations)
  if not smoothing_iterations:
    return x, markers, moving
  default = jnp.broadcast_to(
      jnp.asarray(model.coordinate_defaults, x.dtype)[np.array(free)], x.shape)
  valid = jnp.sum(_present(problem.targets), axis=1) >= 3
  # A continuing chunk (one start: the previous chunk's last frame) is linked to it.
  link = priors[0] * (used_starts == 1)
  return _smooth(model, free, _with_prior(model, free, problem, default, priors[1]), x, base,
                 valid, priors[0], first[0], link, smoothing_iterations)


def _present(targets):
  return ~jnp.isnan(targets[..., 0])


def _report(coords, fitted, markers, moving):
  """The solution with its marker errors (``fitted``: the model's markers there)."""
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

  Each chunk starts from the previous chunk's last solution. Chunks are padded with empty
  frames to ``chunk`` frames (a sequence shorter than that: to the next power of two, at
  least 32), so that trials of any length share a few compilations.
  """
  markers = np.asarray(markers)
  frames = markers.shape[0]
  size = chunk if frames >= chunk else min(chunk, max(32, 1 << (frames - 1).bit_length()))
  for start in range(0, frames, chunk):
    block = markers[start:start + chunk]
    valid = block.shape[0]
    block = np.concatenate([block, np.full((size - valid,) + block.shape[1:], np.nan)])
    result = inverse_kinematics(model, block, initial=initial, **kwargs)
    result = jax.tree.map(lambda a: np.asarray(a)[:valid], result)
    initial = result.coords[-1]
    yield result
