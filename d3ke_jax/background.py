"""Running an iterator ahead of its consumer, on a background thread."""

import queue
import threading


def ahead(iterator, size=2):
  """The items of ``iterator``, produced by a background thread ``size`` items ahead. An
  exception it raises is raised here, in the consumer, after the items before it; closing
  this generator early stops the thread, which then closes ``iterator``."""
  items, stop = queue.Queue(maxsize=size), threading.Event()

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
    finally:
      if hasattr(iterator, "close"):
        iterator.close()

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
