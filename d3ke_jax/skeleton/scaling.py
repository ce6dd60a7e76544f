"""Body scale factors from a static trial, and scaled ``.osim`` files.

``measurement_scales`` follows OpenSim's ScaleTool "measurements" method: a measurement's
factor is the mean, over its marker pairs, of the measured distance (averaged over the
trial's frames) divided by the same distance on the unscaled model in its default pose,
and it applies to chosen axes of chosen bodies. ``fit_scales`` refines factors together
with the poses of several frames by alternating inverse kinematics and a Gauss-Newton step
on the scales.
"""

import dataclasses
import os
from typing import Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax.io.atomic import atomic_path
from d3ke_jax.skeleton.ik import inverse_kinematics
from d3ke_jax.skeleton.kinematics import forward_kinematics
from d3ke_jax.skeleton.model import SkeletalModel


@dataclasses.dataclass(frozen=True)
class Measurement:
  """Marker pairs whose mean distance ratio scales the given axes ("xyz") of some bodies."""
  name: str
  marker_pairs: Tuple[Tuple[str, str], ...]
  bodies: Dict[str, str]


def default_measurements(model: SkeletalModel):
  """One measurement per body with at least two markers: all pairs on it, all three axes.

  Bodies with fewer markers get no measurement here (``measurement_scales`` gives them
  their parent's factors).
  """
  out = []
  for b, body in enumerate(model.body_names):
    names = [n for n, mb in zip(model.marker_names, model.marker_body) if mb == b]
    pairs = tuple((names[i], names[j]) for i in range(len(names))
                  for j in range(i + 1, len(names)))
    if pairs:
      out.append(Measurement(name=body, marker_pairs=pairs, bodies={body: "xyz"}))
  return tuple(out)


def measurement_scales(model: SkeletalModel, markers, measurements: Sequence[Measurement] = None,
                       inherit=True):
  """(B, 3) scale factors from a static trial's markers (T, M, 3) or (M, 3), metres.

  Raises:
    ValueError: a measurement names an unknown marker or body, or none of its marker
      pairs is present in any frame.
  """
  measurements = default_measurements(model) if measurements is None else measurements
  markers = np.asarray(markers, float).reshape(-1, model.num_markers, 3)
  default = np.asarray(forward_kinematics(model, np.asarray(model.coordinate_defaults)).markers)
  scales = np.ones((model.num_bodies, 3))
  measured = np.zeros((model.num_bodies, 3), bool)
  for m in measurements:
    ratios = []
    for a, b in m.marker_pairs:
      i, j = model.marker_index(a), model.marker_index(b)
      distance = np.nanmean(np.linalg.norm(markers[:, i] - markers[:, j], axis=-1))
      if np.isfinite(distance):
        ratios.append(distance / np.linalg.norm(default[i] - default[j]))
    if not ratios:
      raise ValueError(f"measurement {m.name!r}: none of its marker pairs is present")
    for body, axes in m.bodies.items():
      b = model.body_index(body)
      for axis in axes.lower():
        scales[b, "xyz".index(axis)] = np.mean(ratios)
        measured[b, "xyz".index(axis)] = True
  if inherit:
    for level in model.levels:  # root first, so parents are final before children
      for j in level:
        b, p = model.joint_child_body[j], model.joint_parent_body[j]
        if p >= 0:
          scales[b] = np.where(measured[b], scales[b], scales[p])
          measured[b] |= measured[p]
  return scales


def fit_scales(model: SkeletalModel, markers, initial_scales=None, rounds=4, prior_weight=1e-3,
               iterations=5):
  """Refines (B, 3) scales jointly with the poses of frames ``markers`` (T, M, 3).

  Alternates inverse kinematics at fixed scales with Gauss-Newton steps on the scales at
  fixed poses. ``prior_weight`` (per squared unit of scale) keeps factors that markers do
  not determine near ``initial_scales`` (default: ``measurement_scales``).

  Returns:
    (scales (B, 3), IKResult of the last round).
  """
  markers = jnp.asarray(markers, jnp.result_type(float))
  scales0 = jnp.asarray(measurement_scales(model, np.asarray(markers)) if initial_scales is None
                        else initial_scales, markers.dtype)
  present = ~jnp.isnan(markers[..., 0])
  targets = jnp.where(present[..., None], markers, 0.0)

  @jax.jit
  def scale_step(scales, coords):
    def residual(s):
      fitted = forward_kinematics(model, coords, scales=s).markers
      marker_part = jnp.where(present[..., None], fitted - targets, 0.0).reshape(-1)
      return jnp.concatenate([marker_part, jnp.sqrt(prior_weight) * (s - scales0).reshape(-1)])

    for _ in range(iterations):
      r = residual(scales)
      jac = jax.jacfwd(residual)(scales).reshape(r.shape[0], -1)
      step = jnp.linalg.solve(jac.T @ jac + 1e-9 * jnp.eye(jac.shape[1]), jac.T @ r)
      scales = jnp.clip(scales - step.reshape(scales.shape), 0.2, 5.0)
    return scales

  scales = scales0
  for _ in range(rounds):
    result = inverse_kinematics(model, markers, scales=scales, sequence=False)
    scales = scale_step(scales, result.coords)
  return np.asarray(scales), inverse_kinematics(model, markers, scales=scales, sequence=False)


def opensim_scale_set(factors):
  """An ``opensim.ScaleSet`` applying {body name: (3,) factors}."""
  import opensim  # pylint: disable=g-import-not-at-top
  scale_set = opensim.ScaleSet()
  for name, factor in factors.items():
    scale = opensim.Scale()
    scale.setName(name)
    scale.setSegmentName(name)
    scale.setScaleFactors(opensim.Vec3(*map(float, factor)))
    scale.setApply(True)
    scale_set.cloneAndAppend(scale)
  return scale_set


def write_scaled_osim(source, scales, path, body_names=None):
  """Scales an OpenSim model file with OpenSim's ``Model.scale`` and writes it atomically.

  Args:
    source: the unscaled model file.
    scales: (B, 3) factors in the model's body order (``body_names`` to give another).
    path: the output ``.osim``.
  """
  import opensim  # pylint: disable=g-import-not-at-top
  opensim.Logger.setLevelString("error")
  model = opensim.Model(os.fspath(source))
  state = model.initSystem()
  names = body_names or [model.getBodySet().get(i).getName()
                         for i in range(model.getBodySet().getSize())]
  scales = np.asarray(scales, float)
  if scales.shape != (len(names), 3):
    raise ValueError(f"{source}: scales must be ({len(names)}, 3), got {scales.shape}")
  scale_set = opensim_scale_set(dict(zip(names, scales)))
  if not model.scale(state, scale_set, False):
    raise RuntimeError(f"{source}: OpenSim could not scale the model")
  model.setName(model.getName() + "_scaled")
  with atomic_path(path) as tmp:
    model.printToXML(tmp)
  return path
