"""``python -m experiments.bench train``: its table (rates and ratios of timed calls; a real
run on a tiny config: ~30 s on an idle 2-core CPU, compiling two train steps and the
renderer, starting worker processes), and bad arguments as one line with exit status 2."""

import itertools

import pytest

from d3ke_jax import cli
from experiments import bench, bench_train

TINY = """from experiments.configs import synthetic_tiny

def get_config():
  config = synthetic_tiny.get_config()
  config.dataset.config = "micro"
  config.model.head_hidden = 16
  config.batch_size = 4
  return config
"""
COLUMNS = ["config", "crop", "batch", "D3KE step", "without layer + loss", "layer overhead",
           "host pipeline: 1 core / 2 threads / 2 processes", "pipeline / step",
           "first call (s): step / without"]


def _run(argv, capsys):
  """(exit status, stdout, stderr) of the command run as users run it."""
  with pytest.raises(SystemExit) as exit_:
    cli.run(bench.main, ["train"] + argv, prog="cmd")
  out = capsys.readouterr()
  return exit_.value.code, out.out, out.err


def _table(out):
  """The rows of the printed table (header first) as lists of cells."""
  rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
          if line.startswith("|")]
  assert rows[0] == COLUMNS and set("".join(rows[1])) == {"-"}
  return [rows[0]] + rows[2:]


class _Clock:
  """``time.perf_counter`` advanced by the calls, each taking known seconds: its first call
  ``first``, every later one ``later``."""

  def __init__(self):
    self.now = 0.0

  def perf_counter(self):
    return self.now

  def call(self, first, later):
    durations = itertools.chain([first], itertools.repeat(later))

    def run():
      self.now += next(durations)
    return run


def test_the_table_shows_the_rates_and_ratios_of_the_calls(tmp_path, capsys, monkeypatch):
  """Interleaved calls of known durations (a fake clock) give known rates and ratios."""
  monkeypatch.setattr(bench_train.loader, "usable_cpus", lambda: 2)  # named in the columns
  clock = _Clock()
  monkeypatch.setattr(bench_train, "time", clock)
  seconds = [(12.0, 0.5), (7.0, 0.4)]  # step, without
  monkeypatch.setattr(bench_train, "train_calls",
                      lambda config, size: [clock.call(*pair) for pair in seconds])
  # A batch from the pipeline on 1 thread, on 2 threads, on 2 processes.
  pipelines = {(1, False): 0.1, (2, False): 0.05, (2, True): 0.04}
  monkeypatch.setattr(bench_train, "pipeline_seconds",
                      lambda config, size, workers, processes, repeats: pipelines[
                          workers, processes])
  path, processes = tmp_path / "tiny.py", tmp_path / "tiny_processes.py"
  path.write_text(TINY)
  processes.write_text(TINY.replace("return config", "config.input_processes = True\n"
                                                     "  return config"))
  code, out, err = _run(["--config", str(path), str(processes), "synthetic_tiny", "--steps",
                         "2"], capsys)
  assert code == 0, err
  rows = _table(out)
  assert "median of 2 runs" in out and "CPU" in out
  # batch 4 in 0.5 s, 0.4 s, 0.1 s, 0.05 s, 0.04 s; the micro dataset's crop; the tiny
  # config's batch. Pipeline / step: with the workers the config trains with.
  assert rows[1] == [str(path), "32", "4", "8.00", "10.0", "25%", "40.0 / 80.0 / 100",
                     "10.0x", "12 / 7"]
  assert rows[2][6:8] == ["40.0 / 80.0 / 100", "12.5x"]
  assert rows[3][:4] == ["synthetic_tiny", "64", "32", "64.0"]
  assert len(rows) == 4


@pytest.mark.slow  # about 25 s on 2 cores: the whole benchmark command
def test_the_command_measures_a_tiny_config(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(bench_train.loader, "usable_cpus", lambda: 2)
  path = tmp_path / "tiny.py"
  path.write_text(TINY)
  code, out, err = _run(["--config", str(path), "--steps", "1", "--batch_size", "2"], capsys)
  assert code == 0, err
  (_, row) = _table(out)
  assert row[:3] == [str(path), "32", "2 (config: 4)"]
  number = lambda text: float(text.replace(",", ""))
  step, plain = number(row[3]), number(row[4])
  one, parallel, processes = map(number, row[6].split(" / "))
  assert min(step, plain, one, parallel, processes) > 0
  # The ratios are those of the rates shown (rounded there).
  assert float(row[5].rstrip("%")) == pytest.approx(100 * (plain / step - 1), abs=1.5)
  assert float(row[7].rstrip("x")) == pytest.approx(parallel / step, rel=0.05, abs=0.05)


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "argument --steps: '0' is not an integer > 0"),
    (["--batch_size", "x"], "argument --batch_size: 'x' is not an integer > 0"),
    (["--config", "synthetc"], "synthetc: no such config (a .py file or one of cms, cms_tiny, "),
    (["--config", "cms_tiny"], "cms_tiny: stage='cms'; this benchmark measures per-frame "
     "configs"),
    (["--config", bench.__file__], f"{bench.__file__}: not a config file (no get_config())"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
  code, out, err = _run(argv, capsys)
  assert code == 2 and out == "" and err.count("\n") == 1, (code, out, err)
  assert err.startswith("cmd: " + message), err


def test_a_broken_config_file_is_one_line_and_exit_2(tmp_path, capsys):
  path = tmp_path / "broken.py"
  path.write_text("def get_config(:\n")
  code, out, err = _run(["--config", str(path)], capsys)
  assert (code, out) == (2, ""), (code, out, err)
  assert err == f"cmd: {path}: not a usable config file (line 1: SyntaxError: invalid syntax)\n", err
