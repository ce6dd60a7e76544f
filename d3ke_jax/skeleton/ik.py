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
# radian per second of each rotational coordinate's velocity, at markers as noisy as
# ``REFERENCE_NOISE``. The solver estimates the noise of each trial from its residuals and
# scales the weight by (noise / REFERENCE_NOISE)^2, as a Gaussian velocity prior's weight
# in the marker cost would scale: exact markers get no prior, and a coordinate the markers
# determine keeps its fit. In a frame's units (marker weight times squared metres) a
# change from one frame to the next weighs ``SMOOTHING_WEIGHT * rate**2`` per squared
# radian (0.01 at 100 Hz), so that a coordinate the markers barely determine, with
# curvature h per squared radian, is averaged over about ``sqrt(SMOOTHING_WEIGHT / h)``
# seconds whatever the frame rate.
SMOOTHING_WEIGHT = 1e-6
REFERENCE_NOISE = 0.005  # metres, RMS distance
# Tracking (the starting point of the final pass, not its answer): each solve of a
# sequence also pulls the rotational coordinates towards its starting pose with this
# weight per squared radian, so that coordinates the markers barely separate (the spine's
# nine joints, gimbal-locked shoulders) start where they were instead of following the
# noise or jumping to an equally good mirror solution.
TRACKING_WEIGHT = 1e-3
# Frames a fit leaves far off their markers are in a wrong local minimum (an arm tracked
# onto the other branch of a shoulder near its singular pose, say) or see bad markers: an
# RMS residual above OUTLIER_FACTOR times the trial's noise and OUTLIER_FLOOR metres (added
# in quadrature). The worst RESCUED_FRAMES of them are solved again from RESCUE_STARTS
# restarts of their badly fitted limbs, then each of them from its neighbours' solutions;
# the lowest cost wins (tracking restarts an anchor the same way). The floor
# (0.02 mm) is about a hundred times float32's rounding of the markers: with exact markers a
# frame held a few hundredths of a millimetre off them (at the bounds of spine joints, say)
# is rescued. The factor sits well above the spread of a frame's own noise estimate (about
# 5 % with the paper's 87 markers) and below a wrong minimum's: a leg turned round the hip
# was left at 1.49 times the noise with a factor of 1.5 (5 mm noise, 25 Hz).
OUTLIER_FACTOR = 1.25
OUTLIER_FLOOR = 2e-5
RESCUED_FRAMES = 16
RESCUE_STARTS = 8
# A marker further than FAR_FACTOR times the noise from its model marker is far off
# (Gaussian noise puts a marker there a few times in a million): the coordinates that move
# mostly such markers are restarted (``_local_starts``).
FAR_FACTOR = 3.0
# A frame has converged when its next step moves no coordinate by more than
# STEP_TOLERANCE (radians or metres) and no coordinate's gradient could lower the cost by
# more than GRADIENT_TOLERANCE^2 / 2 (|g| / sqrt(curvature) below it, in metres of marker
# distance), both times the square root of the float type's epsilon (3.5e-4 in float32,
# where forward kinematics' rounding leaves steps of about 4e-5 rad and gradients of
# 2e-6 m at the solution).
STEP_TOLERANCE = 0.3
GRADIENT_TOLERANCE = 0.03
# The convergence test measures the Gauss-Newton step with this relative damping (a
# damped step is short because of the damping, not because the frame has converged).
_UNDAMPED = 1e-4
# Under noise a frame has also converged when its remaining step would lower its cost by
# less than this fraction of the noise variance per residual component (a chi-square
# change of 0.1: a third of a standard error), whatever the float type could still resolve.
RESOLUTION = 0.1
_INITIAL_DAMPING = 1e-3
# Frames per step of the Levenberg-Marquardt loop (``_levenberg_marquardt``) and per
# batch of the smoothing pass's linearisation (``_in_batches``) on CPU: on XLA:CPU a batch
# of 32 frames is the cheapest per frame (an iteration 0.26 ms per frame on one core
# against 0.37 ms in a batch of 256, whose working set leaves the cache). Accelerators
# take all frames at once (``_batch``).
BATCH = 32


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
  never tell apart: at every pose some combination of each group moves no marker, so the
  markers determine the group only up to that combination (e.g. two rotations about one
  axis with no marker on the body between them, or two joints' axial turns about nearly
  one line, which their lateral bend sets). IK leaves that combination where tracking
  puts it.

  Found from the marker Jacobian at ``poses`` poses (the default and random ones): at each,
  its directions that move no marker. A coordinate is in a group when such directions
  move it at every pose (a direction changing from pose to pose counts); one that the
  markers separate only weakly, or only at some poses (a straight spine, a gimbal lock),
  is not.
  """
  names = model.marker_names if marker_names is None else set(marker_names)
  used = np.array([n in names for n in model.marker_names])
  free = free_coordinates(model)
  blind = set(unobserved_coordinates(model, marker_names))
  observed = np.array([k for k, c in enumerate(free) if c not in blind])
  base = np.asarray(model.coordinate_defaults, np.float32)
  q = _full(free, _starting_poses(model, free, base, poses), base)
  _, jacobian = jax.jit(_marker_jacobian, static_argnums=1)(model, free, q, None)
  columns = np.swapaxes(np.asarray(jacobian, float)[:, observed][:, :, used].reshape(
      poses, len(observed), -1), 1, 2)  # (poses, 3M, F')
  columns /= np.linalg.norm(columns, axis=1, keepdims=True)
  _, singular, directions = np.linalg.svd(columns, full_matrices=False)
  # Exact null directions sit at float32 rounding (~1e-8 of the largest singular value);
  # the weakest real ones of the paper's models at ~1e-5.
  null = directions * (singular < 1e-6 * singular[:, :1])[..., None]  # (poses, F', F')
  overlap = np.abs(np.einsum("pnf,png->pfg", null, null))  # shared null directions
  # Moved by null directions at every pose, by at least a tenth of their length.
  undetermined = np.min(np.diagonal(overlap, axis1=1, axis2=2), axis=0) > 1e-2
  linked = (np.max(overlap, axis=0) > 1e-2) & undetermined & undetermined[:, None]
  groups, seen = [], set()
  for k in np.nonzero(undetermined)[0]:
    if k not in seen:
      group, frontier = {k}, {k}
      while frontier:
        frontier = set(np.nonzero(linked[list(frontier)].any(0))[0]) - group
        group |= frontier
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


def _axis_columns(axis_inputs, couplers, free):
  """(A,) the free coordinate (its index in ``free``) that drives each axis, -1 for none:
  every coordinate follows one free coordinate (itself, or the independent coordinate at
  the top of its coupler chain), or none when locked."""
  source = {c: c for c in free}
  for dependent, independent in couplers:  # inputs first
    if independent in source:
      source[dependent] = source[independent]
  column = {c: free.index(source[c]) for c in source}
  return np.array([column.get(c, -1) for _, _, c in axis_inputs])


@functools.lru_cache(maxsize=16)
def _columns(axis_inputs, couplers, free):
  """How axis effects add up to Jacobian columns of the free coordinates: the first axis
  of every column (-1: none), and the other axes with their columns."""
  axis_column = _axis_columns(axis_inputs, couplers, free)
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


def _coordinate_markers(model, free):
  """(F, M) 1 where free coordinate f moves marker m."""
  joint = np.array([j for j, _, _ in model.axis_inputs])
  moves = _moves(model.joint_parent_body, model.joint_child_body, model.marker_body)[joint]
  driven = _axis_columns(model.axis_inputs, model.couplers, free)[:, None] == np.arange(
      len(free))  # (A, F)
  return (driven.T.astype(float) @ moves > 0).astype(np.float32)


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


def _rounding(problem, residual):
  """(N,) how much rounding can change the frames' costs, and (N,) how much it can change
  a coordinate's gradient over the square root of its curvature (metres), given their
  weighted residuals (N, 3M): forward kinematics places each marker to within a few float
  roundings of its distance from the origin. A trial within the first of the cost is no
  worse; its acceptance lets the solver follow a valley flatter than the rounding."""
  eps = jnp.finfo(residual.dtype).eps
  position = jnp.abs(jnp.nan_to_num(problem.targets)).reshape(residual.shape) + 1.0
  sqrt_w = jnp.sqrt(jnp.repeat(jnp.where(_present(problem.targets), problem.weights, 0.0),
                               3, axis=-1))
  error = sqrt_w * 4 * eps * position  # (N, 3M): of each weighted residual
  # A gradient is a Jacobian column times the residuals: its rounding over the column's
  # length is at most the length of the residuals' rounding.
  return 2 * jnp.sum(jnp.abs(residual) * error, axis=-1), jnp.linalg.norm(error, axis=-1)


def _cost_of(problem, x, residual):
  """Per-frame cost: squared weighted marker residuals plus the coordinate tasks."""
  return jnp.sum(residual**2, axis=(-1, -2)) + jnp.sum(
      problem.coordinate_weights * (x - problem.coordinate_targets)**2, axis=-1)


def _fit(model, free, base, problem, x):
  """Frames x (N, F): the model's markers there (N, M, 3) and the frames' costs (N,)."""
  markers = forward_kinematics(model, _full(free, x, base), scales=problem.scales).markers
  return markers, _cost_of(problem, x, _weighted_error(problem, markers)[1])


class _Linear(NamedTuple):
  """Frames' costs linearised at x: gradient (N, F); which coordinates move (N, F; 0/1);
  the weighted marker Jacobian rows (N, F, 3M) and residuals (N, 3M) of the moving ones."""
  gradient: jnp.ndarray
  moves: jnp.ndarray
  rows: jnp.ndarray
  residual: jnp.ndarray


def _linearise(problem, x, markers, jac, low, high, active, extra_gradient=0.0):
  """``_Linear`` of the frames' costs at x, plus ``extra_gradient``: a coordinate moves
  when ``active`` and not held at a bound the descent pushes against."""
  sqrt_w, residual = _weighted_error(problem, markers)
  residual = residual.reshape(len(x), -1)
  # (N, F, 3M): one contracted axis makes the products batched matrix products (on
  # XLA:CPU three times faster than contracting markers and components apart).
  rows = (jac * sqrt_w[:, None]).reshape(jac.shape[:2] + (-1,))
  gradient = jnp.einsum("tfa,ta->tf", rows, residual) + (
      problem.coordinate_weights * (x - problem.coordinate_targets)) + extra_gradient
  blocked = ((x <= low) & (gradient > 0)) | ((x >= high) & (gradient < 0))
  moves = (active & ~blocked).astype(x.dtype)
  return _Linear(gradient, moves, rows * moves[..., None], residual)


def _curvature(problem, linear):
  """(N, F): the Gauss-Newton Hessian's diagonal in the moving coordinates."""
  return jnp.sum(linear.rows**2, axis=-1) + problem.coordinate_weights * linear.moves


