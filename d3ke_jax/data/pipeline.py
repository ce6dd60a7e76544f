"""Input pipeline over TFDS array_record data sources (random access, no TensorFlow).

Per-frame examples with train-time augmentation, and fixed-length windows of consecutive
frames (labels and per-frame estimates held in memory) that never cross clip boundaries;
shuffled deterministically from (seed, epoch), sharded by process, batched as (devices,
per_device_batch, ...) for a pmapped step, and prefetched on a background thread. Frames are
read, decoded and augmented by a pool of ``Workers``: threads (Pillow and NumPy release the
GIL) or processes; each frame's augmentation depends only on (seed, epoch, index), so
batches do not depend on the number or the kind of workers.
"""

import concurrent.futures
import dataclasses
import functools
import math
import multiprocessing
import os
import queue
import signal
import threading
import time

import numpy as np
import PIL.Image

from d3ke_jax.data.d3ke_synthetic import decode_jpeg
from d3ke_jax.errors import UserError

LABELS_3D = ("joints", "markers")  # camera-frame points rotated with the image


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Train-time augmentation, as in the paper: crop scale, rotation, translation, colour
  jitter and synthetic occluders. Zeros switch a part off."""
  scale: float = 0.15  # crop zoom factor in 1 +- scale
  rotation_degrees: float = 20.0
  translation: float = 0.05  # fraction of the crop size
  colour: float = 0.2  # brightness, contrast and saturation in 1 +- colour
  occluders: int = 2  # up to this many random rectangles

  @classmethod
  def none(cls):
    return cls(0.0, 0.0, 0.0, 0.0, 0)


def rotation_z(angle):
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def augment(example, rng, config: Augmentation):
  """Warps the image and transforms every label consistently.

  The image rotates about the principal point, which equals rotating the camera about its
  optical axis: 3D labels rotate by the same angle about the camera's z axis, and the
  intrinsics only take the zoom and shift.
  """
  out = dict(example)
  image = example["image"]
  size = image.shape[0]
  k = np.asarray(example["intrinsics"], float)
  angle = np.radians(rng.uniform(-1, 1) * config.rotation_degrees)
  zoom = 1 + rng.uniform(-1, 1) * config.scale
  shift = rng.uniform(-1, 1, 2) * config.translation * size
  spin = rotation_z(angle)
  for name in LABELS_3D:
    out[name] = (np.asarray(example[name]) @ spin.T).astype(np.float32)
  out["pelvis_rotation"] = (spin @ example["pelvis_rotation"]).astype(np.float32)
  # New intrinsics: zoom about the principal point, then shift.
  new_k = k.copy()
  new_k[:2, :2] *= zoom
  new_k[:2, 2] += shift
  out["intrinsics"] = new_k.astype(np.float32)
  # New pixels p' = K' R K^-1 p, so each new pixel reads the old image at K R^T K'^-1 p'.
  out["image"] = _warp(image, k @ spin.T @ np.linalg.inv(new_k))
  for name in ("joints", "markers"):
    points = out[name] @ new_k.T
    out[f"{name}_2d"] = (points[:, :2] / points[:, 2:]).astype(np.float32)
  out["image"] = _colour(out["image"], rng, config.colour)
  out["image"] = _occlude(out["image"], rng, config.occluders)
  return out


def _warp(image, to_old):
  """Resamples ``image`` at old = to_old @ new (homogeneous pixel coordinates), bilinear.
  ``to_old`` is affine (last row 0, 0, 1): intrinsics and rotations about the optical axis
  all are, and Pillow's affine transform is faster than its perspective one."""
  coefficients = (to_old / to_old[2, 2])[:2].reshape(-1)
  return np.asarray(PIL.Image.fromarray(image).transform(
      image.shape[1::-1], PIL.Image.Transform.AFFINE, tuple(coefficients),
      resample=PIL.Image.Resampling.BILINEAR))


def _colour(image, rng, amount):
  """Brightness b, then contrast c about the image's mean m, then saturation s about each
  pixel's grey g (its channels' mean), factors in 1 +- ``amount``. Together one affine map
  of every pixel's colour x, s c b x + (1 - s) c b g + (1 - c) m, which Pillow applies in one
  pass (rounded and clipped to 0-255)."""
  if not amount:
    return image
  brightness, contrast, saturation = rng.uniform(1 - amount, 1 + amount, 3)
  gain = contrast * brightness
  matrix = saturation * gain * np.eye(3) + (1 - saturation) * gain / 3
  offset = (1 - contrast) * brightness * image.mean()
  coefficients = np.concatenate([matrix, np.full((3, 1), offset)], 1).reshape(-1)
  return np.asarray(PIL.Image.fromarray(image).convert("RGB", tuple(coefficients)))


