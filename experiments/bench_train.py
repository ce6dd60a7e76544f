"""``python -m experiments.bench train [--config NAME|PATH ...] [--batch_size N] [--steps K]``:
training speed of per-frame configs, in examples/s.

For each config: the D3KE train step as the trainer runs it (a pmapped step over every
device: augmentation on the device, ResNeXt, kinematic head, skeletal layer, loss,
optimizer); the same step with a plain L2 of the head's outputs in place of the skeletal
layer and loss (the layer's overhead is the ratio of their times); and the host's input
pipeline (grain reading and decoding the JPEG frames into the batches the step takes) on
one thread (the examples/s one CPU core feeds), on one thread per usable CPU core and on as
many worker processes; "pipeline / step" compares the step with the kind of workers the
config trains with (``input_processes``). The two steps run interleaved, ``--steps`` times
each after a first call (compilation, timed apart), and the medians are shown; each
pipeline, once started and its read-ahead drained, delivers ``PIPELINE_BATCHES`` batches
back to back, ``--steps`` times. The frames are rendered as the synthetic dataset renders
them, at the config's crop size (no dataset needs to be built).
"""

import contextlib
import functools
import itertools
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp

from d3ke_jax import cli, configs, devices, runs
from d3ke_jax.data import augment, frames, loader
from d3ke_jax.data.d3ke_synthetic import encode_jpeg
from d3ke_jax.data.synthetic import MOVEMENTS
from d3ke_jax.errors import UserError
from d3ke_jax.nets import from_config
from d3ke_jax.train import trainer
from d3ke_jax.train import step as steps
from d3ke_jax.train.losses import loss_weights

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
# Without --config: these configs, at these batch sizes (None: the config's). ResNeXt-50 at
# 256 px runs at batch 8: at 32, on a busy 2-core CPU, a step took 2.5 minutes and 11 GB and
# its compilation 22 minutes; examples/s hardly depend on the batch size there.
DEFAULT_CONFIGS = {"synthetic_tiny": None, "synthetic": 8}
PIPELINE_BATCHES = 10  # batches a pipeline delivers per timed run


def add_parser(subparsers):
  """Registers the ``train`` benchmark on ``experiments.bench``'s subcommands."""
  count = cli.number(int, 0)
  parser = subparsers.add_parser("train", help="train step with and without the skeletal "
                                 "layer, and the input pipeline")
  parser.add_argument("--config", nargs="+", help="per-frame configs: names in "
                      "experiments/configs or .py files (default: "
                      + ", ".join(f"{name} at {f'batch {batch}' if batch else 'its batch size'}"
                                  for name, batch in DEFAULT_CONFIGS.items()) + ")")
  parser.add_argument("--batch_size", type=count,
                      help="batch size of every config (default: each config's)")
  parser.add_argument("--steps", type=count, default=3, help="timed calls of each")
  parser.set_defaults(run=bench_train)
  return parser


def load_config(name):
  """The config named as in experiments/configs or by its .py file."""
  if not name.endswith(".py"):
    path = os.path.join(CONFIGS, f"{name}.py")
    if not os.path.isfile(path):
      known = sorted(f[:-3] for f in os.listdir(CONFIGS) if f.endswith(".py") and
                     "def get_config" in open(os.path.join(CONFIGS, f), encoding="utf-8").read())
      raise UserError(f"{name}: no such config (a .py file or one of {', '.join(known)})")
    name = path
  return configs.load(name)


def bench_train(args):
  configs = {name: load_config(name) for name in args.config or DEFAULT_CONFIGS}
  own_batch = {name: config.get("batch_size") for name, config in configs.items()}
  for name, config in configs.items():
    if config.get("stage") != "per_frame":
      raise UserError(f"{name}: stage={config.get('stage')!r}; this benchmark measures "
                      "per-frame configs")
    default = None if args.config else DEFAULT_CONFIGS[name]
    config.batch_size = args.batch_size or default or config.batch_size
    trainer.check_config(config)
  device = jax.devices()[0]
  cores = loader.usable_cpus()
  print(f"D3KE training speed, float32 unless the config says otherwise, "
        f"{device.platform.upper()} ({device.device_kind}, {jax.local_device_count()} "
        f"device(s), {cores} usable CPU cores of {os.cpu_count()}); examples/s, median of "
        f"{args.steps} runs of each: steps interleaved after a first call (compilation, its "
        f"seconds apart), pipelines {PIPELINE_BATCHES} batches at a time; "
        f"load average {os.getloadavg()[0]:.2f} at the start\n")
  header = ("| config | crop | batch | D3KE step | without layer + loss | layer overhead | "
            f"host pipeline: 1 core / {cores} threads / {cores} processes | pipeline / step | "
            "first call (s): step / without |")
  print(header)
  print("|---|---|---|---|---|---|---|---|---|", flush=True)
  for name, config in configs.items():
    size = runs.dataset_config(config)[1].image_size  # the crops it trains on
    batch = config.batch_size
    first, seconds = interleaved_seconds(train_calls(config, size), args.steps)
    seconds += [pipeline_seconds(config, size, workers, processes, args.steps)
                for workers, processes in ((1, False), (cores, False), (cores, True))]
    rates = [batch / s for s in seconds]
    trained_with = rates[4] if config.get("input_processes") else rates[3]
    shown = f"{batch}" + ("" if batch == own_batch[name] else f" (config: {own_batch[name]})")
    print(f"| {name} | {size} | {shown} | {_figures(rates[0])} | {_figures(rates[1])} | "
          f"{seconds[0] / seconds[1] - 1:.0%} | "
          f"{' / '.join(_figures(rate) for rate in rates[2:])} | "
          f"{_figures(trained_with / rates[0])}x | {first[0]:.0f} / {first[1]:.0f} |", flush=True)
  print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