def _hessian(problem, linear):
  """(N, F, F): the Gauss-Newton Hessian of the marker and coordinate costs in the moving
  coordinates."""
  return jnp.einsum("tfa,tga->tfg", linear.rows, linear.rows) + jax.vmap(jnp.diag)(
      problem.coordinate_weights * linear.moves)


def _gauss_newton_step(problem, x, linear, hessian, regulariser, residual):
  """(N, F): the Gauss-Newton step of the moving coordinates that cancels the marker
  ``residual`` (N, 3M) and the coordinate tasks' residuals at x, with ``regulariser``
  (..., N, F) added to the diagonal of ``hessian`` (``_hessian``; several regularisers at
  once in one batched solve)."""
  system = hessian + regulariser[..., None] * jnp.eye(x.shape[-1], dtype=x.dtype)
  gradient = jnp.einsum("tfa,ta->tf", linear.rows, residual) + (
      problem.coordinate_weights * linear.moves * (x - problem.coordinate_targets))
  return -jnp.linalg.solve(system, gradient[..., None])[..., 0] * linear.moves


def _settled(newton, gradient, curvature, moves, rounding, resolution, exhausted):
  """Per frame: the gradient (N, F) is small (``GRADIENT_TOLERANCE``, scaled to metres of
  marker distance by the Hessian's diagonal ``curvature``, beyond what rounding can make of
  it), and the undamped Gauss-Newton step ``newton`` (N, F) is small (``STEP_TOLERANCE``)
  or would lower the cost by less than rounding can change it (along a flat valley under
  noise, float32 fixes the step only to within a few hundredths of a radian), or by less
  than ``resolution`` (N,): what the markers' noise can tell apart (``_resolution``), as
  the Gauss-Newton model predicts or as the cost itself along the step shows (``exhausted``,
  N: the decrease ``_parabola`` offers below ``_floor``). ``rounding``: ``_rounding``'s pair."""
  precision = np.sqrt(jnp.finfo(newton.dtype).eps)
  slope = jnp.abs(gradient * moves) / jnp.sqrt(curvature + jnp.finfo(newton.dtype).tiny)
  short = jnp.max(jnp.abs(newton), axis=-1) < STEP_TOLERANCE * precision
  futile = (-jnp.sum(gradient * moves * newton, axis=-1) < _floor(rounding, resolution)
            ) | exhausted
  # A coordinate's slope s offers at most s^2 / 2 on its own.
  flat = jnp.maximum(GRADIENT_TOLERANCE * precision + rounding[1], jnp.sqrt(2 * resolution))
  return (jnp.max(slope, axis=-1) < flat) & (short | futile)


