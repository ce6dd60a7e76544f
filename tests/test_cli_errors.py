"""User errors of the commands: one line on stderr naming the problem, exit status 2."""

import pytest

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
  parser = cli.ArgumentParser(prog="toy")
  cli.add_config(parser, "config file")
  parser.add_argument("--split", choices=("train", "test"), default="test")
  args = cli.parse(parser, argv)
  print(args.config.epochs, args.config.optimizer.learning_rate, args.config.augmentation,
        tuple(args.config.model.stage_sizes), args.split)


@pytest.mark.parametrize("argv, message", [
    (["--config", TINY, "--config.epoch=3"],
     "--config.epoch: no such config key (did you mean 'epochs'?)"),
    (["--config", TINY, "--config.optimizer.lr=3"],
     "--config.optimizer.lr: no such config key (did you mean 'optimizer.learning_rate'?)"),
    (["--config", TINY, "--config.optimzer.learning_rate=3"], "(did you mean "
                                                              "'optimizer.learning_rate'?)"),
    (["--config", TINY, "--config.epochs=two"], "--config.epochs=two: not an integer"),
    (["--config", TINY, "--config.epochs=2.5"], "--config.epochs=2.5: not an integer"),
    (["--config", TINY, "--config.optimizer.learning_rate=fast"],
     "--config.optimizer.learning_rate=fast: not a number"),
    (["--config", TINY, "--config.augmentation=maybe"],
     "--config.augmentation=maybe: not true or false"),
    (["--config", TINY, "--config.model.stage_sizes=7"],
     "--config.model.stage_sizes=7: not a list, e.g. (1, 2)"),
    (["--config", TINY, "--config.model=3"], "--config.model: a group of keys; set one of "
                                             "them (e.g. --config.model.box_head=...)"),
    (["--config", TINY, "--config.epochs"], "--config.epochs: needs a value"),
    (["--config", "no/such.py"], "no/such.py: no such config file (--config)"),
    (["--config", TINY, "--split", "tset"], "argument --split: invalid choice: 'tset'"),
    (["--config", TINY, "--bogus"], "unrecognized arguments: --bogus"),
    (["--config", TINY, "extra"], "unrecognized arguments: extra"),
    ([], "the following arguments are required: --config"),
])
def test_bad_command_lines_are_one_line(argv, message, capsys):
  code, err = run(_toy, argv, capsys)
  assert code == 2 and message in err, err


@pytest.mark.parametrize("text, message", [
    ("epochs = 3\n", "not a config file (no get_config())"),
    ("def get_config(:\n", "not a usable config file (line 1: SyntaxError: invalid syntax)"),
    ("def get_config():\n  return 1 / 0\n",
     "not a usable config file (line 2: ZeroDivisionError: division by zero)"),
    ("import nothing_here\n", "not a usable config file (line 1: ModuleNotFoundError: No "
                               "module named 'nothing_here')"),
    ("def get_config():\n  return {'epochs': 3}\n",
     "get_config() returned a dict, not an ml_collections.ConfigDict"),
])
def test_a_config_file_that_fails_is_named_in_one_line(tmp_path, capsys, text, message):
  (tmp_path / "c.py").write_text(text)
  code, err = run(_toy, ["--config", str(tmp_path / "c.py")], capsys)
  assert (code, err) == (2, f"cmd: {tmp_path / 'c.py'}: {message}")