def _figures(value):
  """``value`` to three significant figures (more left of the point), without exponent."""
  value = float(f"{value:.3g}")
  return f"{value:,.{max(0, 2 - math.floor(math.log10(value)))}f}"


def head_l2_objective(model, layout, weights, kinematics, batch):
  """A plain L2 of the head's outputs: the train step without the skeletal layer and loss."""
  del model, layout, weights, batch
  loss = sum(jnp.mean(jnp.square(x)) for x in jax.tree.leaves(kinematics))
  return loss, {}, (kinematics,)


def rendered_records(count, size):
  """``count`` records (as a dataset stores them: JPEG bytes and labels) of frames rendered
  as the synthetic dataset's, two views of one subject's movement."""
  movement = sorted(MOVEMENTS)[0]
  examples = itertools.islice(frames.generate([0], [movement], -(-count // 2), size), count)
  return [dict(example, image=encode_jpeg(example["image"])) for example in examples]


def train_calls(config, size):
  """(D3KE step, step without layer and loss): calls that return once their work is done."""
  model = from_config.load_model(config)
  layout = from_config.layout_for(config, model)
  network = from_config.per_frame_network(config, model, layout)
  mesh = devices.make_mesh()
  optimizer, _ = trainer.make_optimizer(config.optimizer, 1000, config.epochs)
  with contextlib.closing(_stream(config, size, 1, False)) as batches:
    batch = devices.put_rows(next(batches)[0], mesh)
  prepare = (functools.partial(augment.augment_batch, seed=config.seed,
                               config=augment.Augmentation()) if config.augmentation else None)
  calls = []
  for objective in (steps.d3ke_objective, head_l2_objective):
    train, _ = steps.compile_steps(network, model, layout, loss_weights(config), optimizer,
                                   mesh, seed=config.seed, objective=objective,
                                   prepare=prepare)
    state = [steps.init_state(network, optimizer, jnp.zeros((1, size, size, 3)), config.seed,
                              mesh)]

    def call(train=train, state=state):  # the state is donated: each call takes the last
      state[0], _ = jax.block_until_ready(train(state[0], batch))
    calls.append(call)
  return calls


def _stream(config, size, workers, processes):
  """Batches of rendered frames as training reads them (this process's rows)."""
  records = rendered_records(config.batch_size, size)
  mesh = devices.make_mesh()
  order = loader.TrainOrder(len(records), config.batch_size,
                            devices.process_rows(mesh, config.batch_size), seed=config.seed)
  return loader.TrainStream(loader.ReadFrame(records), order, 100_000, workers,
                            processes).batches(0)


def pipeline_seconds(config, size, workers, processes, repeats):
  """Median seconds per batch of the host pipeline on ``workers`` threads (or processes)
  over ``repeats`` runs of ``PIPELINE_BATCHES`` batches, after its start-up and read-ahead."""
  with contextlib.closing(_stream(config, size, workers, processes)) as batches:
    for _ in range(2 * workers + 1):  # start-up, then what it read ahead meanwhile
      next(batches)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      for _ in range(PIPELINE_BATCHES):
        next(batches)
      times.append((time.perf_counter() - start) / PIPELINE_BATCHES)
  return statistics.median(times)


def interleaved_seconds(calls, repeats):
  """(seconds of each call's first run, median seconds of its next ``repeats`` runs), the
  calls taking turns so that a change of load affects them alike."""
  first, times = [], [[] for _ in calls]
  for call in calls:
    start = time.perf_counter()
    call()
    first.append(time.perf_counter() - start)
  for _ in range(repeats):
    for call, seconds in zip(calls, times):
      start = time.perf_counter()
      call()
      seconds.append(time.perf_counter() - start)
  return first, [statistics.median(s) for s in times]
