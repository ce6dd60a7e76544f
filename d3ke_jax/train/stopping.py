"""Stopping training on a signal: every process saves a checkpoint at the same step, then
the run ends with a line saying how to resume.

SIGTERM is what SLURM, Kubernetes and TPU maintenance send before they stop a job; Ctrl-C
is SIGINT. In one process, a handler notes either. In a job of several, JAX's preemption
service (which catches SIGTERM from ``jax.distributed.initialize`` on) tells every process
and agrees on a step they all reach; Ctrl-C is turned into that notice (SIGTERM to this
process), so an interrupt reaching one process stops all of them at the same step. A
second Ctrl-C stops this process at once.
"""

import os
import signal
import sys

import jax
from jax.experimental import multihost_utils

INTERRUPTED, TERMINATED = 130, 143  # exit statuses: 128 + the signal's number


class StopRequests:
  """Notes stop requests while training (a context manager); ``reached(step)``, called by
  every process after every step, says when to save and stop; ``status`` is the exit
  status then."""

  def __init__(self):
    self.received = None  # the signal this process got
    self._previous = {}
    self._distributed = jax.process_count() > 1

  def __enter__(self):
    self._install(signal.SIGINT, self._interrupt)
    if not self._distributed:  # several processes: JAX's preemption service owns SIGTERM
      self._install(signal.SIGTERM, self._terminate)
    return self

  def __exit__(self, *exc):
    for number, handler in self._previous.items():
      signal.signal(number, handler)

  def _install(self, number, handler):
    self._previous[number] = signal.getsignal(number)
    signal.signal(number, handler)

  def _interrupt(self, number, frame):
    del number, frame
    if self.received is not None:
      raise KeyboardInterrupt
    self.received = signal.SIGINT
    self._note("interrupted")
    if self._distributed:
      os.kill(os.getpid(), signal.SIGTERM)  # the preemption notice, to every process

  def _terminate(self, number, frame):
    del number, frame
    if self.received is None:
      self.received = signal.SIGTERM
      self._note("SIGTERM received")

  @staticmethod
  def _note(what):
    print(f"\n{what}: stopping after this step, once a checkpoint is saved (Ctrl-C again "
          "stops now)", file=sys.stderr, flush=True)

  def reached(self, step):
    """Whether to save and stop after ``step``."""
    if self._distributed:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.received is not None

  @property
  def status(self):
    return INTERRUPTED if self.received == signal.SIGINT else TERMINATED

  def reason(self):
    if self.received == signal.SIGINT:
      return "interrupted"
    if self.received == signal.SIGTERM:
      return "stopped by SIGTERM"
    return "stopped by a preemption notice (SIGTERM or an interrupt to a process of the job)"