def _floor(rounding, resolution):
  """(N,) the least change of the frames' costs worth a step: what rounding can make of
  them, or what their markers' noise can tell apart (``_resolution``)."""
  return jnp.maximum(rounding[0], resolution)


def _parabola(cost, slope, at, value):
  """The parabola with the cost's value ``cost`` and ``slope`` at the start of a step and
  ``value`` a fraction ``at`` along it: where it is lowest within that fraction, and the
  decrease it offers there (any shapes that broadcast)."""
  at = jnp.asarray(at, cost.dtype)
  reach = jnp.where(at > 0, at, 1.0)
  curvature = (value - cost - slope * reach) / reach**2
  convex = curvature > 0
  lowest = jnp.where(convex, -slope / (2 * jnp.where(convex, curvature, 1.0)),
                     jnp.where(value < cost, at, 0.0))
  lowest = jnp.clip(lowest, 0.0, at)
  return lowest, jnp.maximum(-(slope + curvature * lowest) * lowest, 0.0)


def _resolution(problem, residual, coordinates):
  """(N,) the least change of the frames' costs that their markers' noise can reveal:
  ``RESOLUTION`` times the noise variance per weighted residual component, estimated from
  the residuals (N, 3M) with ``coordinates`` degrees of freedom spent. A remaining step
  worth less lies within a third of a standard error of the solution along every
  direction (exact markers: none)."""
  freedom = 3 * jnp.sum(_present(problem.targets), axis=-1) - coordinates
  return RESOLUTION * jnp.sum(residual**2, axis=-1) / jnp.maximum(freedom, 1)


def _bounded_step(problem, x, linear, regulariser, undamped, low, high):
  """The Gauss-Newton step (N, F) within the bounds, and the free step with the
  ``undamped`` regulariser instead (for the convergence test). Coordinates whose free
  step would cross a bound stop at it, and the others' step is solved again with those
  held (clipping them alone would spoil a step whose components cancel along a weak
  direction)."""
  hessian = _hessian(problem, linear)
  dx, newton = _gauss_newton_step(problem, x, linear, hessian,
                                  jnp.stack([regulariser, undamped]), linear.residual)
  bounded = jnp.clip(x + dx, low, high) - x
  hits = (bounded != dx) & (linear.moves > 0)
  fixed = jnp.where(hits, bounded, 0.0)
  held = linear._replace(moves=linear.moves * ~hits, rows=linear.rows * ~hits[..., None])
  shifted = linear.residual + jnp.einsum("tfa,tf->ta", linear.rows, fixed)
  kept = (~hits).astype(x.dtype)  # the held coordinates' rows and columns drop out
  return _gauss_newton_step(problem, x, held, hessian * kept[..., None] * kept[..., None, :],
                            regulariser + hits, shifted) + fixed, newton


def _nielsen(damping, growth, gain, accepted):
  """Nielsen's update of the damping (and of its growth factor) from the gain ratio of
  the actual to the predicted decrease of the cost: it shrinks smoothly after a step the
  linear model predicted well, and grows ever faster while steps fail."""
  shrink = jnp.maximum(1 / 3, 1 - (2 * gain - 1)**3)
  return (jnp.where(accepted, damping * shrink, damping * growth),
          jnp.where(accepted, 2.0, growth * 2))


def _root_coordinates(model):
  """The coordinates of the root joint."""
  return [c for j, _, c in model.axis_inputs if j == model.root_joint]


