"""Training with several processes joined by ``jax.distributed`` (gloo collectives on CPU),
as on several hosts: two processes of two devices train, checkpoint and validate, stop on
SIGTERM and on an interrupt to one of them, resume, and match one process of four devices;
checkpoints restore in any layout of processes and devices (1x4, 2x2, 4x1)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from test_trainer import TINY_RUN, _config

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TIMEOUT = 600  # seconds a launch may take on a busy 2-core machine


def _port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _environment(devices, cache):
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache))


def _launch(command, processes, devices, cache):
  """``processes`` processes of ``command`` (argument lists), joined when more than one."""
  port = _port()
  job = lambda i: ([] if processes == 1 else [f"--coordinator_address=localhost:{port}",
                                               f"--num_processes={processes}",
                                               f"--process_id={i}"])
  return [subprocess.Popen(command + job(i), cwd=REPO, env=_environment(devices, cache),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for i in range(processes)]


def _finish(launched):
  """(exit status, stdout, stderr) of each process."""
  results = []
  for process in launched:
    out, err = process.communicate(timeout=TIMEOUT)
    results.append((process.returncode, out, err))
  return results


def _rows(workdir, split="train"):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  return [row for row in map(json.loads, open(path)) if row["split"] == split]


def _when_trained(launched, workdir, step):
  """Waits until ``workdir``'s run has logged ``step``."""
  deadline = time.monotonic() + TIMEOUT
  while not any(row["step"] >= step for row in _rows(workdir)):
    if time.monotonic() > deadline or any(p.poll() is not None for p in launched):
      for p in launched:
        p.kill()
      results = _finish(launched)
      raise AssertionError(f"exit statuses {[code for code, _, _ in results]}; stderr:\n"
                           + "\n".join(err[-2000:] for _, _, err in results))
    time.sleep(0.5)


def _last_line(err):
  return [line for line in err.splitlines() if line.startswith("experiments.train: ")][-1]


@pytest.fixture(scope="module")
def data_dir(micro_data):
  return micro_data  # built before the jobs start


def _train_command(data_dir, workdir):
  values = dict(TINY_RUN, **{"dataset.data_dir": data_dir, "checkpoint_every_steps": 5})
  return ([sys.executable, "-m", "experiments.train", "--config",
           os.path.join(REPO, "experiments", "configs", "synthetic_tiny.py"),
           "--workdir", str(workdir)] + [f"--config.{k}={v}" for k, v in values.items()])


# Four launches of whole training runs (about 5 minutes on 2 cores): run with -m slow. The
# default suite keeps the multi-process checkpoint layouts below and, in test_trainer.py,
# the stops and resumes of one process.
@pytest.mark.slow
def test_two_processes_stop_resume_and_match_one_process(tmp_path, data_dir):
  cache = tmp_path / "xla"
  one, two = tmp_path / "one", tmp_path / "two"
  [(code, _, err)] = _finish(_launch(_train_command(data_dir, one), 1, 4, cache))
  assert code == 0, err[-3000:]
  # Two processes of two devices: SIGTERM to both (what a scheduler sends) ...
  job = _launch(_train_command(data_dir, two), 2, 2, cache)
  _when_trained(job, two, 6)
  for process in job:
    process.send_signal(signal.SIGTERM)
  first = _finish(job)
  stopped = [int(_last_line(err).split(" at step ")[1].split(":")[0]) for _, _, err in first]
  assert [code for code, _, _ in first] == [143, 143] and stopped[0] == stopped[1], first
  assert _last_line(first[0][2]).startswith("experiments.train: stopped by "), first[0][2]
  assert _last_line(first[0][2]).endswith(
      f"at step {stopped[0]}: checkpoint saved; run the same command to resume")
  assert os.path.isdir(two / "checkpoints" / str(stopped[0]))
  # ... then, resumed, an interrupt to one of them stops both at one step, within seconds.
  job = _launch(_train_command(data_dir, two), 2, 2, cache)
  _when_trained(job, two, stopped[0] + 4)
  start = time.monotonic()
  job[1].send_signal(signal.SIGINT)
  second = _finish(job)
  assert time.monotonic() - start < 60
  steps = [int(_last_line(err).split(" at step ")[1].split(":")[0]) for _, _, err in second]
  assert [code for code, _, _ in second] == [143, 130] and steps[0] == steps[1], second
  assert _last_line(second[1][2]) == (f"experiments.train: interrupted at step {steps[0]}: "
                                      "checkpoint saved; run the same command to resume")
  assert os.path.isdir(two / "checkpoints" / str(steps[0]))
  # Resumed to the end.
  third = _finish(_launch(_train_command(data_dir, two), 2, 2, cache))
  assert [code for code, _, _ in third] == [0, 0], third[0][2][-3000:]
  assert not list(two.rglob("*tmp*"))
  # Process 0 alone logged, each step once (replayed steps are not logged twice).
  reference, ours = _rows(one), _rows(two)
  assert [r["step"] for r in ours] == [r["step"] for r in reference] == list(range(1, 25))
  # The same batches on the same 4 devices: the first step's loss is the same, and the
  # second's but for the order of float sums across devices (gloo's against XLA's), which
  # Adam then amplifies where gradients are near 0: measured 1.1e-7 at step 1, 5.8e-5 at step
  # 2, up to 5.5 % by step 24, 1.2 % on average; validation MAE_angle within 0.014 deg,
  # MPBLPE within 0.7 %.
  losses = np.array([[r["loss"] for r in ours], [r["loss"] for r in reference]])
  assert losses[0, 0] == pytest.approx(losses[1, 0], rel=1e-6), losses
  assert losses[0, 1] == pytest.approx(losses[1, 1], rel=1e-3), losses
  # The uncertainty head's likelihood makes the loss negative later on and can bring it near
  # 0, so later steps are compared on the loss's scale (at least 1), not as ratios.
  scale = np.maximum(np.abs(losses[1]), 1.0)
  assert np.all(np.abs(losses[0] - losses[1]) / scale < 0.1), losses
  assert np.mean(np.abs(losses[0] - losses[1]) / scale) < 0.03, losses
  for a, b in zip(_rows(two, "validation"), _rows(one, "validation")):
    assert a["step"] == b["step"] and a["frames"] == b["frames"] == 32
    assert a["mae_angle"] == pytest.approx(b["mae_angle"], abs=0.3)
    assert a["mpblpe"] == pytest.approx(b["mpblpe"], rel=0.05)


