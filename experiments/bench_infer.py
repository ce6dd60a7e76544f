"""``python -m experiments.bench infer``: frames/s of video inference, per batch size, dtype and
with or without the uncertainty head, on whatever devices are present.

Columns: D3KE's image network (ResNeXt-50 32x4d at ``--size`` px, with the kinematic head, the
box head, the uncertainty head where the row says so, and the skeletal layer) alone, on frames
already on the devices; decoding the video alone (PyAV, upright RGB frames); the host side
alone (the command's pass over the video with the network replaced by nothing: decoding once,
the background model from the key frames, finding the person, batching, putting the frames on
the devices, keeping the overlay's frames); the whole pipeline (the same with the network, the
crops made on the devices); the host side's frames/s per usable CPU core; the seconds then
taken to write the files (.mot, .trc, .osim, frames.csv, angles.png, the overlay video);
torchvision's resnext50_32x4d on the same batches when torch is installed (else "not
installed"); the paper's Table 5 (a T4 GPU) as the reference.

The network has random weights (speed does not depend on them). The video is fabricated:
``--video_size`` (default 1080p), ``--frames`` long (at least two batches), a block crossing
a textured static background, the person found as the command does by default.
"""

import itertools
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import cli, devices
from d3ke_jax.data.frames import default_model
from d3ke_jax.data.loader import usable_cpus
from d3ke_jax.infer import locate, outputs, pipeline
from d3ke_jax.io.video import FrameReader, write_video
from d3ke_jax.nets import heads
from d3ke_jax.nets.uncertainty import Uncertainty
from d3ke_jax.nets.d3ke import PerFrameD3KE, skeletal_layer
from d3ke_jax.skeleton import make_layout

PAPER_TABLE_5 = {1: 0.92, 16: 8.78, 64: 20.94, 128: 28.25, 256: 31.96}  # D3KE on a T4, fps
KEY_INTERVAL = 30  # a key frame every second, as phones and cameras write them


def add_parser(subparsers):
  """Registers the ``infer`` benchmark on ``experiments.bench``'s subcommands."""
  count = cli.number(int, 0)
  parser = subparsers.add_parser("infer", help="video inference: network, decoding, host "
                                 "side and whole pipeline")
  parser.add_argument("--batches", nargs="+", type=count, default=[1, 16, 64],
                      help="batch sizes (the paper's: 1 16 64 256; 256 takes long on a CPU)")
  parser.add_argument("--dtypes", nargs="+", choices=("float32", "bfloat16"),
                      default=["float32"])
  parser.add_argument("--size", type=count, default=256, help="crop size in pixels")
  parser.add_argument("--uncertainty", nargs="+", choices=("with", "without"),
                      default=["with", "without"],
                      help="rows with the uncertainty head (the default network) and without")
  parser.add_argument("--video_size", type=count, nargs=2, default=[1920, 1080],
                      metavar=("WIDTH", "HEIGHT"), help="the fabricated video's frames")
  parser.add_argument("--repeats", type=count, default=2, help="timed network calls")
  parser.add_argument("--frames", type=count, default=240,
                      help="video length (at least two batches)")
  parser.set_defaults(run=bench_infer)
  return parser


