"""A run's orbax checkpoints: ``checkpoints/`` (the two latest) and ``best/`` (the lowest
validation metric), written by training and restored by every use of the run.

Each holds the train state as global arrays, which restore into any layout of processes and
devices (they are replicated on every device), and, from training, each process's
data-iterator state (grain's checkpoint handler: one JSON file per process). Runs saved
before the data item hold the state alone, as the item ``default``.
"""

import json
import os
import pathlib
import sys
from typing import Any, NamedTuple

import grain
import jax
import orbax.checkpoint as ocp

from d3ke_jax import devices
from d3ke_jax.errors import UserError

STATE, DATA, LEGACY = "state", "data", "default"


class Trained(NamedTuple):
  """A checkpoint's trained variables (its train state without the optimizer's)."""
  step: Any
  params: Any
  batch_stats: Any

  @property
  def variables(self):
    """The Flax variables to apply the network with."""
    return {"params": self.params, "batch_stats": self.batch_stats}


class IteratorState:
  """A data iterator's state (a JSON-able dict) as grain's checkpoint handler saves and
  restores iterators."""

  def __init__(self, state=None):
    self.state = state

  def get_state(self):
    return json.dumps(self.state).encode()

  def set_state(self, state):
    self.state = json.loads(state)

  def start_prefetch(self):
    pass


def managers(workdir, train=False):
  """(latest, best): orbax managers of the periodic checkpoints and of the one with the
  lowest validation metric (MAE_angle; MPBLPE for the multi-step baseline). For training
  (``train``) they create their directories and remove the temporary directories of saves
  cut short (never a committed checkpoint)."""
  root = os.path.abspath(workdir)
  options = dict(create=train, cleanup_tmp_directories=train)
  latest = ocp.CheckpointManager(os.path.join(root, "checkpoints"), item_names=(STATE, DATA),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=2, **options))
  # A best checkpoint's metrics hold one value: its stage's ``selection`` (lower is better).
  best = ocp.CheckpointManager(os.path.join(root, "best"), item_names=(STATE, DATA),
                               options=ocp.CheckpointManagerOptions(
                                   max_to_keep=1, best_mode="min",
                                   best_fn=lambda m: next(iter(m.values())), **options))
  return latest, best


def has_checkpoint(workdir):
  """Whether ``workdir`` holds a periodic checkpoint (readable or not): a run to resume."""
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def save(manager, step, state, data=None, metrics=None):
  """Saves ``state`` (global arrays) and this process's data-iterator state ``data`` (a
  JSON-able dict, if given) as checkpoint ``step`` (every process calls it)."""
  items = {STATE: ocp.args.StandardSave(state)}
  if data is not None:
    items[DATA] = grain.checkpoint.CheckpointSave(IteratorState(data))
  manager.save(step, args=ocp.args.Composite(**items), metrics=metrics)


def _legacy(manager, step):
  """Whether checkpoint ``step`` is from before the data item (the state alone)."""
  return os.path.isdir(_item_path(manager, step, LEGACY))


def _item_path(manager, step, name):
  return os.path.join(manager.directory, str(step), name)


def _restore(manager, step, abstract):
  if _legacy(manager, step):
    return ocp.StandardCheckpointer().restore(_item_path(manager, step, LEGACY), abstract)
  return manager.restore(step, args=ocp.args.Composite(
      **{STATE: ocp.args.StandardRestore(abstract)}))[STATE]


def restore_newest(manager, abstract, set_aside=False):
  """(step, state) of the newest readable checkpoint of ``manager`` restored into
  ``abstract`` (shapes, dtypes and shardings, or a function of the step giving them;
  (None, None): it has none). Unreadable ones (a
  truncated or damaged file) are skipped with one line on stderr; with ``set_aside`` they
  are renamed ``STEP.unreadable`` (kept, not deleted) so that training can save that step
  again. No readable checkpoint is a ``UserError``."""
  steps = sorted(manager.all_steps(), reverse=True)
  unreadable = []
  for step in steps:
    try:
      restored = _restore(manager, step, abstract(step) if callable(abstract) else abstract)
    except Exception as e:  # pylint: disable=broad-except  # any damage, any error type
      unreadable.append((step, e))
      continue
    if unreadable:
      aside = ""
      if set_aside:
        for bad, _ in unreadable:
          _set_aside(os.path.join(manager.directory, str(bad)))
        manager.reload()
        aside = "; set aside as *.unreadable"
      print(f"{manager.directory}: checkpoint step(s) {', '.join(str(s) for s, _ in unreadable)}"
            f" unreadable ({_summary(unreadable[0][1])}){aside}; using step {step}",
            file=sys.stderr)
    return step, restored
  if unreadable:
    raise UserError(f"{manager.directory}: no readable checkpoint (step {unreadable[0][0]}: "
                    f"{_summary(unreadable[0][1])})")
  return None, None


def restore_data(manager, step):
  """This process's data-iterator state saved with checkpoint ``step``, or None (a run saved
  before it was kept, or by another number of processes)."""
  if _legacy(manager, step):
    return None
  holder = IteratorState()
  try:
    manager.restore(step, args=ocp.args.Composite(
        **{DATA: grain.checkpoint.CheckpointRestore(holder)}))
  except (ValueError, KeyError, FileNotFoundError):
    return None
  return holder.state


def _summary(error):
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0][:120] if lines else ''}"


def _set_aside(path):
  target, n = f"{path}.unreadable", 1
  while os.path.exists(target):
    n += 1
    target = f"{path}.unreadable{n}"
  os.rename(path, target)


def restore_state(workdir, which="best", mesh=None):
  """The ``Trained`` variables of a run, replicated on ``mesh``
  (default: every device): its ``best`` checkpoint, or the ``latest`` (also used when no
  validation has run yet)."""
  if which not in ("best", "latest"):
    raise UserError(f"checkpoint {which!r}: choose 'best' or 'latest'")
  mesh = mesh or devices.make_mesh()
  latest, best = managers(workdir)
  try:
    manager = best if which == "best" and best.all_steps() else latest
    if not manager.all_steps():
      raise UserError(f"{workdir}: no checkpoint to restore (has it trained a step?)")
    sharding = devices.replicated(mesh)

    def saved(step):  # the shapes and dtypes saved, replicated on ``mesh``
      item = _item_path(manager, step, LEGACY if _legacy(manager, step) else STATE)
      # The item's own metadata: a checkpointer would also look for a step's metadata file
      # in the item's folder, and warn that it is not there.
      tree = ocp.StandardCheckpointHandler().metadata(pathlib.Path(item)).tree
      return jax.tree.map(lambda m: jax.ShapeDtypeStruct(
          m.shape, jax.dtypes.canonicalize_dtype(m.dtype), sharding=sharding), tree)
    _, restored = restore_newest(manager, saved)
  finally:
    latest.close()
    best.close()
  return Trained(step=restored["step"], params=restored["params"],
                 batch_stats=restored.get("batch_stats", {}))