def _levenberg_marquardt(model, free, x, base, problem, iterations, root=None):
  """Levenberg-Marquardt iterations for frames x (N, F), until every frame has converged
  (``_settled``) or has had ``iterations``.

  ``iterations`` may be traced (one compiled loop for several uses). ``root`` (optional):
  (iterations, weights (N, M)) of a first phase in which only the
  root joint's coordinates move, fitted with those marker weights. Clamped coordinates
  stay in their ranges (an active set: a coordinate held at a bound that the descent
  pushes against is left out of the step). Each iteration evaluates the markers and their
  Jacobian once, at its frames, and the markers alone at three points: the damped step's
  end, and two points along the undamped step (``_along``); each frame moves to the
  lowest of them where that lowers its cost.
  Where the Gauss-Newton model misjudges the cost and keeps the damping high, the line
  still follows the valley. Frames are independent problems: each loop step takes a batch
  (``_batch``) of the frames yet to converge, those with the fewest iterations done, so
  that converged frames cost nothing while the last ones follow their valleys. Returns the
  solution, its markers, its cost, and which frames have not converged.
  """
  dtype = x.dtype
  low, high = _bounds(model, free, dtype)
  root_iterations, root_weights = root if root is not None else (0, problem.weights)
  root_active = jnp.asarray(np.isin(free, _root_coordinates(model)))
  limit = root_iterations + iterations

  def iterate(count, x, damping, growth, settled, problem, root_weights):
    """One iteration of frames (K, F) that have had ``count`` (K,) iterations."""
    # The damping starts afresh when all coordinates start moving.
    in_root_phase = count < root_iterations
    fresh = count == root_iterations
    damping = jnp.where(fresh, _INITIAL_DAMPING, damping)
    growth = jnp.where(fresh, 2.0, growth)
    phase = problem._replace(weights=jnp.where(in_root_phase[:, None], root_weights,
                                               problem.weights))
    markers, jac = _marker_jacobian(model, free, _full(free, x, base), phase.scales)
    cost = _cost_of(phase, x, _weighted_error(phase, markers)[1])
    linear = _linearise(phase, x, markers, jac, low, high,
                        jnp.where(in_root_phase[:, None], root_active, True))
    curvature = _curvature(phase, linear)
    # Marquardt scaling, plus a floor that keeps coordinates no marker sees well-posed.
    regulariser = damping[:, None] * (curvature + 1e-4) + (1.0 - linear.moves)
    undamped = _UNDAMPED * (curvature + 1e-4) + (1.0 - linear.moves)
    dx, newton = _bounded_step(phase, x, linear, regulariser, undamped, low, high)
    rounding = _rounding(phase, linear.residual)
    resolution = _resolution(phase, linear.residual, x.shape[-1])
    fit = lambda y: _fit(model, free, base, phase, y)[1]
    # The cost is the squared residuals: its slope is twice the gradient's.
    slope = 2 * jnp.sum(linear.gradient * newton, axis=-1)
    line, line_costs, offered = _along(fit, x, newton, cost, slope, low, high)
    was_settled = settled
    settled = settled | (~in_root_phase & _settled(
        newton, linear.gradient, curvature, linear.moves, rounding, resolution,
        offered < _floor(rounding, resolution)))
    trial = jnp.clip(x + dx, low, high)
    trial_cost = fit(trial)
    points = jnp.concatenate([trial[None], line])  # (3, K, F)
    costs = jnp.concatenate([trial_cost[None], line_costs])
    best = jnp.argmin(costs, axis=0)
    # A converged frame stays where it is.
    better = (jnp.min(costs, axis=0) < cost + rounding[0]) & ~was_settled
    new_x = jnp.take_along_axis(points, best[None, :, None], axis=0)[0]
    moved = jnp.einsum("tfa,tf->ta", linear.rows, dx)
    predicted = (jnp.sum(moved**2, -1) + jnp.sum((phase.coordinate_weights * linear.moves
                                                  + 2 * regulariser) * dx**2, -1))
    gain = (cost - trial_cost) / jnp.maximum(predicted, jnp.finfo(dtype).tiny)
    damping, growth = _nielsen(damping, growth, gain, trial_cost < cost + rounding[0])
    return jnp.where(better[:, None], new_x, x), damping, growth, settled

  n = x.shape[0]
  size = _batch(n)
  order = jnp.arange(n)

  def step(state):
    count, *frames = state
    waiting = ~frames[-1] & (count < limit)
    if size == n:
      pick, put = (lambda a: a), (lambda old, new: new)
    else:  # the waiting frames with the fewest iterations done (earliest first)
      _, chosen = jax.lax.top_k(-jnp.where(waiting, count * n + order, limit * n + order),
                                size)
      pick, put = (lambda a: a[chosen]), (lambda old, new: old.at[chosen].set(new))
    taken = pick(waiting)
    stepped = iterate(pick(count), *map(pick, frames),
                      _per_frame(problem, pick), pick(root_weights))
    return (put(count, pick(count) + taken), *(
        put(old, jnp.where(taken.reshape((-1,) + (1,) * (new.ndim - 1)), new, pick(old)))
        for old, new in zip(frames, stepped)))

  def running(state):
    count, settled = state[0], state[-1]
    return jnp.any(~settled & (count < limit))

  state = (jnp.zeros((n,), jnp.int32), x, jnp.full((n,), _INITIAL_DAMPING, dtype),
           jnp.full((n,), 2.0, dtype), jnp.zeros((n,), bool))
  _, x, _, _, settled = jax.lax.while_loop(running, step, state)
  markers, cost = _fit(model, free, base, problem, x)
  return x, markers, cost, ~settled


def _along(fit, x, newton, cost, slope, low, high):
  """Two points (2, ..., F) along the undamped step ``newton`` from x (within the bounds),
  their costs (2, ...) by ``fit`` (points -> costs), and the decrease the cost offers
  along the step. The points: the step's end, and the lowest point of the parabola with
  the cost's value (``cost``) and ``slope`` at x and its value there (``_parabola``). The
  decrease: what either point realises, or what the parabola with the value at the second
  point promises before it. Far from the markers (a model that cannot follow them) the
  Gauss-Newton model leaves out the residuals' own curvature: it can promise a decrease
  along a valley that the cost does not have, or overshoot one that it has."""
  point = lambda a: jnp.clip(x + a[..., None] * newton, low, high)
  full = point(jnp.ones_like(cost))
  full_cost = fit(full)
  at, _ = _parabola(cost, slope, 1.0, full_cost)
  inner = point(at)
  inner_cost = fit(inner)
  promised = _parabola(cost, slope, at, inner_cost)[1]
  offered = jnp.maximum(jnp.maximum(cost - full_cost, cost - inner_cost), promised)
  return jnp.stack([full, inner]), jnp.stack([full_cost, inner_cost]), offered