def bench_infer(args):
  device = jax.devices()[0]
  width, height = args.video_size
  cores = usable_cpus()
  torch_version = _torchvision_version()
  print(f"D3KE inference, ResNeXt-50 32x4d at {args.size} px, {device.platform.upper()} "
        f"({device.device_kind}, {jax.local_device_count()} device(s), {cores} usable CPU "
        f"cores); frames/s, network median of {args.repeats} calls after warm-up; decoding "
        f"and pipelines on a {width}x{height} video of at least {args.frames} frames, after "
        f"a warm-up run; torchvision {torch_version or 'not installed'}\n")
  header = (f"| {'batch':>5} | {'dtype':<8} | {'uncertainty':<11} | {'network':>8} | "
            f"{'decode alone':>12} | {'host side':>9} | {'whole pipeline':>14} | "
            f"{'pipeline / network':>18} | {'host side per core':>18} | {'files (s)':>9} | "
            f"{'torchvision':>13} | {'paper (T4)':>10} |")
  print(header)
  print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|", flush=True)
  model = default_model()
  layout = make_layout(model, include_root=False)
  with tempfile.TemporaryDirectory() as tmp:
    for dtype, batch, head in itertools.product(args.dtypes, args.batches, args.uncertainty):
      network = PerFrameD3KE(heads.bounds_for(model, layout), dtype=jnp.dtype(dtype),
                             box_head=True, uncertainty_head=head == "with")
      variables = network.init(jax.random.PRNGKey(0), jnp.zeros((1, args.size, args.size, 3)))
      predictor = pipeline.frame_predictor(network, variables, model, layout, args.size)
      if head == "with":  # calibrated as a trained run's, so that inference computes the SD
        predictor = predictor._replace(temperatures=Uncertainty(*(np.float32(1),) * 3))
      nothing = null_predictor(predictor)
      count = predictor.mesh.devices.size
      batch = -(-batch // count) * count
      path = fabricate_video(tmp, max(2 * batch, args.frames), width, height)
      alone = network_rate(predictor, batch, height, width, args.repeats)
      decoding = decode_rate(path)
      host, _ = pipeline_rate(nothing, path, batch, tmp)
      whole, files = pipeline_rate(predictor, path, batch, tmp)
      torch_rate = torchvision_rate(batch, args.size, args.repeats, dtype) if (
          torch_version) else None
      paper = PAPER_TABLE_5.get(batch)
      print(f"| {batch:>5} | {dtype:<8} | {head:<11} | {alone:>8.2f} | {decoding:>12.1f} | "
            f"{host:>9.1f} | {whole:>14.2f} | {whole / alone:>17.0%} | {host / cores:>18.1f} | "
            f"{files:>9.1f} | {_cell(torch_rate, torch_version):>13} | {_cell(paper):>10} |",
            flush=True)


def _cell(value, installed=True):
  if not installed:
    return "not installed"
  return "-" if value is None else f"{value:.2f}"


def _torchvision_version():
  try:
    import torchvision  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torchvision.__version__


def null_predictor(predictor):
  """``predictor`` with its network replaced by nothing: constant outputs of the right
  shapes (the model's middle pose), so that the rest of the pipeline runs as it would."""
  bounds = heads.bounds_for(predictor.model, predictor.layout)
  kinematics = heads.Kinematics(jnp.asarray(bounds.coordinate_centre, jnp.float32)[None],
                                jnp.asarray(bounds.scale_centre, jnp.float32)[None],
                                jnp.eye(3)[None])
  pose = jax.tree.map(np.asarray, skeletal_layer(predictor.model, predictor.layout, kinematics))
  kinematics = jax.tree.map(np.asarray, kinematics)

  def frames(placed, boxes):
    del placed
    repeat = lambda x: np.repeat(x, len(boxes), 0)
    return (jax.tree.map(repeat, kinematics), jax.tree.map(repeat, pose),
            np.full((len(boxes), 3), np.nan))
  return predictor._replace(frames=frames, steers=False)


def network_rate(predictor, batch, height, width, repeats):
  """Frames/s of the network and skeletal layer alone, the frames already on the devices
  (their crops made there)."""
  frames = np.random.default_rng(0).integers(0, 256, (batch, height, width, 3), np.uint8)
  placed = jax.block_until_ready(devices.put_rows(frames, predictor.mesh))
  boxes = np.tile([[width / 4, height / 8, 3 * height / 4]], (batch, 1))
  predictor.frames(placed, boxes)  # compilation
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    predictor.frames(placed, boxes)  # returns NumPy: the devices have finished
    times.append(time.perf_counter() - start)
  return batch / float(np.median(times))


def decode_rate(path):
  """Frames/s of decoding ``path`` to upright RGB frames, and nothing else."""
  start, count = time.perf_counter(), 0
  for frames, _ in FrameReader(path):
    count += len(frames)
  return count / (time.perf_counter() - start)


def pipeline_rate(predictor, path, batch, folder):
  """(frames/s of ``experiments.infer``'s pass over ``path`` with ``predictor``: the default
  tracker and ``predict_video`` keeping the overlay's frames; seconds of ``write_outputs``
  after it), after a warm-up run (compilation)."""
  def run():
    out = os.path.join(folder, "out")
    overlay = outputs.OverlayFrames(outputs.output_paths(out, "bench")["overlay"], 30.0)
    start = time.perf_counter()
    prediction = pipeline.predict_video(predictor, path, locate.BackgroundTracker.of_video(path),
                                        batch, keep=overlay)
    middle = time.perf_counter()
    outputs.write_outputs(predictor.model, predictor.layout, prediction, out, "bench", overlay)
    return len(prediction.time) / (middle - start), time.perf_counter() - middle

  run()
  return run()


def fabricate_video(folder, count, width, height):
  """A ``count``-frame video at 30 frames/s of a block crossing a textured static background
  (cached)."""
  path = os.path.join(folder, f"bench_{width}x{height}_{count}.mp4")
  if os.path.exists(path):
    return path
  rng = np.random.default_rng(0)
  backdrop = rng.integers(0, 256, (-(-height // 8), -(-width // 8), 3), np.uint8).repeat(
      8, 0).repeat(8, 1)[:height, :width]
  side = height // 2

  def frames():
    for t in range(count):
      x0 = int(width / 10 + (width * 0.8 - side / 2) * t / max(1, count - 1))
      frame = backdrop.copy()
      frame[height // 4:height // 4 + side, x0:x0 + side // 2] = (200, 60, 60)
      yield frame

  return write_video(path, frames(), 30, key_interval=KEY_INTERVAL)


def torchvision_rate(batch, size, repeats, dtype):
  """torchvision's resnext50_32x4d (random weights, eval, no grad) on the same batch."""
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
  net = torchvision.models.resnext50_32x4d().eval().to(device, torch_dtype)
  images = torch.rand(batch, 3, size, size, device=device, dtype=torch_dtype)
  times = []
  with torch.no_grad():
    for k in range(repeats + 1):
      start = time.perf_counter()
      net(images)
      if device == "cuda":
        torch.cuda.synchronize()
      if k:  # the first call warms up
        times.append(time.perf_counter() - start)
  return batch / float(np.median(times))