def test_good_command_line_parses_overrides(capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.run(_toy, ["--config", TINY, "--config.epochs=5", "--config.optimizer.learning_rate",
                   "2e-3", "--config.augmentation=false", "--config.model.stage_sizes=(2,1)",
                   "--split=train"], prog="cmd")
  assert exit_.value.code == 0 and capsys.readouterr().out == "5 0.002 False (2, 1) train\n"


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


def _train(argv):
  from experiments import train  # pylint: disable=g-import-not-at-top
  return train.main(argv)


@pytest.mark.parametrize("overrides, message", [
    (["--config.epoch=3"], "--config.epoch: no such config key (did you mean 'epochs'?)"),
    (["--config.log_every_steps=0"], "log_every_steps=0: must be an integer >= 1"),
    (["--config.checkpoint_every_steps=0"], "checkpoint_every_steps=0: must be an integer >= 1"),
    (["--config.max_steps=0"], "max_steps=0: must be -1 (every epoch) or an integer >= 1"),
    (["--config.optimizer.learning_rate=-1e-3"], "optimizer.learning_rate=-0.001: must be a "
                                                 "number > 0"),
    (["--config.optimizer.weight_decay=nan"], "optimizer.weight_decay=nan: must be a number >= 0"),
    (["--config.seed=-1"], "seed=-1: must be an integer >= 0"),
    (["--config.input_workers=-1"], "input_workers=-1: must be an integer >= 0"),
    (["--config.input_processes=maybe"], "--config.input_processes=maybe: not true or false"),
    (["--config.loss.lambda_joint=0", "--config.loss.lambda_marker=0",
      "--config.loss.lambda_body=0", "--config.loss.lambda_angle=0"],
     "loss: every weight is 0, nothing to train"),
])
def test_train_refuses_bad_values_at_start_up(tmp_path, overrides, message, capsys):
  code, err = run(_train, ["--config", TINY, "--workdir", str(tmp_path / "w")] + overrides,
                  capsys)
  assert (code, err) == (2, f"cmd: {message}")
  assert not (tmp_path / "w").exists()  # nothing written


def test_train_refuses_a_bad_sequence_window_and_workdir(tmp_path, capsys):
  from experiments.configs import transformer  # pylint: disable=g-import-not-at-top
  code, err = run(_train, ["--config", transformer.__file__, "--workdir", str(tmp_path),
                           "--config.per_frame_workdir=x", "--config.window=0"], capsys)
  assert (code, err) == (2, "cmd: window=0: must be an integer >= 1")
  (tmp_path / "file").write_text("")
  code, err = run(_train, ["--config", TINY, "--workdir", str(tmp_path / "file")], capsys)
  assert (code, err) == (2, f"cmd: {tmp_path / 'file'}: not a directory (the workdir must be "
                            f"one)")
  code, err = run(_train, ["--config", "nothere.py", "--workdir", str(tmp_path)], capsys)
  assert (code, err) == (2, "cmd: nothere.py: no such config file (--config)")


def _evaluate(argv):
  from experiments import evaluate  # pylint: disable=g-import-not-at-top
  return evaluate.main(argv)


def test_evaluate_names_a_bad_workdir_or_flag(tmp_path, capsys):
  (tmp_path / "file").write_text("")
  for argv, message in (
      ([str(tmp_path / "none")], f"{tmp_path / 'none'}: no such directory; is it the workdir "
                                 "of a training run?"),
      ([str(tmp_path / "file")], f"{tmp_path / 'file'}: not a directory; is it the workdir of "
                                 "a training run?"),
      ([str(tmp_path)], f"{tmp_path / 'config.json'}: not found; is {str(tmp_path)!r} the "
                        "workdir of a training run?"),
      ([str(tmp_path), "--split=tset"], "argument --split: invalid choice: 'tset' (choose "
                                        "from 'train', 'validation', 'test')"),
      ([str(tmp_path), "--checkpoint=last"], "argument --checkpoint: invalid choice: 'last' "
                                             "(choose from 'best', 'latest')"),
      ([str(tmp_path), "--clip=first"], "argument --clip: invalid int value: 'first'"),
      ([str(tmp_path), "--out", str(tmp_path / "file")], f"{tmp_path / 'file'}: not a "
                                                         "directory (--out)")):
    assert run(_evaluate, ["--workdir"] + argv, capsys) == (2, f"cmd: {message}")
  (tmp_path / "config.json").write_text("{")
  code, err = run(_evaluate, ["--workdir", str(tmp_path)], capsys)
  assert code == 2 and err.startswith(f"cmd: {tmp_path / 'config.json'}: not a JSON config")


def _ablate(argv):
  from experiments import ablate  # pylint: disable=g-import-not-at-top
  return ablate.main(argv)


def test_ablate_names_a_bad_variant_sweep_or_workdir(tmp_path, capsys):
  (tmp_path / "file").write_text("")
  for argv, message in (
      (["--variants", "no_angels"], "variants ['no_angels']: unknown"),
      (["--sweep", "lambda"], "argument --sweep: invalid choice: 'lambda'"),
      (["--split", "train"], "argument --split: invalid choice: 'train'"),
      (["--config.loss.lambda_joint=-1"], "loss.lambda_joint=-1.0: must be a number >= 0")):
    code, err = run(_ablate, ["--config", TINY, "--workdir", str(tmp_path / "w")] + argv, capsys)
    assert code == 2 and err.startswith(f"cmd: {message}"), err
  code, err = run(_ablate, ["--config", TINY, "--workdir", str(tmp_path / "file")], capsys)
  assert (code, err) == (2, f"cmd: {tmp_path / 'file'}: not a directory (--workdir)")
