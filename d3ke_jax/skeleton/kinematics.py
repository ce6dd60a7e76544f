"""Forward kinematics of a ``SkeletalModel``: the skeletal-model layer of D3KE.

Layout, for speed on XLA:CPU as well as accelerators: the batch is flattened and put last,
and 3x3 algebra is written out per component (a rotation is 9 arrays, a position 3), so
the per-joint work for all joints fuses into a few large elementwise loops. The tree is
composed root-to-leaf by one ``jax.lax.scan`` over a level schedule: each step places a
fixed number of joints whose parents are already placed. XLA:CPU and accelerators get
different forms of the same computation (``LAYOUTS``), chosen where the program is
compiled (``jax.lax.platform_dependent``). Gradients go through the same code (component
tuples are split and joined whole, so their transposes stay cheap).
"""

import functools
from typing import NamedTuple
import weakref

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax.skeleton.model import GROUND, SkeletalModel


class FKOutput(NamedTuple):
  """Forward kinematics results; ``...`` is the input's batch shape."""
  body_transforms: jnp.ndarray  # (..., n_bodies, 4, 4) body frames
  joint_origins: jnp.ndarray  # (..., n_joints, 3) child-frame origin of every joint
  markers: jnp.ndarray  # (..., n_markers, 3)


# The two forms of the computation. "cpu": the scan a loop of one step per iteration,
# shared work computed once into memory (optimization barriers), rows picked per component,
# large batches in cache-sized chunks. "accelerator": the scan unrolled (a loop launches
# its kernels once per step), fusions left to XLA, rows picked by one gather of the stacked
# components (its gradient one scatter, where a gather per component costs one each).
LAYOUTS = ("cpu", "accelerator")


def forward_kinematics(model: SkeletalModel, coords, scales=None, root_rotation=None,
                       layout=None):
  """Body frames, joint centres and markers of a posed, scaled model.

  Args:
    model: a compiled model (``load_osim``).
    coords: (..., n_coordinates) coordinate values in OpenSim order and units (radians,
      metres). As in OpenSim, locked coordinates keep their default value and
      coordinates driven by an enforced coupler are recomputed from their independent
      coordinates; the given values of those entries are ignored. Other values are used
      as given (no clamping to ranges).
    scales: optional (..., n_bodies, 3) per-body scale factors relative to the model
      (OpenSim ScaleSet semantics; 1 = unscaled). Joint offsets and markers scale with
      the body they are fixed to, as OpenSim's ``Model.scale`` does.
    root_rotation: optional (..., 3, 3) rotation of the root body (pelvis) in ground. When
      given, the root's joint is replaced by this rotation at the origin, so outputs are
      root-relative positions in ground orientation (the D3KE layer).
    layout: one of ``LAYOUTS`` to force that form of the computation (both give the same
      numbers); default: "cpu" where the program is compiled for XLA:CPU, else
      "accelerator".

  Jitted; the model's topology is static, its geometry traced, so one compilation
  serves every batch of the same shape. A model with NumPy leaves (as loaded) is put on
  the device once (``on_device``), not at every call. On CPU, batches above ``CPU_CHUNK``
  poses are processed chunk by chunk (``lax.map``), which keeps the working set in cache;
  their gradient recomputes each chunk's forward pass instead of storing it.

  Returns:
    ``FKOutput`` in the ground frame (or root-centred when ``root_rotation`` is given), in
    the floating dtype of ``coords``.
  """
  if layout not in (None,) + LAYOUTS:
    raise ValueError(f"layout={layout!r}: choose from {LAYOUTS} (or None)")
  return _forward_kinematics(on_device(model), coords, scales, root_rotation, layout)


_DEVICE_COPIES = {}  # (id(model), 64-bit mode) -> device copy, dropped with the model


def on_device(model: SkeletalModel):
  """``model`` with its NumPy leaves as device arrays, made once per model object and
  precision mode (64-bit leaves stay 64-bit only when ``jax_enable_x64`` is on). A model
  whose leaves are already JAX arrays (or tracers) is returned as it is."""
  if not all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(model)):
    return model
  key = (id(model), bool(jax.config.jax_enable_x64))
  copy = _DEVICE_COPIES.get(key)
  if copy is None:
    with jax.ensure_compile_time_eval():  # concrete arrays even when called under a trace
      copy = _DEVICE_COPIES[key] = jax.device_put(model)
    weakref.finalize(model, _DEVICE_COPIES.pop, key, None)
  return copy