def _occlude(image, rng, count):
  image = image.copy()
  size = image.shape[0]
  for _ in range(rng.integers(0, count + 1)):
    w, h = rng.integers(size // 10, size // 4, 2)
    x, y = rng.integers(0, size - w), rng.integers(0, size - h)
    image[y:y + h, x:x + w] = rng.integers(0, 256, 3)
  return image


class Records:
  """Random access to the records of a TFDS data source (``len``, ``[index]``); a damaged
  record raises ``UserError`` naming its file, which array_record's error does not."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    try:
      return self.source[index]
    except RuntimeError as e:  # array_record: "Corrupted Riegeli/records file: ..."
      path = self.path(index)
      raise UserError(f"{path}: record {index} is damaged ({str(e).splitlines()[0]}); delete "
                      f"{os.path.dirname(path)} to build the dataset again") from None

  def path(self, index):
    """The file holding record ``index``."""
    split = self.source.dataset_info.splits[self.source.split]
    return split.filepaths[int(np.searchsorted(np.cumsum(split.shard_lengths), index, "right"))]


def decode(record):
  """A stored record -> example dict with the image as uint8 (H, W, 3) and text as str."""
  out = {k: (v.decode() if isinstance(v, bytes) and k != "image" else v) for k, v in
         record.items()}
  out["image"] = decode_jpeg(record["image"])
  return out


def window_starts(clips, window, stride):
  """Starts of windows of ``window`` consecutive records inside one clip, every ``stride``."""
  starts = []
  edges = np.flatnonzero(np.diff(clips)) + 1
  for begin, end in zip(np.concatenate([[0], edges]), np.concatenate([edges, [len(clips)]])):
    starts.extend(range(begin, end - window + 1, stride))
  return np.array(starts, int)


def _order(count, seed, epoch, shuffle, process_index, process_count):
  order = np.arange(count)
  if shuffle:
    order = np.random.default_rng([seed, epoch]).permutation(count)
  return order[process_index::process_count]


def usable_cpus():
  """CPU cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota
  (a container's share of a larger host)."""
  count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  try:
    with open("/sys/fs/cgroup/cpu.max") as f:
      quota, period = f.read().split()
    if quota != "max":
      count = min(count, max(1, math.ceil(int(quota) / int(period))))
  except (OSError, ValueError):
    pass
  return count or 1


class Workers:
  """Reads, decodes and augments the records of ``source`` on ``count`` threads (default:
  one per usable CPU core), or as many processes where ``processes``.

  Processes share nothing with the trainer's interpreter (no GIL, no library locks): for
  many-core hosts where threads stop scaling. Each holds its own copy of ``source`` (which
  must pickle, as TFDS data sources do); they start in a few seconds (each imports the
  parent's main module), ignore Ctrl-C, which the trainer handles, and exit if the parent
  dies. Use as a context manager; closing waits for them.
  """

  def __init__(self, source, count=None, processes=False):
    self.source, self.count = source, count or usable_cpus()
    if processes:
      self._pool = concurrent.futures.ProcessPoolExecutor(
          self.count, mp_context=multiprocessing.get_context("spawn"),  # JAX is not fork-safe
          initializer=_start_worker, initargs=(source, os.getpid()))
    else:
      self._pool = concurrent.futures.ThreadPoolExecutor(self.count)
    self._processes = processes

  def examples(self, indices, augmentation=None, seed=0, epoch=0):
    """The records ``indices``, decoded and augmented, in order. An error in a worker is
    raised here."""
    example = (functools.partial(_worker_example, augmentation, seed, epoch) if self._processes
               else functools.partial(_example, self.source, augmentation, seed, epoch))
    chunk = max(1, len(indices) // (4 * self.count)) if self._processes else 1
    return list(self._pool.map(example, [int(i) for i in indices], chunksize=chunk))

  def close(self):
    self._pool.shutdown(cancel_futures=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


_worker_source = None  # a process worker's copy of its pool's source


def _start_worker(source, parent):
  global _worker_source
  _worker_source = source
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
  threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent):
  """Ends this worker once ``parent`` is gone (killed, so that it could not close the pool)."""
  while os.getppid() == parent:
    time.sleep(1)
  os._exit(1)  # pylint: disable=protected-access


def _worker_example(augmentation, seed, epoch, index):
  return _example(_worker_source, augmentation, seed, epoch, index)


def _example(source, augmentation, seed, epoch, index):
  example = decode(source[index])
  if augmentation is not None:
    example = augment(example, np.random.default_rng([seed, epoch, index]), augmentation)
  return example


def frame_batches(source, batch_size, devices=1, seed=0, epoch=0, shuffle=True,
                  augmentation: Augmentation = None, process_index=0, process_count=1,
                  drop_remainder=True, start_batch=0, workers=None, processes=False):
  """Yields batches of frames as dicts of arrays shaped (devices, batch_size // devices, ...).

  ``batch_size`` is this process's share; the order depends only on (seed, epoch), and
  ``start_batch`` skips the first batches of the epoch (resuming) without reading them.
  Without ``drop_remainder`` the last batch is filled up by repeating its last frame.
  ``Workers(source, workers, processes)`` read, decode and augment the frames.
  """
  if batch_size % devices:
    raise ValueError(f"batch size {batch_size} is not divisible by {devices} devices")
  order = _order(len(source), seed, epoch, shuffle, process_index, process_count)
  with Workers(source, workers, processes) as pool:
    for first in range(start_batch * batch_size, len(order), batch_size):
      chunk = order[first:first + batch_size]
      if len(chunk) < batch_size:
        if drop_remainder:
          return
        chunk = np.pad(chunk, (0, batch_size - len(chunk)), mode="edge")
      yield batch_of(source, chunk, devices, augmentation, seed, epoch, pool)


def batch_of(source, indices, devices=1, augmentation: Augmentation = None, seed=0, epoch=0,
             workers: Workers = None):
  """The records ``indices`` of ``source`` as one batch (devices, per_device, ...), read,
  decoded and augmented on ``workers`` (a pool over ``source``) if given, else here."""
  if workers is None:
    examples = [_example(source, augmentation, seed, epoch, int(i)) for i in indices]
  else:
    examples = workers.examples(indices, augmentation, seed, epoch)
  return _stack(examples, devices)


def labels(source, keys):
  """The fields ``keys`` of every record, stacked (images are never decoded)."""
  records = [source[i] for i in range(len(source))]
  return {k: np.stack([np.asarray(r[k].decode() if isinstance(r[k], bytes) else r[k])
                       for r in records]) for k in keys}


def array_window_batches(arrays, starts, window, batch_size, devices=1, seed=0, epoch=0,
                         shuffle=True, process_index=0, process_count=1, start_batch=0):
  """Yields windows ``arrays[k][start:start + window]`` batched as (devices, per_device,
  window, ...), from per-frame arrays held in memory; ordered and resumed as
  ``frame_batches``."""
  if batch_size % devices:
    raise ValueError(f"batch size {batch_size} is not divisible by {devices} devices")
  order = np.asarray(starts)[_order(len(starts), seed, epoch, shuffle, process_index,
                                    process_count)]
  for first in range(start_batch * batch_size, len(order) - batch_size + 1, batch_size):
    index = order[first:first + batch_size, None] + np.arange(window)
    yield {k: v[index].reshape((devices, -1) + index.shape[1:] + v.shape[1:])
           for k, v in arrays.items()}


def covering_windows(clips, window):
  """Windows that cover every frame of every clip, for predicting whole sequences.

  Returns (index (K, window) frame indices, source (N, 2) the window and position each
  frame's prediction comes from). Windows stay inside their clip, so a clip shorter than
  ``window`` repeats its last frame; where windows overlap a frame takes the window in
  which it lies nearer the centre.
  """
  clips = np.asarray(clips)
  edges = np.flatnonzero(np.diff(clips)) + 1
  index, source = [], np.zeros((len(clips), 2), int)
  for begin, end in zip(np.concatenate([[0], edges]), np.concatenate([edges, [len(clips)]])):
    starts = list(range(begin, max(end - window, begin) + 1, window))
    if starts[-1] + window < end:
      starts.append(end - window)
    frames = np.arange(begin, end)
    centres = np.array(starts) + (window - 1) / 2
    nearest = np.argmin(np.abs(frames[:, None] - centres[None]) +
                        np.where((frames[:, None] >= np.array(starts)) &
                                 (frames[:, None] < np.array(starts) + window), 0, np.inf), 1)
    source[frames] = np.stack([len(index) + nearest, frames - np.array(starts)[nearest]], 1)
    index.extend(np.minimum(start + np.arange(window), end - 1) for start in starts)
  return np.array(index, int).reshape(-1, window), source


def _stack(examples, devices):
  batch = {}
  for key in examples[0]:
    values = [e[key] for e in examples]
    if isinstance(values[0], (str, bytes)):
      continue
    array = np.stack(values)
    batch[key] = array.reshape((devices, -1) + array.shape[1:])
  return batch


def prefetch(iterator, size=2):
  """Runs ``iterator`` on a background thread, ``size`` items ahead. An exception it raises
  is raised here, in the consumer, after the items before it; closing this generator early
  stops the thread."""
  items = queue.Queue(maxsize=size)
  stop = threading.Event()

  def put(entry):
    while not stop.is_set():
      try:
        items.put(entry, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def work():
    try:
      for item in iterator:
        if not put((item, None)):
          return
      put((None, StopIteration()))
    except BaseException as e:  # pylint: disable=broad-except  # re-raised by the consumer
      put((None, e))

  threading.Thread(target=work, daemon=True).start()
  try:
    while True:
      item, error = items.get()
      if isinstance(error, StopIteration):
        return
      if error is not None:
        raise error
      yield item
  finally:
    stop.set()