def inverse_kinematics(model: SkeletalModel, markers, weights=None, scales=None, initial=None,
                       coordinate_targets=None, coordinate_weights=None, sequence=True,
                       rate=None, smoothing_weight=SMOOTHING_WEIGHT, starts=8, segment=2,
                       iterations=50, anchor_iterations=40, cold_iterations=60,
                       root_iterations=8, smoothing_iterations=50):
  """Solves IK for every frame.

  A sequence (the default) is solved in three passes. Tracking: the first frame from
  ``starts`` starting poses (the best fit, with a pull towards the default pose, wins),
  then every ``segment``-th frame (an anchor) warm-started from the anchor before, as
  OpenSim does from frame to frame. Fitting: every frame on its own, without a prior,
  started on the line between its two anchors; the residuals give the marker noise, and
  frames left far above it are solved again (``_rescue``).
  Smoothing (the temporal prior): the whole sequence at once, minimising the marker costs
  of all frames plus a weight times each rotational coordinate's squared velocity, the
  weight being ``smoothing_weight`` scaled by (estimated noise / ``REFERENCE_NOISE``)^2.
  Coordinates the markers barely determine (how the spine's joints share a rotation,
  forearm rotation, toes) are then averaged over frames instead of following the noise,
  well-determined ones keep their fit, exact markers are fitted exactly, and a held pose
  is left alone. What the noise swamps altogether is decided by the coordinates' ranges
  (``_range_prior``: a pull towards the middle of each range as strong as the noise makes
  it). Independent frames
  (``sequence=False``) are all solved at once from ``initial``, without a prior. Every
  loop stops when its frames have converged (step and gradient small: ``_settled``), the
  iteration counts below being only caps.

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
      units of the marker cost (marker weight times squared metres), at markers as noisy
      as ``REFERENCE_NOISE``; 0 turns it off (each frame is fitted on its own).
    starts: starting poses of the first frame of a sequence: the default pose and
      ``starts - 1`` random poses within the coordinates' ranges (fixed seed).
    segment: frames from one anchor to the next (2: larger gaps are faster but lose fast
      motions, e.g. limbs swinging 60 deg in 8 frames at 30 fps).
    iterations: at most this many Levenberg-Marquardt iterations of the fitting pass.
    anchor_iterations: at most this many iterations per anchor (a segment away from its
      warm start; tracking needs only a good start for the passes after it).
    cold_iterations: at most this many iterations for frames solved from a starting pose.
    root_iterations: iterations for the root joint alone before a cold solve, fitted to
      the root body's markers where at least three are present.
    smoothing_iterations: at most this many iterations of the smoothing pass.

  Returns:
    ``IKResult``. Frames with fewer than 3 markers, or not converged when their last pass
    stopped, have ``converged`` False.

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
                smoothing_weight * rate**2 if smoothing else 0.0,
                free=free, dtype=dtype, segment=min(segment, frames), iterations=iterations,
                anchor_iterations=anchor_iterations, cold_iterations=cold_iterations,
                root_iterations=root_iterations, smoothing_iterations=smoothing_iterations)


@functools.partial(jax.jit, static_argnames=(
    "free", "dtype", "segment", "iterations", "anchor_iterations", "cold_iterations",
    "root_iterations", "smoothing_iterations"))
def _solve(model, markers, weights, scales, base, first, used_starts, coordinate_targets,
           coordinate_weights, velocity_weight, *, free, dtype, segment, iterations,
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
        model, problem, base, first, used_starts, jnp.asarray(velocity_weight, dtype),
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


def _random_rotations(model, free, count, seed):
  """(count, F) free coordinates uniform in their ranges (within +-pi), fixed ``seed``;
  and (F,) which of them are rotational (only those are meant to be used)."""
  low, high = jnp.clip(jnp.asarray(model.coordinate_ranges)[np.array(free)].T, -np.pi, np.pi)
  uniform = np.random.default_rng(seed).random((count, len(free)))
  rotational = np.array([model.coordinate_types[i] == "rotational" for i in free])
  return low + (high - low) * uniform, rotational


def _starting_poses(model, free, base, starts):
  """(starts, F): the free coordinates of ``base``, then random poses (fixed seed) with
  rotations uniform in their ranges (within +-pi) and translations at ``base``."""
  index = np.array(free)
  random, rotational = _random_rotations(model, free, starts - 1, seed=0)
  poses = np.where(rotational, np.asarray(random), base[index])
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


def _batch(frames):
  """Frames per batch of ``frames`` on the default backend: ``BATCH`` on CPU, all of them
  elsewhere (wide batches are what accelerators are made for)."""
  return min(frames, BATCH) if jax.default_backend() == "cpu" else frames


def _in_batches(fn, *args):
  """``fn`` of per-frame arrays (pytrees with leading frame axes), ``BATCH`` frames at a
  time (``lax.map``) where the frames split into such batches: on XLA:CPU their working
  sets stay in the cache (the marker Jacobian and its products of 256 frames take 23 ms
  this way on one core, 32 ms at once)."""
  frames = jax.tree.leaves(args)[0].shape[0]
  if _batch(frames) == frames or frames % BATCH:
    return fn(*args)
  split = lambda a: a.reshape((-1, BATCH) + a.shape[1:])
  out = jax.lax.map(lambda batch: fn(*batch), jax.tree.map(split, args))
  return jax.tree.map(lambda a: a.reshape((frames,) + a.shape[2:]), out)


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
  averaged over many frames while a well-determined one keeps its fit. Runs until every
  valid frame has converged (``_settled``) or after ``iterations``; returns the solution,
  its markers, and which frames have not converged."""
  dtype = x.dtype
  low, high = _bounds(model, free, dtype)
  rotational = jnp.asarray([model.coordinate_types[c] == "rotational" for c in free], dtype)
  pair = weight * (valid[1:] & valid[:-1]).astype(dtype)  # (T - 1,)
  pair = jnp.concatenate([(link * valid[0])[None], pair])  # pair[t]: frames t - 1 and t
  prior = pair[:, None] * rotational  # (T, F): weight of each change from the frame before

  def change(x):  # (T, F): from each frame's predecessor
    return x - jnp.concatenate([previous[None], x[:-1]])

  def local_cost(frame_cost, y, x):
    """(T,): each frame's marker and coordinate cost at y plus the prior on its changes
    from and to its neighbours in x."""
    before = jnp.concatenate([previous[None], x[:-1]])
    after = jnp.concatenate([x[1:], x[-1:]])
    following = jnp.concatenate([prior[1:], jnp.zeros_like(prior[:1])])
    return frame_cost + jnp.sum(prior * (y - before)**2 + following * (after - y)**2, -1)

  def sequence_cost(y, frame_cost):
    return jnp.sum(frame_cost) + jnp.sum(prior * change(y)**2)

  def step(state):
    i, x, damping, _ = state
    difference = prior * change(x)
    zero = jnp.zeros_like(x[:1])

    def linearise(x, frames, extra_gradient):
      one = problem._replace(targets=frames[0], weights=frames[1],
                             coordinate_targets=frames[2])
      markers, jac = _marker_jacobian(model, free, _full(free, x, base), problem.scales)
      linear = _linearise(one, x, markers, jac, low, high, True, extra_gradient)
      return markers, linear, _hessian(one, linear)

    markers, linear, hessian = _in_batches(
        linearise, x, (problem.targets, problem.weights, problem.coordinate_targets),
        difference - jnp.concatenate([difference[1:], zero]))
    frame_cost = _cost_of(problem, x, _weighted_error(problem, markers)[1])
    cost = local_cost(frame_cost, x, x)
    moves = linear.moves
    extra = (prior + jnp.concatenate([prior[1:], zero])) * moves
    curvature = _curvature(problem, linear) + extra
    coupling = prior * moves * jnp.concatenate([zero, moves[:-1]])

    def solve(damping):
      system = hessian + jax.vmap(jnp.diag)(extra + damping * (curvature + 1e-4) + (1.0 - moves))
      return _block_tridiagonal_solve(system, coupling, -linear.gradient * moves) * moves

    # The step, and the undamped one for the convergence test: one solver, run twice (on
    # XLA:CPU a batch of two solves through the elimination is twice as slow as two runs).
    dx, newton = jax.lax.map(solve, jnp.stack([damping[:, None],
                                               jnp.full_like(damping[:, None], _UNDAMPED)]))
    rounding = _rounding(problem, linear.residual)
    resolution = _resolution(problem, linear.residual, x.shape[-1])
    fit = lambda y: _fit(model, free, base, problem, y)[1]
    # The frames are one problem: the sequence's step is exhausted when the whole
    # sequence's cost can fall by less than its frames' floors together.
    current = sequence_cost(x, frame_cost)
    line, line_costs, offered = _along(lambda y: sequence_cost(y, fit(y)), x, newton, current,
                                       2 * jnp.sum(linear.gradient * newton), low, high)
    exhausted = offered < jnp.sum(jnp.where(valid, _floor(rounding, resolution), 0.0))
    settled = _settled(newton, linear.gradient, curvature, moves, rounding, resolution,
                       exhausted)
    trial = jnp.clip(x + dx, low, high)
    trial_frame_cost = fit(trial)
    # Each frame takes its step where that lowers its own cost with its neighbours at
    # their steps too (with a negligible prior, frames are independent problems; with
    # neighbours held in place, strongly coupled frames would overshoot towards each other
    # and never converge). A frame yet to converge may take a step within rounding, which
    # follows a flat valley further; a converged one only a step that lowers its cost
    # (wandering within rounding, frames of exact markers along the spine's valleys failed
    # the test in turn and never all at once).
    better = local_cost(trial_frame_cost, trial, trial) < cost + jnp.where(
        settled, 0.0, rounding[0])
    damping = jnp.where(better, damping * 0.3, damping * 10)
    mixed = jnp.where(better[:, None], trial, x)
    # Frames taking their steps one by one need not lower the sequence's cost (they are
    # coupled): the whole sequence moves along its undamped step instead where that is
    # lower.
    points = jnp.concatenate([mixed[None], line])
    costs = jnp.concatenate([sequence_cost(mixed, jnp.where(better, trial_frame_cost,
                                                            frame_cost))[None], line_costs])
    return i + 1, points[jnp.argmin(costs)], damping, settled

  def running(state):
    i, settled = state[0], state[-1]
    return (i < iterations) & ~jnp.all(settled | ~valid)

  n = x.shape[0]
  state = (jnp.asarray(0, jnp.int32), x, jnp.full((n,), _INITIAL_DAMPING, dtype),
           jnp.zeros((n,), bool))
  _, x, _, settled = jax.lax.while_loop(running, step, state)
  return x, _fit(model, free, base, problem, x)[0], ~settled