@functools.partial(jax.jit, static_argnums=4)
def _forward_kinematics(model, coords, scales, root_rotation, layout):
  """``forward_kinematics`` on a model whose leaves are on the device."""
  coords = jnp.asarray(coords)
  if not jnp.issubdtype(coords.dtype, jnp.floating):
    coords = coords.astype(jnp.result_type(float))
  dtype = coords.dtype
  _check_shape(model, "coords", coords, (model.num_coordinates,))
  batch = coords.shape[:-1]
  n = int(np.prod(batch, dtype=int))
  inputs = {"coords": coords.reshape(n, model.num_coordinates)}
  if scales is not None:
    scales = jnp.asarray(scales, dtype)
    _check_shape(model, "scales", scales, (model.num_bodies, 3))
    inputs["scales"] = jnp.broadcast_to(scales, batch + scales.shape[-2:]).reshape(
        n, model.num_bodies, 3)
  if root_rotation is not None:
    root_rotation = jnp.asarray(root_rotation, dtype)
    _check_shape(model, "root_rotation", root_rotation, (3, 3))
    inputs["root_rotation"] = jnp.broadcast_to(root_rotation, batch + (3, 3)).reshape(n, 9)

  out = by_platform(functools.partial(_chunked, model), layout, inputs)
  return jax.tree.map(lambda a: a.reshape(batch + a.shape[1:]), out)


def by_platform(fn, layout, *args):
  """``fn(*args, cpu=...)``: with ``cpu`` True where the program is compiled for XLA:CPU,
  False elsewhere (``jax.lax.platform_dependent``), or as ``layout`` says (``LAYOUTS``)."""
  if layout is not None:
    return fn(*args, cpu=layout == "cpu")
  return jax.lax.platform_dependent(*args, cpu=functools.partial(fn, cpu=True),
                                    default=functools.partial(fn, cpu=False))


def _chunked(model, inputs, cpu):
  """``_forward`` of a flat batch; on CPU, large batches in cache-sized chunks (XLA:CPU is
  memory-bound here)."""
  n = inputs["coords"].shape[0]
  if not cpu or n <= CPU_CHUNK:
    return _forward(model, cpu=cpu, **inputs)
  padded = -(-n // CPU_CHUNK) * CPU_CHUNK
  chunks = jax.tree.map(lambda a: jnp.pad(a, [(0, padded - n)] + [(0, 0)] * (a.ndim - 1),
                                          mode="edge").reshape((-1, CPU_CHUNK) + a.shape[1:]),
                        inputs)
  out = jax.lax.map(jax.checkpoint(lambda c: _forward(model, cpu=True, **c)), chunks)
  return jax.tree.map(lambda a: a.reshape((padded,) + a.shape[2:])[:n], out)


CPU_CHUNK = 512  # poses per chunk on CPU (the fastest chunk found, bench fk)


def _forward(model, coords, scales=None, root_rotation=None, *, cpu):
  """``FKOutput`` for a flat batch: coords (n, C), scales (n, B, 3), root_rotation (n, 9)."""
  n, dtype = coords.shape[0], coords.dtype
  s = None if scales is None else scales.transpose(2, 1, 0)
  r0 = None if root_rotation is None else root_rotation.T
  frames = _body_frames(model, coords.T, s, r0, cpu)  # 12 x (B, n)
  joints, markers = _points(model, frames, s, cpu)  # (3, J, n), (3, M, n)
  rot = jnp.stack(frames[:9]).reshape(3, 3, model.num_bodies, n)
  pos = jnp.stack(frames[9:]).reshape(3, 1, model.num_bodies, n)
  bottom = jnp.broadcast_to(jnp.array([0, 0, 0, 1], dtype)[None, :, None, None],
                            (1, 4, model.num_bodies, n))
  transforms = jnp.concatenate([jnp.concatenate([rot, pos], 1), bottom], 0)
  return FKOutput(body_transforms=transforms.transpose(3, 2, 0, 1),
                  joint_origins=joints.transpose(2, 1, 0), markers=markers.transpose(2, 1, 0))


def _check_shape(model, name, array, tail):
  if array.ndim < len(tail) or array.shape[array.ndim - len(tail):] != tail:
    raise ValueError(f"forward_kinematics({model.name}): {name} must have shape "
                     f"(..., {', '.join(map(str, tail))}), got {array.shape}")


# 3x3 algebra on component tuples: a rotation is 9 arrays (row-major), a vector 3.

def _mm(a, b):
  return tuple(a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j]
               for i in range(3) for j in range(3))


