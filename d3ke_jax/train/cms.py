"""The multi-step baseline (CMS, the paper's Table 1): D3KE's backbone regresses root-relative
3D markers (marker loss only, no skeletal layer); scaling and inverse kinematics then turn
the predicted markers into joint angles and body scales.

Trained by the per-frame stage's loop and data, differing in the head (``PerFrameMarkers``),
the objective (``marker_objective``) and the checkpoint kept as ``best/`` (the lowest
validation MPBLPE of the network's markers: what this network is trained for). Evaluation
(``predict``) scales each clip once from its predicted markers, as a multi-step pipeline
scales a subject once per trial: ``scaling.measurement_scales`` over the clip's frames
(OpenSim's measurement method), left and right bodies averaged where the layout shares
mirrored scales (as D3KE predicts them); then ``ik.inverse_kinematics`` tracks the clip's
frames with those scales. Predictions come out as ``per_frame.predict_frames`` gives them.
"""

import dataclasses
import time

import numpy as np

from d3ke_jax.data.records import labels
from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import PerFrameMarkers
from d3ke_jax.skeleton import ik, root_relative, scaling
from d3ke_jax.skeleton.kinematics import forward_kinematics
from d3ke_jax.skeleton.subset import expand_scales
from d3ke_jax import runs
from d3ke_jax.nets import from_config
from d3ke_jax.train import metrics, per_frame
from d3ke_jax.train import stage as stages
from d3ke_jax.train import step as steps
from d3ke_jax.train.dataset import load_dataset
from d3ke_jax.train.losses import loss_weights, marker_loss

VALIDATION_LABELS = ("markers", "joints", "frame_valid")


def build_network(config, model):
  return PerFrameMarkers(heads.marker_template(model), **from_config.network_options(config))


def marker_objective(model, layout, weights, markers, batch):
  """(loss, {"marker": L1}, (markers,)): predicted root-relative markers against the
  batch's, relative to its root joint."""
  del layout  # no skeletal layer
  true = root_relative(batch["markers"], batch["joints"], model.root_joint)
  valid = steps.marker_labels_valid(batch) * batch["frame_valid"][..., None]
  loss = marker_loss(markers, true, valid)
  return weights["marker"] * loss, {"marker": loss}, (markers,)


def check_loss(config):
  """``ConfigError`` unless ``config.loss`` weighs the marker term alone."""
  runs.require(config, "loss.lambda_marker")
  others = sorted(key for key, value in config.loss.items() if key != "lambda_marker" and value)
  if others:
    raise runs.ConfigError(f"loss.{others[0]}={config.loss[others[0]]!r}: the cms stage trains "
                           "markers alone (only loss.lambda_marker)")
  if not config.loss.lambda_marker > 0:
    raise runs.ConfigError(f"loss.lambda_marker={config.loss.lambda_marker!r}: must be > 0")


def make_stage(config, workdir, mesh):
  """The per-frame stage (data, batches, layout) with the marker network and objective,
  validated on the MPBLPE of the network's markers."""
  check_loss(config)
  stage = per_frame.make_stage(config, workdir, mesh)
  model = stage.model
  validation = load_dataset(config, splits=("validation",))["validation"]
  truth = labels(validation, VALIDATION_LABELS, optional=("markers_valid",))
  true = root_relative(truth["markers"], truth["joints"], model.root_joint)
  counted = metrics.marker_mask(true, truth["frame_valid"], truth.get("markers_valid"))

  def validate(evaluate, state):
    (markers,), scores, _ = per_frame.network_outputs(evaluate, state, validation,
                                                      config.batch_size, mesh)
    result = {"loss": scores["loss"], "mpblpe": metrics.mpblpe(markers, true, counted),
              "frames": int(truth["frame_valid"].sum())}
    return result, np.zeros((0, 1, 1, 3), np.uint8)

  return stage._replace(network=build_network(config, model), objective=marker_objective,
                        validate=validate, selection="mpblpe")


def predict(config, state, source, model, layout, clip, frame, mesh, desc=None):
  """Predictions for every record of ``source`` (frames ``frame`` of clips ``clip``), as
  ``per_frame.predict_frames`` returns them: the network's markers, then per clip scaling
  and IK; ``seconds`` is the network's plus scaling and IK's, each at its steady rate."""
  network = build_network(config, model)
  _, evaluate = steps.compile_steps(network, model, layout, loss_weights(config), None,
                                    mesh, objective=marker_objective)
  (markers,), scores, network_seconds = per_frame.network_outputs(evaluate, state, source,
                                                                  config.batch_size, mesh, desc)
  kinematics, ik_seconds = markers_to_kinematics(model, layout, markers, clip, frame,
                                                 runs.frame_rate(config))
  return dict(kinematics, **scores, seconds=network_seconds + ik_seconds)


def markers_to_kinematics(model, layout, markers, clip, frame, rate):
  """({coords (N, P), scales (N, G, 3), joints (N, J, 3), markers (N, M, 3)}, seconds) from
  root-relative markers (N, M, 3) of frames ``frame`` of clips ``clip`` (``rate`` frames
  per second): each clip scaled once from its markers, then tracked by IK; positions are
  those of the fitted model.
  ``seconds``: the time for every clip at the rate of all but the first (compilation)."""
  coords = np.zeros((len(markers), model.num_coordinates), np.float32)
  groups = np.zeros((len(markers), layout.num_scale_groups, 3), np.float32)
  joints = np.zeros((len(markers), model.num_joints, 3), np.float32)
  fitted = np.zeros_like(markers)
  measurements = distinct_pairs(model)
  frames, seconds = [], []
  for c in dict.fromkeys(np.asarray(clip).tolist()):
    rows = np.flatnonzero(clip == c)
    rows = rows[np.argsort(frame[rows])]
    start = time.perf_counter()
    scales = scaling.measurement_scales(model, markers[rows], measurements)
    group = np.stack([scales[list(members)].mean(0) for members in layout.body_groups])
    body = expand_scales(model, layout, group)
    solved = np.concatenate([np.asarray(r.coords) for r in ik.inverse_kinematics_chunks(
        model, markers[rows], scales=body, rate=rate)])
    pose = forward_kinematics(model, solved, scales=body)
    coords[rows], groups[rows] = solved, group
    joints[rows], fitted[rows] = np.asarray(pose.joint_origins), np.asarray(pose.markers)
    frames.append(len(rows))
    seconds.append(time.perf_counter() - start)
  return ({"coords": coords[:, np.array(layout.coordinates)], "scales": groups,
           "joints": joints, "markers": fitted}, stages.steady_seconds(frames, seconds))


def distinct_pairs(model, minimum=1e-3):
  """``scaling.default_measurements`` without the marker pairs less than ``minimum`` metres
  apart on the unscaled model (e.g. a joint centre and its virtual twin): their distance
  ratio is undefined."""
  default = np.asarray(forward_kinematics(model, np.asarray(model.coordinate_defaults)).markers)
  apart = lambda a, b: np.linalg.norm(default[model.marker_index(a)]
                                      - default[model.marker_index(b)]) >= minimum
  return tuple(dataclasses.replace(m, marker_pairs=tuple(p for p in m.marker_pairs if apart(*p)))
               for m in scaling.default_measurements(model)
               if any(apart(*p) for p in m.marker_pairs))
