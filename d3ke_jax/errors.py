"""Errors a user can fix: the commands print them on one line and exit with status 2."""

import difflib


class UserError(Exception):
  """Bad input from the user (a file, a config key, an argument); the message names it and
  says what is wrong, in one line."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C, once the work done so far is safe; the message says how to carry on."""


def did_you_mean(name, choices):
  """' (did you mean X?)' for the choice closest to ``name``, else ' (choose from ...)'."""
  close = difflib.get_close_matches(str(name), list(map(str, choices)), n=1, cutoff=0.5)
  if close:
    return f" (did you mean {close[0]!r}?)"
  return f" (choose from {', '.join(sorted(map(str, choices)))})"


class Stopped(Exception):
  """A run stopped on a signal once its work was saved: the message says how to carry on,
  ``status`` is the command's exit status (130 for Ctrl-C, 143 for SIGTERM)."""

  def __init__(self, message, status):
    super().__init__(message)
    self.status = status