def _mv(a, v):
  return tuple(a[3 * i] * v[0] + a[3 * i + 1] * v[1] + a[3 * i + 2] * v[2] for i in range(3))


def _transpose(a):
  return tuple(a[3 * j + i] for i in range(3) for j in range(3))


def _add(u, v):
  return tuple(x + y for x, y in zip(u, v))


def _mul(u, v):
  return tuple(x * y for x, y in zip(u, v))


def _compose(parent, child):
  """Frame composition; a frame is 12 components: 9 rotation then 3 position."""
  return _mm(parent[:9], child[:9]) + _add(_mv(parent[:9], child[9:]), parent[9:])


def _unstack(array):
  """The rows of ``array`` as a tuple. One ``split``, whose gradient is one concatenation
  (indexing row by row would pad every row's gradient to the whole array)."""
  return tuple(row[0] for row in jnp.split(array, array.shape[0]))


def _take(components, index, cpu):
  """Rows ``index`` of every component: per component on CPU, else one gather of the
  stacked components, whose gradient is one scatter (``LAYOUTS``)."""
  if cpu:
    return tuple(c[index] for c in components)
  return _unstack(jnp.stack(components)[:, index])


def _columns(array, dtype):
  """A (E, *k) model leaf as a tuple of prod(k) (E, 1) arrays, one per component."""
  array = jnp.asarray(array, dtype)
  return _unstack(array.reshape(array.shape[0], -1).T[:, :, None])


def resolve_coordinates(model, q):
  """Coordinates OpenSim would pose with: locked ones at their defaults, coupled ones
  recomputed from their independent coordinates; q is (C, n)."""
  locked = jnp.asarray(model.coordinate_locked)[:, None]
  q = jnp.asarray(q)
  q = jnp.where(locked, jnp.asarray(model.coordinate_defaults, q.dtype)[:, None], q)
  if not model.couplers:
    return q
  depth = {}
  for dependent, independent in model.couplers:  # couplers come inputs-first
    depth[dependent] = depth.get(independent, -1) + 1
  for level in range(max(depth.values()) + 1):
    rows = np.array([k for k, (d, _) in enumerate(model.couplers) if depth[d] == level])
    table = jax.tree.map(lambda a: a[rows], model.coupler_functions)
    values = table(q[np.array([model.couplers[k][1] for k in rows])])
    index = np.arange(model.num_coordinates)
    index[[model.couplers[k][0] for k in rows]] = q.shape[0] + np.arange(len(rows))
    q = jnp.concatenate([q, values])[index]
  return q


def axis_values(model, q):
  """(6, J, n) value of every joint axis: angles for rotations, distances for translations."""
  n_axes = 6 * model.num_joints
  constants = jnp.asarray(model.axis_constants, q.dtype).T.reshape(n_axes, 1)
  table = [jnp.broadcast_to(constants, (n_axes, q.shape[1]))]
  if model.axis_inputs:
    table.append(model.axis_functions(q[np.array([c for _, _, c in model.axis_inputs])]))
  index = np.arange(n_axes)
  for row, (j, a, _) in enumerate(model.axis_inputs):
    index[a * model.num_joints + j] = n_axes + row
  return jnp.concatenate(table)[index].reshape(6, model.num_joints, q.shape[1])


def _materialize(components, cpu):
  """Computes components once into memory on CPU. Without this XLA:CPU fuses each consumer
  separately and recomputes shared work (the trigonometry of every axis) per component;
  elsewhere the fusions are left to XLA."""
  if not cpu:
    return components
  return _unstack(jax.lax.optimization_barrier(jnp.stack(components)))


def _axis_rotation(axis, c, s):
  """Rotations about unit axes (3 components of (J, 1)) with cosines and sines (J, n)."""
  x, y, z = axis
  v = 1 - c
  return (c + v * x * x, v * x * y - s * z, v * x * z + s * y,
          v * x * y + s * z, c + v * y * y, v * y * z - s * x,
          v * x * z - s * y, v * y * z + s * x, c + v * z * z)