def _solve_sequence(model, problem, base, first, used_starts, velocity_weight, *, free, segment,
                    iterations, anchor_iterations, cold_iterations, root_iterations,
                    smoothing_iterations):
  """Tracking frame to frame, then the in-between frames, then the temporal prior.

  Two compiled Levenberg-Marquardt loops serve the tracking: one for a single frame (the
  first frame from each start, then the anchors in turn), one for all frames at once;
  then every frame is fitted on its own (without a prior, to estimate the marker noise),
  and the smoothing is one Gauss-Newton loop over the whole sequence (``_smooth``).
  ``velocity_weight``: the weight of the temporal prior per squared radian from one frame
  to the next at ``REFERENCE_NOISE``.
  """
  frames = problem.targets.shape[0]
  anchor_frames = np.arange(0, frames, segment)
  anchors = _per_frame(problem, lambda a: a[anchor_frames])
  starts = first.shape[0]

  def track(carry, k):
    """Step k < starts: the first frame from start k (the lowest cost wins; all share one
    objective: the markers and the pull towards the first start). Step starts: the first
    frame again from the winner, without the pull; its residuals set the pull's weight
    for the anchors after it (``TRACKING_WEIGHT`` at ``REFERENCE_NOISE``, none for exact
    markers). Then anchor k - starts from the anchor before, restarted where it is left
    far off its markers (``_local_starts``)."""
    previous, best, pull, level, tried = carry
    cold = k < starts
    skipped = cold & (k >= used_starts)
    one = _per_frame(anchors, lambda a: jax.lax.dynamic_slice_in_dim(
        a, jnp.maximum(k - starts, 0), 1))
    pulled = _with_prior(model, free, one, jnp.where(cold, first[0], previous)[None],
                         jnp.where(cold, TRACKING_WEIGHT, pull))
    start = jnp.where(cold, first[jnp.minimum(k, starts - 1)], previous)
    count = jnp.where(k <= starts, cold_iterations, anchor_iterations) * ~skipped
    root = (root_iterations * (cold & ~skipped), _root_weights(model, pulled))
    x, markers, cost, _ = _levenberg_marquardt(model, free, start[None], base, pulled, count,
                                               root)
    frame_noise = _frame_noise(one, markers, len(free))[0]  # NaN: too few markers
    level = jnp.where(k == starts, jnp.sqrt(frame_noise), level)  # the first frame's noise
    # An anchor left far off its markers (a limb led onto the wrong branch of a joint,
    # held there by a bound) is solved again from restarts of its badly fitted limbs, and
    # the anchors after it follow it. Once per stretch of outliers, and again each time
    # the stretch's frames fall further off by the same factor (a stretch along which the
    # model cannot follow the markers costs a few restarts, not one per anchor).
    outlier = lambda noise: noise > _outlier_limit(jnp.nan_to_num(level))
    stuck = (k > starts) & outlier(frame_noise) & (frame_noise > OUTLIER_FACTOR**2 * tried)

    def restart(solution):
      x, markers, cost = solution
      many = _per_frame(pulled, lambda a: jnp.repeat(a, RESCUE_STARTS, axis=0))
      xs, ms, costs, _ = _levenberg_marquardt(
          model, free, _local_starts(model, free, pulled, x, markers, level)[0], base, many,
          cold_iterations)
      best = jnp.argmin(costs)
      better = costs[best] < cost[0]
      return tuple(jnp.where(better, new[best], old[0])[None]
                   for new, old in ((xs, x), (ms, markers), (costs, cost)))

    x, markers, cost = jax.lax.cond(stuck, restart, lambda s: s, (x, markers, cost))
    # The noise at the stretch's last restart (0: not in a stretch).
    tried = jnp.where(outlier(_frame_noise(one, markers, len(free))[0]),
                      jnp.where(stuck, frame_noise, tried), 0.0)
    cost = jnp.where(skipped, jnp.inf, cost[0])
    previous = jnp.where(cold & (cost >= best), previous, x[0])
    pull = jnp.where(k == starts, TRACKING_WEIGHT * jnp.nan_to_num(
        level / REFERENCE_NOISE, nan=1.0)**2, pull)
    return (previous, jnp.where(cold, jnp.minimum(best, cost), best), pull, level,
            tried), x[0]

  steps = jnp.arange(starts + len(anchor_frames))
  zero = jnp.zeros((), first.dtype)
  _, tracked = jax.lax.scan(
      track, (first[0], jnp.asarray(jnp.inf, first.dtype), zero, zero, zero), steps)
  tracked = tracked[starts:]
  # Frames between anchors start between them (linearly), and the frames after the last
  # anchor from it.
  position = np.minimum(np.arange(frames) / segment, len(anchor_frames) - 1)
  below = np.floor(position).astype(int)
  above = np.minimum(below + 1, len(anchor_frames) - 1)
  fraction = jnp.asarray(position - below, tracked.dtype)[:, None]
  x = (1 - fraction) * tracked[below] + fraction * tracked[above]
  # Every frame fitted on its own, without a prior: its residuals tell the marker noise.
  x, markers, cost, _ = _levenberg_marquardt(model, free, x, base, problem, iterations)
  valid = jnp.sum(_present(problem.targets), axis=1) >= 3
  x, markers, _ = _rescue(model, free, problem, x, markers, cost, base, valid,
                          iterations=iterations, cold_iterations=cold_iterations)
  noise = _noise(problem, markers, valid, len(free))
  weight = velocity_weight * (noise / REFERENCE_NOISE)**2
  # A continuing chunk (one start: the previous chunk's last frame) is linked to it.
  link = weight * (used_starts == 1)
  centre, spread = _range_prior(model, free, x.dtype)
  within = _with_prior(model, free, problem, centre[None], jnp.nan_to_num(noise**2 / 3) / spread)
  return _smooth(model, free, within, x, base, valid, weight, first[0], link,
                 smoothing_iterations)


