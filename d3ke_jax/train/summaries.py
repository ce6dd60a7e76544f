"""Training summaries: a JSON-lines metrics file and TensorBoard events in the workdir."""

import json
import os

import numpy as np
import tensorboardX

from d3ke_jax.io.atomic import atomic_write

METRICS = "metrics.jsonl"


class Writer:
  """Writes scalars to ``metrics.jsonl`` and to TensorBoard (``tensorboard/<split>``).

  A run resumed from ``step`` drops what an interrupted run wrote after it (rows of
  ``metrics.jsonl``, rewritten atomically; TensorBoard purges events past it), so the
  replayed steps are not logged twice. Only one process of a multi-host run writes
  (``enabled``); the others do nothing.
  """

  def __init__(self, workdir, enabled=True, step=0):
    self.workdir, self.enabled, self.step, self._boards = workdir, enabled, step, {}
    self.path = os.path.join(workdir, METRICS)
    if enabled and os.path.exists(self.path):
      with open(self.path) as f:
        rows = [row for row in map(_row, f) if row is not None and row["step"] <= step]
      with atomic_write(self.path) as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)

  def _board(self, split):
    if split not in self._boards:
      self._boards[split] = tensorboardX.SummaryWriter(
          os.path.join(self.workdir, "tensorboard", split), purge_step=self.step + 1)
    return self._boards[split]

  def scalars(self, step, split, values):
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, "split": split, **values}) + "\n")
    for name, value in values.items():
      self._board(split).add_scalar(name, value, step)

  def images(self, step, split, name, images):
    """``images`` (N, H, W, 3) uint8, shown side by side."""
    if self.enabled and len(images):
      self._board(split).add_image(name, np.concatenate(list(images), axis=1), step,
                                   dataformats="HWC")

  def close(self):
    for board in self._boards.values():
      board.close()


def _row(line):
  """A ``metrics.jsonl`` row, or None for a line a killed run left unfinished."""
  try:
    return json.loads(line)
  except ValueError:
    return None