def translation_gain(model, s, dtype):
  """(3, J, n) factor OpenSim's scaling applies to each translation axis, and s_parent.

  OpenSim's ``Model.scale`` (SpatialTransform::scale, 4.5 and later) multiplies the function
  of a CustomJoint translation axis by ``|axis| . s_parent``, with the axis as written in the
  file (not normalised). It leaves alone axes whose function is exactly
  LinearFunction(1, 0), and joints on ground (ground has no scale factors); the compiler
  lists the other axes, with their weights ``|axis|``, in ``scaled_translation_axes``.
  """
  parent = np.array(model.joint_parent_body)
  s_parent = jnp.concatenate([jnp.ones_like(s[:, :1]), s], axis=1)[:, parent + 1]  # (3, J, n)
  gain = jnp.ones((3, model.num_joints, s.shape[-1]), dtype)
  if model.scaled_translation_axes:
    joint = np.array([e[0] for e in model.scaled_translation_axes])
    axis = np.array([e[1] - 3 for e in model.scaled_translation_axes])
    weights = jnp.asarray(np.array([e[2:] for e in model.scaled_translation_axes]), dtype)
    values = jnp.sum(weights.T[:, :, None] * s_parent[:, joint], axis=0)  # (K, n)
    gain = gain.at[axis, joint].set(values)
  return gain, s_parent


def _joint_frames(model, q, s, cpu):
  """Frame of every joint's child body in its parent body: 12 components (J, n)."""
  dtype = q.dtype
  values = axis_values(model, resolve_coordinates(model, q))
  axes = jnp.asarray(model.axes, dtype)
  cos, sin = _materialize((jnp.cos(values[:3]), jnp.sin(values[:3])), cpu)
  cos, sin = _unstack(cos), _unstack(sin)
  spin = _axis_rotation(_columns(axes[:, 0], dtype), cos[0], sin[0])
  for i in (1, 2):
    spin = _mm(spin, _axis_rotation(_columns(axes[:, i], dtype), cos[i], sin[i]))
  spin = _materialize(spin, cpu)
  parent_rot = _columns(model.parent_rotation, dtype)
  rot = _mm(_mm(parent_rot, spin), _transpose(_columns(model.child_rotation, dtype)))

  parent_t = _columns(model.parent_translation, dtype)
  child_t = _columns(model.child_translation, dtype)
  distances = values[3:]
  if s is not None:
    gain, s_parent = translation_gain(model, s, dtype)
    distances = distances * gain
    parent_t = _mul(parent_t, _unstack(s_parent))
    child_t = _mul(child_t, _unstack(s[:, np.array(model.joint_child_body)]))
  distances = _unstack(distances)
  slide = tuple(sum(distances[i] * axes[:, 3 + i, k, None] for i in range(3)) for k in range(3))
  pos = _add(_add(parent_t, _mv(parent_rot, slide)), tuple(-x for x in _mv(rot, child_t)))
  n = q.shape[1]
  return tuple(jnp.broadcast_to(c, (model.num_joints, n)) for c in rot + pos)


