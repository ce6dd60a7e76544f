"""Trains D3KE: ``python -m experiments.train --config experiments/configs/X.py --workdir DIR``.

Any config value can be overridden on the command line, e.g. ``--config.epochs=2`` or
``--config.loss.lambda_marker=0``; unknown keys, wrong types and values out of range fail at
start-up. Runs resume from the last readable checkpoint in ``--workdir``, with the same
config (only epochs, max_steps, log_every_steps, checkpoint_every_steps, the data folders
and the input workers may change); SIGTERM or Ctrl-C saves a checkpoint and says the step
to resume from.

Several processes (hosts) train one run through ``jax.distributed``: give each the
coordinator's address (``host:port`` of process 0), the number of processes and its own id,
as flags or as the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
JAX_PROCESS_ID; or pass ``--distributed`` alone where JAX detects the cluster (SLURM, Open
MPI, Kubernetes, Cloud TPU). The workdir and the data folder must be on storage every
process sees.
"""

import argparse
import os

import jax
from absl import logging

from d3ke_jax import cli
from d3ke_jax.errors import UserError
from d3ke_jax.train.trainer import train_and_evaluate

ENVIRONMENT = {"coordinator_address": "JAX_COORDINATOR_ADDRESS",
               "num_processes": "JAX_NUM_PROCESSES", "process_id": "JAX_PROCESS_ID"}


def parse(argv):
  parser = cli.ArgumentParser(prog="python -m experiments.train", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  cli.add_config(parser, "training config file")
  parser.add_argument("--workdir", required=True, help="directory for checkpoints and metrics")
  parser.add_argument("--distributed", action="store_true", help="join a multi-process job "
                      "through jax.distributed, the cluster (SLURM, Open MPI, Kubernetes, "
                      "Cloud TPU) detected by JAX")
  parser.add_argument("--coordinator_address", help="host:port of process 0's coordinator "
                      "(default: $JAX_COORDINATOR_ADDRESS); joins a multi-process job")
  parser.add_argument("--num_processes", type=cli.number(int, 0),
                      help="processes in the job (default: $JAX_NUM_PROCESSES)")
  parser.add_argument("--process_id", type=cli.number(int, 0, inclusive=True),
                      help="this process's id, 0 to num_processes - 1 (default: "
                      "$JAX_PROCESS_ID)")
  return cli.parse(parser, argv)


def cluster(args, environ=os.environ):
  """The ``jax.distributed.initialize`` arguments for this command line: {} where JAX
  detects the cluster (``--distributed`` alone), None for a single process. A partial or
  malformed explicit job is a ``UserError``."""
  given = {name: getattr(args, name) for name in ENVIRONMENT}
  for name, variable in ENVIRONMENT.items():
    if given[name] is None and environ.get(variable, "") != "":
      given[name] = environ[variable]
  if all(value is None for value in given.values()):
    return {} if args.distributed else None
  missing = [f"--{name} (or {ENVIRONMENT[name]})" for name, value in given.items()
             if value is None]
  if missing:
    raise UserError(f"a multi-process job needs {', '.join(missing)} as well")
  address = str(given["coordinator_address"])
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise UserError(f"--coordinator_address={address!r}: not host:port")
  count, index = (_integer(name, given[name]) for name in ("num_processes", "process_id"))
  if count < 1:
    raise UserError(f"--num_processes={count}: must be at least 1")
  if not 0 <= index < count:
    raise UserError(f"--process_id={index}: must be in [0, {count - 1}]")
  return {"coordinator_address": address, "num_processes": count, "process_id": index}


def _integer(name, value):
  try:
    return int(value)
  except ValueError:
    raise UserError(f"{ENVIRONMENT[name]}={value!r}: not an integer (--{name})") from None


def main(argv=None):
  args = parse(argv)
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  job = cluster(args)
  if job is not None:
    jax.distributed.initialize(**job)
  train_and_evaluate(args.config, args.workdir)


if __name__ == "__main__":
  cli.run(main)
