"""The D3KE train and eval steps, written once and run on every device: a pmapped step
(``devices.data_parallel``) over global batches and a replicated state.

One step serves every stage: ``prepare`` turns a stored batch into a training batch on the
device (augmentation), ``inputs`` picks the network's input (images for the per-frame
networks, per-frame kinematics for the sequence network) and ``objective`` turns the
network's output into the loss and the predictions (D3KE: the skeletal layer and
``d3ke_loss``; the multi-step baseline: a marker loss). Gradients, losses and BatchNorm
statistics are averaged across devices (``devices.AXIS``), and augmentation and dropout
draw one key per example, so N devices with a global batch of B give the same update as
one device with B.
"""

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from d3ke_jax import boxes, devices
from d3ke_jax.nets import uncertainty as uncertainty_lib
from d3ke_jax.nets.d3ke import BOX, Estimates, images_from_batch, skeletal_layer
from d3ke_jax.nets.heads import Kinematics
from d3ke_jax.train.losses import Targets, box_loss, d3ke_loss

@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any
  batch_stats: Any
  opt_state: Any


def create_state(network, optimizer, sample_input, rng):
  variables = network.init(rng, sample_input)
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                    batch_stats=variables.get("batch_stats", {}),
                    opt_state=optimizer.init(variables["params"]))


def init_state(network, optimizer, sample_input, seed, mesh):
  """``create_state`` from ``seed``, replicated on ``mesh`` (every process makes the same)."""
  create = functools.partial(create_state, network, optimizer, sample_input)
  return jax.jit(create, out_shardings=devices.replicated(mesh))(jax.random.PRNGKey(seed))


