"""Video -> crops -> batched network -> skeletal layer: per-frame kinematics of one person.

Each video is decoded once. A background thread decodes it chunk by chunk, finds the person
in each frame and gathers fixed-size batches of whole frames (the last one padded), which
go to this process's devices; there each frame's crop is made, as in training (a square box
around the person resampled to the run's crop size: ``render.crop_camera``'s pixels,
``resample.crop``), and the network runs, split over the devices
(``devices.data_parallel``). A network with a box head steers the crops: a frame whose crop
is off the person is cropped again, from the frames already on the devices, where the
network sees them, and predicted again (``_Steering``). ``stage="sequence"`` refines the
per-frame estimates (with stage 1's uncertainty, where its network has the head) with the
stage-2 run's network over windows covering every frame; the uncertainty is then the
sequence network's own, calibrated by its run's temperatures.
"""

import contextlib
import os
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import boxes, calibration, checkpoints, devices, runs
from d3ke_jax.data import resample
from d3ke_jax.data.windows import refine_windows
from d3ke_jax.errors import UserError
from d3ke_jax.infer.locate import FOUND, HELD
from d3ke_jax.io.video import FrameReader
from d3ke_jax.nets import from_config
from d3ke_jax.nets import uncertainty as uncertainty_lib
from d3ke_jax.nets.d3ke import BOX, Estimates, images_from_batch, skeletal_layer
from d3ke_jax.nets.uncertainty import UNCERTAINTY, Uncertainty

STAGES = ("per_frame", "sequence")
STEER_STEPS = 2  # default re-crops of a frame on the network's box of the person in it
STEER_IOU = 0.95  # a crop overlapping the network's box less than this is moved onto it
# ... if that box overlaps the finder's (the image evidence: a boxes file, background
# subtraction, the detector) at least this much, in frames where the finder found the person
STEER_AGREE = 0.5
BATCH_BYTES = 4 << 30  # the frames of a batch take at most this much device memory


class Predictor(NamedTuple):
  """A trained network ready for inference on the devices of ``mesh``: ``frames(frames
  (N, H, W, 3) uint8, boxes (N, 3) x0, y0, side)`` crops the frames (NumPy, or already
  placed by ``devices.put_rows``) there and gives NumPy (kinematics, pose, boxes (N, 3):
  the person's box in each crop as fractions of it, NaN without a box head), then for a
  network with an uncertainty head its ``Uncertainty``; ``windows(Estimates (N, window,
  ...))`` (None for a per-frame run) gives (kinematics, pose), then for a sequence network
  with an uncertainty head its ``Uncertainty``. N must be a multiple of the device count.
  ``uncertain``: the network giving the final estimates (the sequence network, where there
  is one) has an uncertainty head; ``temperatures``: that run's calibration
  (``calibration.load``) of its checkpoint, if any."""
  model: Any
  layout: Any
  size: int  # crop size in pixels
  mesh: Any
  frames: Callable
  steers: bool = False  # the network has a box head
  uncertain: bool = False  # the final estimates' network has an uncertainty head
  window: int = 0
  windows: Optional[Callable] = None
  temperatures: Optional[Uncertainty] = None


def data_parallel(apply, variables, mesh, inputs=1):
  """``apply(variables, *batches)`` (``inputs`` batches) split over the devices of ``mesh``:
  a call takes batches (leading axis, a multiple of the device count; NumPy, or placed by
  ``devices.put_rows``) and gives NumPy arrays."""
  replicated = devices.put_replicated(variables, mesh)  # placed once, not at every call
  run = devices.data_parallel(apply, mesh, (devices.REPLICATED,) + (devices.SPLIT,) * inputs,
                              devices.SPLIT)
  put = lambda x: x if isinstance(x, jax.Array) else devices.put_rows(x, mesh)
  return lambda *batches: devices.to_host(run(replicated, *map(put, batches)))


def local_mesh():
  """The devices of this process: inference runs where its video is."""
  return devices.make_mesh(jax.local_devices())