def _range_prior(model, free, dtype):
  """(F,) the middle of each free coordinate's range and (F,) the variance of a vague
  Gaussian about it (standard deviation half the range's width: one either way spans the
  range), for the joints below the root (infinite elsewhere: no prior). Its weight in the
  marker cost is the markers' noise variance per component over this variance, so that it
  decides only what the markers' noise swamps: a coordinate the markers pin down keeps its
  fit, exact markers get no prior. (As narrow as a uniform distribution over the range,
  variance width^2 / 12, it moved a held pose's median coordinate 0.1-0.3 deg towards the
  middle under 5 mm of noise.)"""
  index = np.array(free)
  low, high = jnp.asarray(model.coordinate_ranges, dtype)[index].T
  width = jnp.minimum(high - low, 2 * np.pi)
  below_root = jnp.asarray(~np.isin(free, _root_coordinates(model))) & jnp.asarray(
      model.coordinate_clamped)[index] & (width > 0)
  return (low + high) / 2, jnp.where(below_root, width**2 / 4, jnp.inf)


def _frame_noise(problem, fitted, coordinates):
  """(T,) each frame's weighted mean squared marker residual (m^2) at its fit (``fitted``:
  the model's markers), corrected for the ``coordinates`` the fit spends on it; NaN where
  no degree of freedom is left."""
  present = _present(problem.targets)
  squared = jnp.sum(_weighted_error(problem, fitted)[1]**2, axis=(1, 2))
  weight = jnp.sum(jnp.where(present, problem.weights, 0.0), axis=1)
  count = jnp.sum(present, axis=1)
  freedom = 3 * count - coordinates
  usable = (freedom > 0) & (weight > 0)
  return jnp.where(usable, squared / jnp.where(usable, weight, 1.0) * 3 * count
                   / jnp.where(usable, freedom, 1), jnp.nan)


def _noise(problem, fitted, valid, coordinates):
  """The markers' noise (RMS distance, metres) estimated from the residuals of fits of
  frames on their own: the median of ``_frame_noise`` over ``valid`` frames."""
  return jnp.sqrt(jnp.nanmedian(jnp.where(valid, _frame_noise(problem, fitted, coordinates),
                                          jnp.nan)))