def abstract_state(network, optimizer, sample_input, mesh):
  """The shapes, dtypes and (replicated) shardings of ``init_state``'s state, to restore a
  checkpoint into."""
  create = functools.partial(create_state, network, optimizer, sample_input)
  shapes = jax.eval_shape(create, jax.random.PRNGKey(0))
  sharding = devices.replicated(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def targets_from_batch(batch, layout):
  """Loss targets from a pipeline batch (camera-frame ground truth)."""
  index = jnp.asarray(layout.coordinates)
  return Targets(coords=batch["coordinates"][..., index],
                 scales=batch["scales"][..., jnp.asarray([g[0] for g in layout.body_groups]), :],
                 joints=batch["joints"], markers=batch["markers"],
                 frame_mask=batch["frame_valid"].astype(jnp.float32),
                 coordinate_mask=batch["coordinate_valid"][..., index].astype(jnp.float32),
                 marker_mask=marker_labels_valid(batch))


def marker_labels_valid(batch):
  """(..., M) 1 where a marker's label is valid: records that say so per marker (BML-MoVi's
  ``markers_valid``: the label within 2 cm of the fitted model); others are all valid."""
  valid = batch.get("markers_valid")
  if valid is None:
    return jnp.ones(batch["markers"].shape[:-1], jnp.float32)
  return valid.astype(jnp.float32)


def estimates_from_batch(batch):
  """The sequence network's input: windows of per-frame ``Estimates`` (``input_*`` fields;
  the uncertainty where the batch has ``input_uncertainty_*``)."""
  kinematics = Kinematics(batch["input_coords"], batch["input_scales"], batch["input_rotation"])
  if "input_uncertainty_coords" not in batch:
    return Estimates(kinematics)
  return Estimates(kinematics, uncertainty_lib.Uncertainty(
      *(batch[f"input_uncertainty_{k}"] for k in uncertainty_lib.Uncertainty._fields)))


def d3ke_objective(model, layout, weights, kinematics, batch):
  """(loss, {term: value}, predictions (kinematics, pose)) of D3KE's output on a batch."""
  pose = skeletal_layer(model, layout, kinematics)
  loss, terms = d3ke_loss(kinematics, pose, targets_from_batch(batch, layout), weights,
                          root_joint=model.root_joint)
  return loss, terms, (kinematics, pose)


def box_targets(batch):
  """(true person boxes (..., 3) as fractions of the crop, mask (...,)): the square box
  with ``boxes.MARGIN`` around the valid markers' projections; the mask is 1 where the
  frame is valid and the box is not empty."""
  size = batch["image"].shape[-2]
  valid = marker_labels_valid(batch)
  box = boxes.square(batch["markers_2d"] / size, boxes.MARGIN, valid)
  mask = batch["frame_valid"] & (jnp.sum(valid, -1) >= 2) & (box[..., 2] > 0)
  return box, mask.astype(jnp.float32)


def _with_box_loss(loss, terms, box, batch):
  """(loss, terms, {"box_iou"}): the objective plus the box head's loss (which trains its
  own parameters only: the head reads stop_gradient features), and the boxes' mean IoU
  with the truth."""
  true_box, mask = box_targets(batch)
  true_box = jnp.where(mask[..., None] > 0, true_box, 1)
  term = box_loss(box, true_box, mask)
  iou = jnp.sum(jnp.where(mask > 0, boxes.iou(box, true_box), 0)) / jnp.maximum(jnp.sum(mask), 1)
  return loss + term, dict(terms, box=term), {"box_iou": iou}


def _with_uncertainty_loss(loss, terms, uncertainty, kinematics, batch, layout):
  """(loss, terms): the objective plus the uncertainty head's loss, the Laplace negative
  log-likelihood of the kinematics' errors (taken without gradient: it trains the head's
  own parameters only, the head reading stop_gradient features)."""
  targets = targets_from_batch(batch, layout)
  true = Kinematics(targets.coords, targets.scales, batch["pelvis_rotation"])
  error = jax.lax.stop_gradient(uncertainty_lib.errors(kinematics, true))
  frame = targets.frame_mask
  nll = uncertainty_lib.negative_log_likelihood
  term = (nll(error.coords, uncertainty.coords, targets.coordinate_mask * frame[..., None])
          + nll(error.scales, uncertainty.scales, frame[..., None, None])
          + nll(error.rotation, uncertainty.rotation, frame))
  return loss + term, dict(terms, uncertainty=term)


def _loss(network, model, layout, weights, inputs, objective, params, batch_stats, batch, rng,
          train):
  """(loss, (terms, batch_stats, predictions, scores)); a network with an uncertainty head
  adds its scales to the predictions."""
  variables = {"params": params, "batch_stats": batch_stats}
  outputs, updates = network.apply(
      variables, inputs(batch), train=train,
      mutable=["intermediates"] + (["batch_stats"] if train else []),
      rngs={"dropout": rng} if train else None)
  batch_stats = updates.get("batch_stats", batch_stats)
  loss, terms, predictions = objective(model, layout, weights, outputs, batch)
  scores = {}
  intermediates = updates.get("intermediates", {})
  if BOX in intermediates:
    loss, terms, scores = _with_box_loss(loss, terms, intermediates[BOX][0], batch)
  if uncertainty_lib.UNCERTAINTY in intermediates:
    uncertainty = intermediates[uncertainty_lib.UNCERTAINTY][0]
    loss, terms = _with_uncertainty_loss(loss, terms, uncertainty, predictions[0], batch, layout)
    predictions = tuple(predictions) + (uncertainty,)
  return loss, (terms, batch_stats, predictions, scores)


def _metrics(loss, terms, scores):
  """The step's metrics, averaged across devices."""
  return jax.lax.pmean({"loss": loss, **{f"loss_{k}": v for k, v in terms.items()}, **scores},
                       devices.AXIS)


def train_step(state: TrainState, batch, *, network, model, layout, weights, optimizer, inputs,
               seed, objective=d3ke_objective, prepare=None):
  """One optimizer step on this device's rows of the batch (run by ``compile_steps``)."""
  if prepare is not None:
    batch = prepare(batch)
  grad_fn = jax.value_and_grad(functools.partial(_loss, network, model, layout, weights, inputs,
                                                 objective), has_aux=True)
  # The step's dropout key, the same on every device (``nets.dropout`` draws per example):
  # masks depend on (seed, step, row) only, so resumed runs repeat them.
  rng = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
  (loss, (terms, batch_stats, _, scores)), grads = grad_fn(state.params, state.batch_stats,
                                                           batch, rng, True)
  grads = jax.lax.pmean(grads, devices.AXIS)
  batch_stats = jax.lax.pmean(batch_stats, devices.AXIS)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        batch_stats=batch_stats, opt_state=opt_state)
  return state, _metrics(loss, terms, scores)


def eval_step(state: TrainState, batch, *, network, model, layout, weights, inputs,
              objective=d3ke_objective):
  """(metrics, predictions) on this device's rows (run by ``compile_steps``): for D3KE the
  predictions are (kinematics, pose)."""
  loss, (terms, _, predictions, scores) = _loss(network, model, layout, weights, inputs,
                                                objective, state.params, state.batch_stats,
                                                batch, None, False)
  return _metrics(loss, terms, scores), tuple(predictions)


def compile_steps(network, model, layout, weights, optimizer, mesh, inputs=images_from_batch,
                  seed=0, objective=d3ke_objective, prepare=None):
  """(train, evaluate) on ``mesh``: ``train(state, batch) -> (state, metrics)`` (the state
  donated) and ``evaluate(state, batch) -> (metrics, predictions)``, for a state replicated
  on the mesh and global batches split over it; metrics are replicated, predictions split
  as the batch."""
  static = dict(network=network, model=model, layout=layout, weights=weights, inputs=inputs,
                objective=objective)
  train = devices.data_parallel(
      functools.partial(train_step, optimizer=optimizer, seed=seed, prepare=prepare, **static),
      mesh, (devices.REPLICATED, devices.SPLIT), (devices.REPLICATED, devices.REPLICATED),
      donate_argnums=0)
  evaluate = devices.data_parallel(functools.partial(eval_step, **static), mesh,
                                   (devices.REPLICATED, devices.SPLIT),
                                   (devices.REPLICATED, devices.SPLIT))
  return train, evaluate