def frame_predictor(network, variables, model, layout, size, mesh=None):
  """A per-frame ``Predictor`` of a Flax network and its variables."""
  mesh = mesh or local_mesh()

  def apply(variables, frames, crop_boxes):
    crops = jnp.round(jax.vmap(lambda frame, box: resample.crop(frame, box, size))(
        frames, crop_boxes)).astype(jnp.uint8)  # levels, as the images trained on
    kinematics, state = network.apply(variables, images_from_batch({"image": crops}),
                                      train=False, mutable=["intermediates"])
    sown = state.get("intermediates", {})
    found = sown.get(BOX, (jnp.full((len(crops), 3), jnp.nan),))[0]
    scales = (sown[UNCERTAINTY][0],) if UNCERTAINTY in sown else ()
    return (kinematics, skeletal_layer(model, layout, kinematics), found) + scales
  return Predictor(model=model, layout=layout, size=size, mesh=mesh,
                   frames=data_parallel(apply, variables, mesh, inputs=2),
                   steers=bool(getattr(network, "box_head", False)),
                   uncertain=bool(getattr(network, "uncertainty_head", False)))


def load_predictor(workdir, stage=None, dtype=None, checkpoint="best"):
  """The ``Predictor`` of a trained run (either stage; ``stage="per_frame"`` on a sequence
  run uses its stage-1 run alone); ``dtype`` "bfloat16" runs the image network in it."""
  config = runs.load_config(workdir)
  with _naming_config(workdir):
    if config.get("stage") not in STAGES:
      raise runs.ConfigError(f"stage={config.get('stage')!r}: inference needs a "
                             f"{' or '.join(STAGES)} run")
    stage = stage or config.stage
    if stage not in STAGES:
      raise UserError(f"--stage {stage!r}: choose from {', '.join(STAGES)}")
    if stage == "sequence" and config.stage != "sequence":
      raise UserError(f"{workdir}: a {config.stage!r} run has no sequence network "
                      "(--stage sequence needs the workdir of a stage-2 run)")
    two_stages = config.stage == "sequence"
    first = runs.per_frame_run(config) if two_stages else config
    first_dir = config.per_frame_workdir if two_stages else workdir
  with _naming_config(first_dir):
    if dtype:
      first = first.copy_and_resolve_references()
      first.model.dtype = dtype
    model = from_config.load_model(first)
    layout = from_config.layout_for(first, model)
    network = from_config.per_frame_network(first, model, layout)
    size = runs.dataset_config(first)[1].image_size  # the crops it was trained on
  if stage == "sequence":
    with _naming_config(workdir):
      sequence = from_config.sequence_network(config, model, layout, first)
      window = int(config.window)
  mesh = local_mesh()
  state = checkpoints.restore_state(first_dir, "best" if two_stages else checkpoint, mesh)
  predictor = frame_predictor(network, state.variables, model, layout, size, mesh)
  if stage == "per_frame":
    return predictor._replace(temperatures=_temperatures(first_dir, state))

  def refine(variables, estimates):
    refined, sown = sequence.apply(variables, estimates, train=False, mutable=["intermediates"])
    scales = sown.get("intermediates", {}).get(UNCERTAINTY, ())
    return (refined, skeletal_layer(model, layout, refined)) + tuple(scales)

  state = checkpoints.restore_state(workdir, checkpoint, mesh)
  return predictor._replace(window=window, windows=data_parallel(refine, state.variables, mesh),
                            uncertain=sequence.uncertainty_head,
                            temperatures=_temperatures(workdir, state))


def _temperatures(workdir, state):
  """The temperatures of the run in ``workdir`` fitted for the checkpoint ``state``, or None."""
  with _naming_config(workdir):
    calibrated = calibration.load(workdir)
  if calibrated is not None and calibrated[0] == int(state.step):  # of this checkpoint
    return calibrated[1]
  return None


@contextlib.contextmanager
def _naming_config(workdir):
  """Errors in reading the config of the run in ``workdir`` as ``ConfigError``s naming its
  file: a ``ConfigError`` (unless it names a config file already), or a key missing or of
  the wrong type."""
  path = os.path.join(workdir, runs.CONFIG_FILE)
  try:
    yield
  except runs.ConfigError as e:
    if runs.CONFIG_FILE in str(e):
      raise
    raise runs.ConfigError(f"{path}: {e}") from None
  except (AttributeError, KeyError, TypeError) as e:
    raise runs.ConfigError(f"{path}: not the config of a run ({type(e).__name__}: {e})") from None


