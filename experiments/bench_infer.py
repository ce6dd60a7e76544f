"""``python -m experiments.bench infer``: frames/s of D3KE's image network (ResNeXt-50 32x4d
at 256 px, with the kinematic head and the skeletal layer) alone and of the whole pipeline
(decode + crop + network + FK + .mot/.trc/.osim/frames.csv), per batch size and dtype, on
whatever devices are present; torchvision's resnext50_32x4d on the same batches when torch
is installed; the paper's Table 5 (a T4 GPU) as the reference.

The network has random weights (speed does not depend on them). The pipeline runs on a
fabricated 640x480 video of ``--pipeline_batches`` batches, the person found as the command
does by default (background subtraction: its background pass and its tracker included).
"""

import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from d3ke_jax import cli
from d3ke_jax.data.frames import default_model
from d3ke_jax.infer import outputs, pipeline
from d3ke_jax.io.video import write_video
from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import PerFrameD3KE
from d3ke_jax.skeleton import make_layout
from experiments.infer import locator

PAPER_TABLE_5 = {1: 0.92, 16: 8.78, 64: 20.94, 128: 28.25, 256: 31.96}  # D3KE on a T4, fps
VIDEO_SIZE = (480, 640)


def add_parser(subparsers):
  """Registers the ``infer`` benchmark on ``experiments.bench``'s subcommands."""
  count = cli.number(int, 0)
  parser = subparsers.add_parser("infer", help="video inference: network and whole pipeline")
  parser.add_argument("--batches", nargs="+", type=count, default=[1, 16, 64],
                      help="batch sizes (the paper's: 1 16 64 256; 256 takes long on a CPU)")
  parser.add_argument("--dtypes", nargs="+", choices=("float32", "bfloat16"),
                      default=["float32"])
  parser.add_argument("--size", type=count, default=256, help="crop size in pixels")
  parser.add_argument("--repeats", type=count, default=2, help="timed network calls")
  parser.add_argument("--pipeline_batches", type=count, default=4,
                      help="video length for the pipeline, in batches")
  parser.set_defaults(run=bench_infer)
  return parser


def bench_infer(args):
  device = jax.devices()[0]
  print(f"D3KE inference, ResNeXt-50 32x4d at {args.size} px, {device.platform.upper()} "
        f"({device.device_kind}, {jax.local_device_count()} device(s)); frames/s, network "
        f"median of {args.repeats} calls after warm-up; pipeline on a {VIDEO_SIZE[1]}x"
        f"{VIDEO_SIZE[0]} video of {args.pipeline_batches} batches\n")
  header = (f"| {'batch':>5} | {'dtype':<8} | {'network':>8} | {'pipeline':>8} | "
            f"{'pipeline / network':>18} | {'torchvision':>11} | {'paper (T4)':>10} |")
  print(header)
  print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|", flush=True)
  model = default_model()
  layout = make_layout(model, include_root=False)
  with tempfile.TemporaryDirectory() as tmp:
    for dtype in args.dtypes:
      network = PerFrameD3KE(heads.bounds_for(model, layout), dtype=jnp.dtype(dtype),
                             box_head=True)
      variables = network.init(jax.random.PRNGKey(0), jnp.zeros((1, args.size, args.size, 3)))
      predictor = pipeline.frame_predictor(network, variables, model, layout, args.size)
      for batch in args.batches:
        batch = -(-batch // predictor.devices) * predictor.devices
        alone = network_rate(predictor, batch, args.size, args.repeats)
        whole = pipeline_rate(predictor, batch, args.pipeline_batches, tmp)
        torch_rate = torchvision_rate(batch, args.size, args.repeats, dtype)
        paper = PAPER_TABLE_5.get(batch)
        print(f"| {batch:>5} | {dtype:<8} | {alone:>8.2f} | {whole:>8.2f} | "
              f"{whole / alone:>17.0%} | {_cell(torch_rate):>11} | {_cell(paper):>10} |",
              flush=True)


def _cell(value):
  return "-" if value is None else f"{value:.2f}"


def network_rate(predictor, batch, size, repeats):
  """Frames/s of the network and skeletal layer alone on a batch already in memory."""
  images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), np.uint8)
  predictor.frames(images)  # compilation
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    predictor.frames(images)  # returns NumPy: the device has finished
    times.append(time.perf_counter() - start)
  return batch / float(np.median(times))


def pipeline_rate(predictor, batch, batches, folder):
  """Frames/s of the default tracker, ``predict_video`` and ``write_outputs`` on a fabricated
  video: a walking block over a static background."""
  def run(count):
    path = fabricate_video(folder, count)
    start = time.perf_counter()
    prediction = pipeline.predict_video(predictor, path, locator(path, None), batch)
    outputs.write_outputs(predictor.model, predictor.layout, prediction,
                          os.path.join(folder, "out"), "bench")
    return count / (time.perf_counter() - start)

  run(batch)  # warm-up: compiles forward kinematics for the .trc
  return run(batch * batches)


def fabricate_video(folder, count):
  """A ``count``-frame video of a block crossing a textured static background."""
  height, width = VIDEO_SIZE
  rng = np.random.default_rng(0)
  backdrop = rng.integers(0, 256, (height // 8, width // 8, 3), np.uint8).repeat(8, 0).repeat(8, 1)

  def frames():
    for t in range(count):
      x0 = int(40 + (width - 200) * t / max(1, count - 1))
      frame = backdrop.copy()
      frame[100:400, x0:x0 + 120] = (200, 60, 60)
      yield frame

  return write_video(os.path.join(folder, f"bench_{count}.mp4"), frames(), 30)


def torchvision_rate(batch, size, repeats, dtype):
  """torchvision's resnext50_32x4d (random weights, eval, no grad) on the same batch; None
  without torch."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
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