def _outlier_limit(noise):
  """The ``_frame_noise`` above which a frame is an outlier, given the trial's ``noise``
  (RMS distance): ``OUTLIER_FACTOR`` times it and ``OUTLIER_FLOOR``, in quadrature."""
  return OUTLIER_FACTOR**2 * noise**2 + OUTLIER_FLOOR**2


def _local_starts(model, free, problem, x, fitted, noise):
  """(N, RESCUE_STARTS, F): restarts of frames x (N, F) whose model markers are ``fitted``,
  given the markers' ``noise`` (RMS distance). The rotational coordinates below the root
  that move mostly markers left far off (``FAR_FACTOR`` times the noise, plus
  ``OUTLIER_FLOOR``), or that are held at a bound and move any, are drawn at random within
  their ranges (fixed seed); the others keep their values. An arm led onto the wrong
  branch of its shoulder (a mirror pose that a bound keeps it from reaching) restarts on
  its own, where a random pose of the whole body would have to get every limb right at
  once. A frame with no such coordinate restarts all of them."""
  present = _present(problem.targets)
  error = jnp.linalg.norm(jnp.where(present[..., None], fitted - problem.targets, 0.0), axis=-1)
  far = (error > FAR_FACTOR * jnp.nan_to_num(noise) + OUTLIER_FLOOR).astype(x.dtype)
  moved = jnp.asarray(_coordinate_markers(model, free), x.dtype)  # (F, M)
  random, rotational = _random_rotations(model, free, RESCUE_STARTS, seed=1)
  # The root keeps its orientation: a start turned round would end a full turn away.
  drawable = rotational & ~np.isin(free, _root_coordinates(model))
  far_share = (far @ moved.T) / jnp.maximum(present.astype(x.dtype) @ moved.T, 1.0)
  low, high = _bounds(model, free, x.dtype)
  held = (x <= low) | (x >= high)
  drawn = ((far_share >= 0.5) | (held & (far_share > 0))) & drawable  # (N, F)
  drawn = jnp.where(jnp.any(drawn, axis=-1, keepdims=True), drawn, drawable)
  return jnp.where(drawn[:, None], jnp.asarray(random, x.dtype), x[:, None])


def _rescue(model, free, problem, x, fitted, cost, base, valid, *, iterations, cold_iterations):
  """Frames fitted on their own (x, their markers ``fitted``, their costs) with the outliers
  solved again (see ``OUTLIER_FACTOR``): the worst ``RESCUED_FRAMES`` from
  ``RESCUE_STARTS`` restarts each (``_local_starts``), then a sweep forwards and one
  backwards in which each outlier starts from its neighbour's solution where that fits
  its own markers better by more than ``OUTLIER_FACTOR``. A frame keeps the lowest cost."""
  frames, size = x.shape
  coordinates = len(free)
  noise = _noise(problem, fitted, valid, coordinates)
  limit = _outlier_limit(noise)
  excess = lambda one, markers, ok: jnp.where(  # > 0: an outlier
      ok, jnp.nan_to_num(_frame_noise(one, markers, coordinates) - limit, nan=-1.0), -1.0)

  def again(state):
    x, fitted, cost = state
    count = min(frames, RESCUED_FRAMES)
    residual = excess(problem, fitted, valid)
    _, worst = jax.lax.top_k(residual, count)
    starts = _local_starts(model, free, _per_frame(problem, lambda a: a[worst]), x[worst],
                           fitted[worst], noise)
    many = _per_frame(problem, lambda a: jnp.repeat(a[worst], RESCUE_STARTS, axis=0))
    xs, markers, costs, _ = _levenberg_marquardt(model, free, starts.reshape(-1, size), base,
                                                 many, cold_iterations)
    costs = jnp.where(jnp.repeat(residual[worst] > 0, RESCUE_STARTS), costs, jnp.inf)
    best = jnp.argmin(costs.reshape(count, -1), axis=1) + RESCUE_STARTS * jnp.arange(count)
    better = costs[best] < cost[worst]
    keep = lambda new, old: old.at[worst].set(
        jnp.where(better.reshape((-1,) + (1,) * (old.ndim - 1)), new[best], old[worst]))
    state = (keep(xs, x), keep(markers, fitted), keep(costs, cost))

    def from_neighbour(state, pair):
      x, fitted, cost = state
      frame, neighbour = pair
      at = lambda k: _per_frame(problem, lambda a: jax.lax.dynamic_slice_in_dim(a, k, 1))
      one = at(frame)
      own = _frame_noise(one, fitted[frame][None], coordinates)[0]  # NaN: no freedom left
      # Only where the neighbour fits its markers much better: a model that cannot follow
      # the markers everywhere leaves a stretch of frames off them by about as much, and
      # there a neighbour's solution is no better a start.
      closer = OUTLIER_FACTOR**2 * _frame_noise(at(neighbour), fitted[neighbour][None],
                                                coordinates)[0]
      redo = valid[frame] & (own > limit) & (closer < own)

      def redone(state):
        x, fitted, cost = state
        new_x, new_markers, new_cost, _ = _levenberg_marquardt(
            model, free, x[neighbour][None], base, one, iterations)
        better = new_cost[0] < cost[frame]
        keep = lambda new, old: old.at[frame].set(jnp.where(better, new[0], old[frame]))
        return keep(new_x, x), keep(new_markers, fitted), keep(new_cost, cost)

      # Most frames are not outliers: they skip the solver altogether.
      return jax.lax.cond(redo, redone, lambda state: state, state), None

    # (frame, neighbour): forwards, then backwards; one loop (one compiled solver).
    later = np.arange(1, frames)
    pairs = np.concatenate([np.stack([later, later - 1], 1),
                            np.stack([later - 1, later], 1)[::-1]])
    return jax.lax.scan(from_neighbour, state, pairs)[0]

  return jax.lax.cond(jnp.any(excess(problem, fitted, valid) > 0), again, lambda s: s,
                      (x, fitted, cost))


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
