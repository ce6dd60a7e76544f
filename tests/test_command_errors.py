"""Bad arguments to ``experiments.build_data`` and ``experiments.bench``: one line on stderr
naming the argument and the problem, exit status 2, before any work starts."""

import os
import subprocess
import sys

import pytest

from d3ke_jax import cli
from experiments import bench, build_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _error(main, argv, capsys):
  """The one stderr line of ``cli.run(main, argv)``, which must exit with status 2."""
  with pytest.raises(SystemExit) as exit_:
    cli.run(main, argv, prog="cmd")
  err = capsys.readouterr().err
  assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("cmd: "), err
  return err[len("cmd: "):].strip()


def test_build_data_with_a_file_as_data_dir_is_one_line_exit_2(tmp_path):
  """As users run it: a fresh process, nothing built, nothing written."""
  (tmp_path / "file").write_text("")
  result = subprocess.run([sys.executable, "-m", "experiments.build_data", "synthetic",
                           "--config", "micro", "--data_dir", str(tmp_path / "file")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr == f"experiments.build_data: {tmp_path / 'file'}: not a directory " \
                          "(--data_dir)\n"
  assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.parametrize("argv, message", [
    (["synthtic"], "argument dataset: invalid choice: 'synthtic' (choose from 'movi', "
     "'synthetic')"),
    (["synthetic", "--config", "tinny"],
     "--config tinny: no such synthetic config (did you mean 'tiny'?)"),
    (["synthetic", "--data_dir", "{tmp}/file/tfds"],
     "{tmp}/file/tfds: not a directory ({tmp}/file is a file) (--data_dir)"),
    (["synthetic", "--preview", "{tmp}"], "{tmp}: a directory, not a PNG file name (--preview)"),
    (["movi", "--workers", "0"], "argument --workers: '0' is not an integer >= 1"),
])
def test_build_data_bad_arguments(tmp_path, capsys, argv, message):
  (tmp_path / "file").write_text("")
  argv = [a.format(tmp=tmp_path) for a in argv]
  assert _error(build_data.main, argv, capsys) == message.format(tmp=tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_build_data_unwritable_data_dir(tmp_path, capsys):
  (tmp_path / "locked").mkdir(mode=0o555)
  message = _error(build_data.main, ["synthetic", "--data_dir", str(tmp_path / "locked/d")],
                   capsys)
  assert message == f"{tmp_path}/locked/d: no permission to write in {tmp_path}/locked " \
                    "(--data_dir)"


@pytest.mark.parametrize("argv, message", [
    (["fk", "--batches", "0"], "argument --batches: '0' is not an integer > 0"),
    (["fk", "--batches", "16", "-3"], "argument --batches: '-3' is not an integer > 0"),
    (["fk", "--repeats", "-1"], "argument --repeats: '-1' is not an integer > 0"),
    (["fk", "--models", "no/such.osim"], "no/such.osim: no such OpenSim model file"),
    (["ik", "--long", "1.5"], "argument --long: '1.5' is not an integer > 0"),
    (["ik", "--trials", "walk"], "argument --trials: invalid choice: 'walk' (choose from "
     "'exact', 'gait', 'ranges_120hz', 'ranges_25hz', 'turning', 'wide')"),
    (["ik", "--model", "no/such.osim"], "no/such.osim: no such OpenSim model file"),
    (["sideways"], "argument benchmark: invalid choice: 'sideways' (choose from 'fk', 'ik', "
     "'resnext', 'truth', 'infer', 'steer', 'boxes', 'train')"),
    (["boxes", "--frames", "0"], "argument --frames: '0' is not an integer > 0"),
    (["truth", "--frames", "0"], "argument --frames: '0' is not an integer > 0"),
    (["truth", "--model", "no/such.osim"], "no/such.osim: no such OpenSim model file"),
    (["boxes", "--clips", "run"], "argument --clips: invalid choice: 'run' (choose from "
     "'walk', 'second', 'slow', 'stop', 'stop_second', 'legs', 'front')"),
    (["boxes", "--workdir", "no/such/run"], "no/such/run: no such directory; is it the "
     "workdir of a training run?"),
    (["steer", "--workdir", "no/such/run"], "no/such/run: no such directory; is it the "
     "workdir of a training run?"),
    (["steer", "--workdir", "run", "--jitter", "-0.1"],
     "argument --jitter: '-0.1' is not a number >= 0"),
])
def test_bench_bad_arguments(capsys, argv, message):
  assert _error(bench.main, argv, capsys) == message