def test_checkpoints_restore_in_any_layout(tmp_path):
  """Each layout saves a checkpoint of its own step; every other layout restores it (the
  same state, replicated on its own devices); the data-iterator state of a process comes
  back only where the number of processes is the same."""
  cache = tmp_path / "xla"
  script = [sys.executable, os.path.join(HERE, "layout_check.py"), str(tmp_path)]
  plan = [((1, 4), "ckpt_14", []), ((2, 2), "ckpt_22", ["ckpt_14"]),
          ((4, 1), "ckpt_41", ["ckpt_14", "ckpt_22"]), ((1, 4), "ckpt_15", ["ckpt_22", "ckpt_41"]),
          ((2, 2), "ckpt_23", ["ckpt_41", "ckpt_14"])]
  saved, restored = {}, []
  for (processes, devices), name, others in plan:
    port = _port()
    job = [subprocess.Popen(script + [name, str(processes), str(i), str(port)] + others,
                            env=_environment(devices, cache), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(processes)]
    for code, out, err in _finish(job):
      assert code == 0, err[-3000:]
      for line in out.splitlines():  # layout_check's lines (not, say, a library's notes)
        words = line.split()
        if len(words) < 7 or words[1] != "process":
          continue
        if words[3] == "saved":
          saved[words[4]] = float(words[6])
        elif words[3] == "restored":
          restored.append((words[0], words[4], int(words[6]), float(words[8]),
                           " ".join(words[10:])))
  assert len(restored) == 1 * 0 + 2 * 1 + 4 * 2 + 1 * 2 + 2 * 2
  for layout, name, step, checksum, data in restored:
    assert step == int(name.split("_")[1]) and checksum == pytest.approx(saved[name], rel=1e-12)
    same_processes = layout.split("x")[0] == name[5]
    assert (data != "None") == same_processes, (layout, name, data)


class _Args:
  def __init__(self, distributed=False, **values):
    self.distributed = distributed
    for name in ("coordinator_address", "num_processes", "process_id"):
      setattr(self, name, values.get(name))


def test_the_job_comes_from_flags_or_the_environment():
  from experiments import train  # pylint: disable=g-import-not-at-top
  explicit = {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
  assert train.cluster(_Args(**explicit), {}) == explicit
  environment = {"JAX_COORDINATOR_ADDRESS": "host:99", "JAX_NUM_PROCESSES": "4",
                 "JAX_PROCESS_ID": "3"}
  assert train.cluster(_Args(), environment) == {"coordinator_address": "host:99",
                                                 "num_processes": 4, "process_id": 3}
  # A flag wins over its variable; --distributed alone leaves the cluster to JAX.
  assert train.cluster(_Args(process_id=0), environment)["process_id"] == 0
  assert train.cluster(_Args(distributed=True), {}) == {}
  assert train.cluster(_Args(), {}) is None


@pytest.mark.parametrize("values, environment, message", [
    ({"coordinator_address": "h:1"}, {}, "a multi-process job needs --num_processes (or "
     "JAX_NUM_PROCESSES), --process_id (or JAX_PROCESS_ID) as well"),
    ({"coordinator_address": "host", "num_processes": 2, "process_id": 0}, {},
     "--coordinator_address='host': not host:port"),
    ({"num_processes": 2, "process_id": 2}, {"JAX_COORDINATOR_ADDRESS": "h:1"},
     "--process_id=2: must be in [0, 1]"),
    ({"process_id": 0}, {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two"},
     "JAX_NUM_PROCESSES='two': not an integer (--num_processes)"),
    ({"coordinator_address": "h:1", "num_processes": 0, "process_id": 0}, {},
     "--num_processes=0: must be at least 1"),
])
def test_a_malformed_job_is_one_line(values, environment, message):
  from experiments import train  # pylint: disable=g-import-not-at-top
  from d3ke_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError) as error:
    train.cluster(_Args(**values), environment)
  assert str(error.value) == message