class Prediction(NamedTuple):
  """Per-frame results over a whole video (T frames)."""
  time: np.ndarray  # (T,) seconds
  boxes: np.ndarray  # (T, 3) x0, y0, side in upright frame pixels: each frame's crop
  source: np.ndarray  # (T,) str: where each frame's first box came from (``locate.SOURCES``)
  steered: np.ndarray  # (T,) int: how often the network moved the frame's crop
  coords: np.ndarray  # (T, P) layout coordinates, radians / metres
  scales: np.ndarray  # (T, G, 3) scale groups relative to the model
  rotation: np.ndarray  # (T, 3, 3) pelvis -> camera
  joints: np.ndarray  # (T, J, 3) root-relative, camera orientation, metres
  markers: np.ndarray  # (T, M, 3)
  cut: Optional[str]  # where decoding broke off, if it did
  uncertainty: Optional[Uncertainty] = None  # (T, ...) the head's calibrated scales

  @property
  def found(self):
    """(T,) bool: a person was found in the frame (else the box is held or the frame's)."""
    return np.isin(self.source, FOUND)


class _Batch(NamedTuple):
  frames: np.ndarray  # (batch_size, H, W, 3): ``count`` frames, then the last one repeated
  boxes: np.ndarray  # (batch_size, 3) their crop boxes (padding likewise)
  sources: np.ndarray  # (count,) where the boxes came from
  times: np.ndarray  # (count,) seconds
  count: int


def _batches(reader, locate, batch_size):
  """Yields ``_Batch``es of the video's frames in order (``reader``'s chunks of
  ``batch_size``), each frame's box found by ``locate(frames, first)``."""
  first = 0
  for frames, times in reader:
    found, sources = locate(frames, first)
    count = len(frames)
    pad = lambda rows: rows if count == batch_size else np.concatenate(
        [rows, np.repeat(rows[-1:], batch_size - count, 0)])
    yield _Batch(pad(frames), pad(np.asarray(found)), np.asarray(sources), times, count)
    first += count


def steer_moves(new, old, evidence=None):
  """(N,) bool: frames whose crop ``old`` (N, 3) moves to the network's box ``new``: it
  overlaps the crop less than ``STEER_IOU`` and passes the tracker's gate
  (``boxes.passes_gate``), so a crop without the person cannot wander off; and, where the
  finder's box ``evidence`` (N, 3) is given (not NaN), it overlaps that at least
  ``STEER_AGREE``: the network moves a crop only where the image agrees."""
  moves = np.isfinite(new).all(1) & (boxes.iou(new, old) < STEER_IOU) & boxes.passes_gate(
      new, old)
  if evidence is not None:
    known = np.isfinite(evidence).all(1)
    moves &= ~known | (boxes.iou(new, np.where(known[:, None], evidence, 0.0)) >= STEER_AGREE)
  return moves


class _Steering:
  """Moves crops onto the person as the network sees them: each frame up to ``steps``
  times, cropped again on the network's box of it (from the frames on the devices) and
  predicted again (a whole batch, so that nothing recompiles, the moved frames taken from
  it), where the network's box agrees with the finder's (``steer_moves``). Frames whose
  box is held (the person not found) start from the network's last box
  instead, so the crops follow the person from batch to batch while the finder has lost
  them."""

  def __init__(self, predictor, steps):
    self.predictor, self.steps, self.last = predictor, steps, None

  def __call__(self, batch, placed):
    """(outputs, boxes (count, 3), moves (count,)) of a ``_Batch`` whose frames are
    ``placed`` on the devices."""
    count = batch.count
    crops, moves = batch.boxes.copy(), np.zeros(count, int)
    if self.last is not None:
      crops[np.flatnonzero(batch.sources == HELD)] = self.last
    evidence = np.where(np.isin(batch.sources, FOUND)[:, None], batch.boxes[:count], np.nan)
    outputs = self.predictor.frames(placed, crops)
    for _ in range(self.steps):
      new = boxes.in_frame(outputs[2][:count], crops[:count])
      moved = np.flatnonzero(steer_moves(new, crops[:count], evidence))
      if not len(moved):
        break
      crops[moved], moves[moved] = new[moved], moves[moved] + 1
      again = self.predictor.frames(placed, crops)
      outputs = jax.tree.map(lambda x, y: _put(x, moved, y[moved]), outputs, again)
    self.last = crops[count - 1]
    return outputs, crops[:count], moves


