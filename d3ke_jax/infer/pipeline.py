"""Video -> crops -> batched network -> skeletal layer: per-frame kinematics of one person.

Crops are made as in training: a square box around the person resampled to the run's crop
size (the box's camera is ``render.crop_camera``). The network runs in fixed-size batches
(the last one padded) split over this process's devices (``devices.data_parallel``, as
training does), while a background thread decodes and crops the next frames. A network with a box head steers
the crops: a frame whose crop is off the person is cropped again where the network sees
them and predicted again (``_Steering``). ``stage="sequence"`` refines the per-frame
estimates with the stage-2 run's network over windows covering every frame.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image

from d3ke_jax import devices
from d3ke_jax.background import ahead
from d3ke_jax.data.windows import refine_windows
from d3ke_jax.errors import UserError
from d3ke_jax.infer.boxes import FOUND, GATE, HELD, SIZE_RATIO, iou
from d3ke_jax.io.video import FrameReader
from d3ke_jax.nets.d3ke import BOX, skeletal_layer
from d3ke_jax.train import checkpoints, per_frame, runs, temporal
from d3ke_jax.train import stage as stages
from d3ke_jax.train.step import images_from_batch

STAGES = ("per_frame", "sequence")
STEER_STEPS = 2  # default re-crops of a frame on the network's box of the person in it
STEER_IOU = 0.95  # a crop overlapping the network's box less than this is moved onto it


class Predictor(NamedTuple):
  """A trained network ready for inference: ``frames(images uint8 (N, S, S, 3))`` gives
  NumPy (kinematics, pose, boxes (N, 3): the person's box in each crop as fractions of it,
  NaN without a box head) and ``windows(Kinematics (N, window, ...))`` (None for a
  per-frame run) gives (kinematics, pose); N must be a multiple of ``devices``."""
  model: Any
  layout: Any
  size: int  # crop size in pixels
  devices: int
  frames: Callable
  steers: bool = False  # the network has a box head
  window: int = 0
  windows: Optional[Callable] = None


def data_parallel(apply, variables, mesh):
  """``apply(variables, inputs)`` split over the devices of ``mesh``: a call takes a batch
  (leading axis, a multiple of the device count) and gives NumPy arrays."""
  replicated = devices.put_replicated(variables, mesh)  # placed once, not at every call
  run = devices.data_parallel(apply, mesh, (devices.REPLICATED, devices.SPLIT), devices.SPLIT)
  return lambda inputs: devices.to_host(run(replicated, devices.put_rows(inputs, mesh)))


def local_mesh():
  """The devices of this process: inference runs where its video is."""
  return devices.make_mesh(jax.local_devices())


def frame_predictor(network, variables, model, layout, size, mesh=None):
  """A per-frame ``Predictor`` of a Flax network and its variables."""
  mesh = mesh or local_mesh()

  def apply(variables, images):
    kinematics, state = network.apply(variables, images_from_batch({"image": images}),
                                      train=False, mutable=["intermediates"])
    boxes = state.get("intermediates", {}).get(BOX, (jnp.full((len(images), 3), jnp.nan),))[0]
    return kinematics, skeletal_layer(model, layout, kinematics), boxes
  return Predictor(model=model, layout=layout, size=size, devices=mesh.devices.size,
                   frames=data_parallel(apply, variables, mesh),
                   steers=bool(getattr(network, "box_head", False)))


def load_predictor(workdir, stage=None, dtype=None, checkpoint="best"):
  """The ``Predictor`` of a trained run (either stage; ``stage="per_frame"`` on a sequence
  run uses its stage-1 run alone); ``dtype`` "bfloat16" runs the image network in it."""
  config = runs.load_config(workdir)
  stage = stage or config.get("stage")
  if stage not in STAGES:
    raise UserError(f"--stage {stage!r}: choose from {', '.join(STAGES)}")
  if stage == "sequence" and config.get("stage") != "sequence":
    raise UserError(f"{workdir}: a {config.get('stage')!r} run has no sequence network "
                    "(--stage sequence needs the workdir of a stage-2 run)")
  two_stages = config.get("stage") == "sequence"
  first_dir = config.per_frame_workdir if two_stages else workdir
  first = temporal.per_frame_run(config) if two_stages else config
  if dtype:
    first = first.copy_and_resolve_references()
    first.model.dtype = dtype
  model = stages.load_model(first)
  layout = per_frame.layout_for(first, model)
  mesh = local_mesh()
  state = checkpoints.restore_state(first_dir, "best" if two_stages else checkpoint, mesh)
  predictor = frame_predictor(per_frame.build_network(first, model, layout), _variables(state),
                              model, layout, _crop_size(first), mesh)
  if stage == "per_frame":
    return predictor
  sequence = temporal.build_network(config, model, layout)

  def refine(variables, kinematics):
    refined = sequence.apply(variables, kinematics, train=False)
    return refined, skeletal_layer(model, layout, refined)

  return predictor._replace(window=int(config.window), windows=data_parallel(
      refine, _variables(checkpoints.restore_state(workdir, checkpoint, mesh)), mesh))


def _variables(state):
  return {"params": state.params, "batch_stats": state.batch_stats}


def _crop_size(config):
  """The crop size the run was trained on (that of its dataset's records)."""
  builder = runs.DATASETS[config.dataset.name]
  return next(c.image_size for c in builder.BUILDER_CONFIGS if c.name == config.dataset.config)


def crop(frame, box, size):
  """The square ``box`` (x0, y0, side) of an (H, W, 3) frame resampled to (size, size, 3),
  bilinear (after an area reduction when the box is at least twice the size); outside the
  frame is black. Crop pixel centres map to frame pixels as ``render.crop_camera`` says."""
  x0, y0, side = map(float, box)
  image = PIL.Image.fromarray(frame)
  factor = int(side // (2 * size))
  if factor > 1:
    image = image.reduce(factor)
    x0, y0, side = x0 / factor, y0 / factor, side / factor
  return np.asarray(image.transform((size, size), PIL.Image.Transform.EXTENT,
                                    (x0, y0, x0 + side, y0 + side),
                                    resample=PIL.Image.Resampling.BILINEAR))


class Prediction(NamedTuple):
  """Per-frame results over a whole video (T frames)."""
  time: np.ndarray  # (T,) seconds
  boxes: np.ndarray  # (T, 3) x0, y0, side in upright frame pixels: each frame's crop
  source: np.ndarray  # (T,) str: where each frame's first box came from (``boxes.SOURCES``)
  steered: np.ndarray  # (T,) int: how often the network moved the frame's crop
  coords: np.ndarray  # (T, P) layout coordinates, radians / metres
  scales: np.ndarray  # (T, G, 3) scale groups relative to the model
  rotation: np.ndarray  # (T, 3, 3) pelvis -> camera
  joints: np.ndarray  # (T, J, 3) root-relative, camera orientation, metres
  markers: np.ndarray  # (T, M, 3)
  cut: Optional[str]  # where decoding broke off, if it did

  @property
  def found(self):
    """(T,) bool: a person was found in the frame (else the box is held or the frame's)."""
    return np.isin(self.source, FOUND)


class _Batch(NamedTuple):
  frames: Optional[list]  # the upright frames (kept for steering, else None)
  boxes: np.ndarray  # (count, 3) their crop boxes
  sources: np.ndarray  # (count,) where the boxes came from
  crops: np.ndarray  # (batch_size, size, size, 3), the last crop repeated as padding


def _batches(reader, locate, size, batch_size, keep_frames, record):
  """Yields ``_Batch``es of the video's frames in order; each chunk's times go to
  ``record``."""
  pending, first = [], 0
  for frames, times in reader:
    boxes, sources = locate(frames, first)
    record(times)
    pending.extend((frame if keep_frames else None, box, source, crop(frame, box, size))
                   for frame, box, source in zip(frames, boxes, sources))
    first += len(frames)
    while len(pending) >= batch_size:
      yield _batch(pending[:batch_size], batch_size, keep_frames)
      pending = pending[batch_size:]
  if pending:
    yield _batch(pending, batch_size, keep_frames)


def _batch(items, batch_size, keep_frames):
  frames, boxes, sources, crops = zip(*items)
  crops = list(crops) + [crops[-1]] * (batch_size - len(crops))
  return _Batch(list(frames) if keep_frames else None, np.array(boxes), np.array(sources),
                np.stack(crops))


def frame_boxes(relative, crop_boxes):
  """Boxes (..., 3) given as fractions of their crops -> frame pixels (x0, y0, side)."""
  side = crop_boxes[..., 2:]
  return np.concatenate([crop_boxes[..., :2] + relative[..., :2] * side,
                         relative[..., 2:] * side], -1)


def steer_moves(new, old):
  """(N,) bool: frames whose crop ``old`` (N, 3) moves to the network's box ``new``: it
  overlaps the crop less than ``STEER_IOU`` and passes the tracker's gate (centre within
  ``boxes.GATE`` sides, side within a factor ``boxes.SIZE_RATIO``), so a crop without the
  person cannot wander off."""
  ratio = new[:, 2] / old[:, 2]
  distance = np.hypot(*((new[:, :2] + new[:, 2:] / 2) - (old[:, :2] + old[:, 2:] / 2)).T)
  return (np.isfinite(new).all(1) & (iou(new, old) < STEER_IOU)
          & (distance <= GATE * old[:, 2]) & (1 / SIZE_RATIO <= ratio) & (ratio <= SIZE_RATIO))


class _Steering:
  """Moves crops onto the person as the network sees them: each frame up to ``steps``
  times, re-cropped on the network's box of it and predicted again (the moved frames only,
  in full batches, so that nothing recompiles). Frames whose box is held (the person not
  found) start from the network's last box instead, so the crops follow the person from
  batch to batch while the finder has lost them."""

  def __init__(self, predictor, steps):
    self.predictor, self.steps, self.last = predictor, steps, None

  def __call__(self, batch):
    """(outputs, boxes (count, 3), moves (count,)) of a ``_Batch``."""
    count = len(batch.boxes)
    boxes, crops, moves = batch.boxes.copy(), batch.crops.copy(), np.zeros(count, int)
    if self.last is not None:
      held = np.flatnonzero(batch.sources == HELD)
      boxes[held] = self.last
      self._crop(batch, crops, boxes, held)
    outputs = self.predictor.frames(crops)
    for _ in range(self.steps):
      new = frame_boxes(outputs[2][:count], boxes)
      moved = np.flatnonzero(steer_moves(new, boxes))
      if not len(moved):
        break
      boxes[moved], moves[moved] = new[moved], moves[moved] + 1
      self._crop(batch, crops, boxes, moved)
      for first in range(0, len(moved), len(crops)):
        rows = moved[first:first + len(crops)]
        again = self.predictor.frames(crops[np.resize(rows, len(crops))])
        outputs = jax.tree.map(lambda x, y, rows=rows: _put(x, rows, y[:len(rows)]),
                               outputs, again)
    self.last = boxes[-1]
    return outputs, boxes, moves

  def _crop(self, batch, crops, boxes, rows):
    for k in rows:
      crops[k] = crop(batch.frames[k], boxes[k], self.predictor.size)


def _put(array, rows, values):
  array = array.copy()
  array[rows] = values
  return array


def predict_video(predictor: Predictor, path, locate, batch_size=64, chunk=64,
                  steer_steps=STEER_STEPS):
  """Runs ``predictor`` on every frame of the video ``path``; ``locate(frames, first)``
  gives each chunk's (boxes, sources). Decoding and cropping run ahead on a thread. A
  network with a box head then steers the crops onto the person (``_Steering``), each frame
  up to ``steer_steps`` times (0: never), each move one more network pass for the frame."""
  steer = _Steering(predictor, steer_steps) if predictor.steers and steer_steps else None
  batch_size = -(-batch_size // predictor.devices) * predictor.devices
  reader = FrameReader(path, chunk)
  times, sources, boxes, moves, outputs = [], [], [], [], []
  for batch in ahead(_batches(reader, locate, predictor.size, batch_size, steer is not None,
                                 times.append)):
    count = len(batch.boxes)
    if steer is None:
      result, batch_boxes, batch_moves = predictor.frames(batch.crops), batch.boxes, 0
    else:
      result, batch_boxes, batch_moves = steer(batch)
    outputs.append(jax.tree.map(lambda x, n=count: x[:n], result[:2]))
    sources.append(batch.sources)
    boxes.append(batch_boxes)
    moves.append(np.broadcast_to(batch_moves, count))
  if not outputs:
    raise UserError(reader.cut or f"{path}: no frames")
  kinematics, pose = jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
  if predictor.windows is not None:
    kinematics, pose = _sequence(predictor, kinematics, batch_size)
  return Prediction(time=np.concatenate(times), boxes=np.concatenate(boxes),
                    source=np.concatenate(sources), steered=np.concatenate(moves),
                    coords=kinematics.coords, scales=kinematics.scales,
                    rotation=kinematics.rotation, joints=pose.joints, markers=pose.markers,
                    cut=reader.cut)


def _sequence(predictor, kinematics, batch_size):
  """The sequence network over windows covering every frame (one clip)."""
  def refine(windows):
    outputs = [predictor.windows(jax.tree.map(lambda x, r=rows: jnp.asarray(x[r], jnp.float32),
                                              windows))
               for rows in devices.padded_rows(len(windows.coords), batch_size)]
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
  return refine_windows(refine, kinematics, np.zeros(len(kinematics.coords), int),
                        predictor.window)
