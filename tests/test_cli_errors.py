"""User errors of the commands: one line on stderr naming the problem, exit status 2."""

import pytest
from absl import flags

from d3ke_jax import cli
from d3ke_jax.errors import Interrupted, UserError
from experiments.configs import synthetic_tiny

TINY = synthetic_tiny.__file__


def run(main, argv, capsys):
  """(exit status, stderr) of ``cli.run(main, argv)``; stderr must be one line."""
  with pytest.raises(SystemExit) as exit_:
    cli.run(main, argv, prog="cmd")
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("cmd: "), err
  return exit_.value.code, err.strip()


def _toy(argv):
  define = lambda values: flags.DEFINE_enum("split", "test", ["train", "test"], "split",
                                            flag_values=values)
  values = cli.parse_flags(argv, define, "toy", config_help="config file")
  print(values.config.epochs, values.config.optimizer.learning_rate, values.split)


@pytest.mark.parametrize("argv, message", [
    (["--config", TINY, "--config.epoch=3"],
     "--config.epoch: no such config key (did you mean 'epochs'?)"),
    (["--config", TINY, "--config.optimizer.lr=3"],
     "--config.optimizer.lr: no such config key (did you mean 'optimizer.learning_rate'?)"),
    (["--config", TINY, "--config.optimzer.learning_rate=3"], "(did you mean "
                                                              "'optimizer.learning_rate'?)"),
    (["--config", TINY, "--config.epochs=two"], "--config.epochs=two: invalid literal"),
    (["--config", "no/such.py"], "no/such.py: no such config file (--config)"),
    (["--config", TINY, "--split", "tset"], "--split=tset: value should be one of"),
    (["--config", TINY, "--bogus"], "Unknown command line flag 'bogus'"),
    (["--config", TINY, "extra"], "unexpected argument 'extra'"),
    ([], "--config must have a value"),
])
def test_bad_command_lines_are_one_line(argv, message, capsys):
  code, err = run(_toy, argv, capsys)
  assert code == 2 and message in err, err


def test_a_python_file_without_get_config_is_named(tmp_path, capsys):
  (tmp_path / "c.py").write_text("epochs = 3\n")
  code, err = run(_toy, ["--config", str(tmp_path / "c.py")], capsys)
  assert code == 2 and f"{tmp_path / 'c.py'}: not a usable config file" in err, err


def test_good_command_line_parses_overrides(capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.run(_toy, ["--config", TINY, "--config.epochs=5", "--split=train"], prog="cmd")
  assert exit_.value.code == 0 and capsys.readouterr().out == "5 0.001 train\n"


def _raise(error):
  def main(argv):
    del argv
    raise error
  return main


@pytest.mark.parametrize("error, status, message", [
    (UserError("a.trc: line 7 has no time value"), 2, "cmd: a.trc: line 7 has no time value"),
    (FileNotFoundError(2, "No such file or directory", "x.mot"), 2,
     "cmd: x.mot: No such file or directory"),
    (Interrupted("interrupted at step 5; run the same command to resume"), 130,
     "cmd: interrupted at step 5; run the same command to resume"),
    (KeyboardInterrupt(), 130, "cmd: interrupted"),
])
def test_user_errors_and_interrupts_exit_with_one_line(error, status, message, capsys):
  assert run(_raise(error), [], capsys) == (status, message)


def test_bugs_keep_their_traceback():
  with pytest.raises(ZeroDivisionError):
    cli.run(_raise(ZeroDivisionError()), [], prog="cmd")