@functools.lru_cache(maxsize=64)
def level_schedule(levels, joint_parent_body, joint_child_body):
  """Packs the tree into scan steps of equal width W; each step reads only the previous one.

  Step t holds W frames. A slot either places a joint whose parent frame is in step t - 1,
  or passes a frame of step t - 1 through unchanged (its children are placed later).
  Joints on the longest remaining chains go first; of the widths tried, the one with the
  least work (steps x W) wins, so wide levels no longer pad every step.

  Returns (joint (S, W), source (S, W), flat step-slot index of every joint); joint index
  ``J`` means pass-through (identity), and the carry before step 0 is W copies of ground.
  """
  num_joints = len(joint_parent_body)
  mover = {b: j for j, b in enumerate(joint_child_body)}
  parent_joint = [None if p == GROUND else mover[p] for p in joint_parent_body]
  children = {j: [] for j in range(num_joints)}
  children[None] = [j for j in range(num_joints) if parent_joint[j] is None]
  for j, p in enumerate(parent_joint):
    if p is not None:
      children[p].append(j)
  height = {}
  for level in reversed(levels):
    for j in level:
      height[j] = 1 + max((height[c] for c in children[j]), default=0)
  best = None
  for width in range(max(1, -(-num_joints // len(levels))), max(map(len, levels)) + 1):
    plan = _pack(width, children, height, num_joints)
    if plan and (best is None or plan[0].size < best[0].size):
      best = plan
  return best


def _pack(width, children, height, num_joints):
  """Greedy packing for one width; None where a step cannot make progress."""
  carry = [None] * width  # the frame in each slot: a joint, or None for ground
  pending = {k: list(v) for k, v in children.items()}
  placed, steps, sources = {}, [], []

  def waiting():  # frames of the carry whose children are not all placed yet
    return [f for f in dict.fromkeys(carry) if pending[f]]

  while len(placed) < num_joints:
    ready = sorted(((j, carry.index(f)) for f in waiting() for j in pending[f]),
                   key=lambda js: (-height[js[0]], js[0]))
    chosen = []
    for j, slot in ready:
      pending[carry[slot]].remove(j)
      if len(chosen) + 1 + len(waiting()) <= width:
        chosen.append((j, slot, j))
      else:
        pending[carry[slot]].append(j)
    if not chosen:
      return None
    row = chosen + [(num_joints, carry.index(f), f) for f in waiting()]
    row += [(num_joints, 0, carry[0])] * (width - len(row))
    for w, (j, _, _) in enumerate(row):
      if j < num_joints:
        placed[j] = len(steps) * width + w
    steps.append([j for j, _, _ in row])
    sources.append([slot for _, slot, _ in row])
    carry = [f for _, _, f in row]
  return (np.array(steps, np.int32), np.array(sources, np.int32),
          tuple(placed[j] for j in range(num_joints)))


def _body_frames(model, q, s, root_rotation, cpu):
  """World frame of every body: 12 components (B, n)."""
  local = _joint_frames(model, q, s, cpu)
  ground = None
  if root_rotation is not None:
    # Place ground so that the root body lands at the origin with the given rotation.
    root = tuple(c[model.root_joint] for c in local)
    align = _mm(_unstack(root_rotation), _transpose(root[:9]))
    ground = align + tuple(-x for x in _mv(align, root[9:]))
  schedule = level_schedule(model.levels, model.joint_parent_body, model.joint_child_body)
  mover = np.argsort(model.joint_child_body)  # the joint that moves each body
  return compose_tree(local, schedule, ground, mover, cpu=cpu)


IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0)  # a frame's 12 components


def compose_tree(local, schedule, ground=None, rows=None, *, cpu):
  """World frames of a tree's joints, composed root to leaf by one ``lax.scan`` over
  ``schedule`` (``level_schedule``'s steps), in the ``cpu`` or the accelerator form
  (``LAYOUTS``; ``by_platform`` chooses).

  ``local``: each joint's frame in its parent's, 12 components (J, n); ``ground``: the frame
  the roots hang from, 12 components (n,) (default the identity). Returns the world frames
  of the joints ``rows`` (default all), 12 components (len(rows), n).
  """
  joint, source, flat = schedule
  n, dtype = local[0].shape[1], local[0].dtype
  if ground is None:
    ground = tuple(jnp.full((n,), v, dtype) for v in IDENTITY)
  # Per step: the local frames of its joints (pass-through slots: identity) and the slots
  # of the previous step they attach to.
  xs = (_take(tuple(jnp.concatenate([c, jnp.full((1, n), v, dtype)])
                    for c, v in zip(local, IDENTITY)), joint, cpu),  # 12 x (S, W, n)
        jnp.asarray(source))

  def place(previous, step):
    local_frames, sources = step
    world = _compose(_take(previous, sources, cpu), local_frames)
    return world, world

  carry = tuple(jnp.broadcast_to(c, (joint.shape[1], n)) for c in ground)
  _, frames = jax.lax.scan(place, carry, xs, unroll=1 if cpu else True)  # 12 x (S, W, n)
  rows = np.array(flat) if rows is None else np.array(flat)[np.asarray(rows)]
  return _take(tuple(c.reshape(joint.size, n) for c in frames), rows, cpu)


def _points(model, frames, s, cpu):
  """(3, J, n) joint centres and (3, M, n) markers from body frames (12 x (B, n))."""
  body = np.concatenate([np.array(model.joint_child_body, int),
                         np.array(model.marker_body, int)])
  dtype = frames[0].dtype
  offsets = _columns(jnp.concatenate([jnp.asarray(model.child_translation, dtype),
                                      jnp.asarray(model.marker_offsets, dtype)]), dtype)
  if s is not None:
    offsets = _mul(offsets, _unstack(s[:, body]))
  on_body = _take(frames, body, cpu)
  points = jnp.stack(_add(_mv(on_body[:9], offsets), on_body[9:]))
  return points[:, :model.num_joints], points[:, model.num_joints:]