def _put(array, rows, values):
  array = array.copy()
  array[rows] = values
  return array


def batch_size_for(predictor, requested, frames, height, width):
  """The batch size to run: ``requested`` bounded by the video's length (``frames``, 0 when
  unknown) and by ``BATCH_BYTES`` of frames, a multiple of the device count."""
  size = min(requested, frames or requested, max(1, BATCH_BYTES // (height * width * 3)))
  count = predictor.mesh.devices.size
  return -(-size // count) * count


def predict_video(predictor: Predictor, path, locate, batch_size=64, steer_steps=STEER_STEPS,
                  keep=None):
  """Runs ``predictor`` on every frame of the video ``path``, decoded once; ``locate(frames,
  first)`` gives each chunk's (boxes, sources). Decoding, finding the person and placing
  the frames on the devices run ahead on a thread. A network with a box head then steers
  the crops onto the person (``_Steering``), each frame up to ``steer_steps`` times (0:
  never), each move one more network pass for the frame. ``keep(frames)``, if given,
  receives the decoded frames in order (e.g. for an overlay video)."""
  steer = _Steering(predictor, steer_steps) if predictor.steers and steer_steps else None
  info = FrameReader(path).info
  batch_size = batch_size_for(predictor, batch_size, info.frames, info.height, info.width)
  reader = FrameReader(path, batch_size)
  times, sources, crops, moves, outputs = [], [], [], [], []
  batches = ((batch.frames, batch) for batch in _batches(reader, locate, batch_size))
  for frames, batch in devices.prefetch(batches, predictor.mesh):
    count = batch.count
    if steer is None:
      result, batch_boxes, batch_moves = predictor.frames(frames, batch.boxes), batch.boxes[
          :count], np.zeros(count, int)
    else:
      result, batch_boxes, batch_moves = steer(batch, frames)
    outputs.append(jax.tree.map(lambda x, n=count: x[:n], result[:2] + result[3:]))
    if keep is not None:
      keep(batch.frames[:count])
    times.append(batch.times)
    sources.append(batch.sources)
    crops.append(batch_boxes)
    moves.append(batch_moves)
  if not outputs:
    raise UserError(reader.cut or f"{path}: no frames")
  kinematics, pose, *scales = jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
  if predictor.windows is not None:
    kinematics, pose, *scales = _sequence(predictor, Estimates(kinematics, *scales),
                                          batch_size)
  uncertainty = None
  if scales and predictor.temperatures is not None:
    uncertainty = uncertainty_lib.calibrated(scales[0], predictor.temperatures)
  return Prediction(time=np.concatenate(times), boxes=np.concatenate(crops),
                    source=np.concatenate(sources), steered=np.concatenate(moves),
                    coords=kinematics.coords, scales=kinematics.scales,
                    rotation=kinematics.rotation, joints=pose.joints, markers=pose.markers,
                    cut=reader.cut, uncertainty=uncertainty)


def _sequence(predictor, estimates, batch_size):
  """The sequence network over windows covering every frame (one clip) of per-frame
  ``Estimates`` (stage 1's uncertainty raw, as the sequence network trained on it)."""
  def refine(windows):
    outputs = [predictor.windows(jax.tree.map(lambda x, r=rows: jnp.asarray(x[r], jnp.float32),
                                              windows))
               for rows in devices.padded_rows(len(windows.kinematics.coords), batch_size)]
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
  return refine_windows(refine, estimates, np.zeros(len(estimates.kinematics.coords), int),
                        predictor.window)
