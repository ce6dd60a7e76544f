"""Bad input to ``experiments.infer`` (boxes files, ``--boxes`` folders, run configs): one
line on stderr naming the file (and its line, entry or key) and the problem, exit status 2,
nothing written. All of it is refused before a network is loaded; the run here is a config
without a checkpoint, so input that passes ends at "no checkpoint to restore"."""

import json
import os

import numpy as np
import pytest

from d3ke_jax import cli, runs
from d3ke_jax.io.video import write_video
from experiments import infer
from experiments.configs import synthetic_tiny

H = "frame,x0,y0,x1,y1\n"
FORM = '{"frame": i, "box": [x0, y0, x1, y1]}'
BAD_BOXES = [  # (file name, content, the message after "<file>: ")
    ("outside.csv", H + "0,70,10,90,40\n",
     "line 2: the box of frame 0 (70, 10, 90, 40) lies outside the 64x48 video"),
    ("above.csv", H + "0,10,10,30,40\n1,10,-40,30,-1\n",
     "line 3: the box of frame 1 (10, -40, 30, -1) lies outside the 64x48 video"),
    ("subpixel.csv", H + "0,10.2,10.2,10.7,10.9\n", "line 2: the box of frame 0 is 0.5 x 0.7 "
     "px, under 4 px (corners are pixels of the 64x48 video, not fractions of it)"),
    ("fractions.csv", H + "0,0.25,0.1,0.5,0.9\n", "line 2: the box of frame 0 is 0.25 x 0.8 "
     "px, under 4 px (corners are pixels of the 64x48 video, not fractions of it)"),
    ("huge.csv", H + "0,0,0,1e15,1e15\n",
     "line 2: the box of frame 0 is 1e+15 x 1e+15 px, more than 2 times the 64x48 video"),
    ("twice.csv", H + "0,10,10,30,40\n1,10,10,30,40\n0,12,10,32,40\n",
     "line 4: a second box for frame 0 (the first is on line 2)"),
    ("negative.csv", H + "-1,10,10,30,40\n0,10,10,30,40\n",
     "line 2: frame -1 is not a frame number (an integer from 0)"),
    ("overflow.csv", H + "1e400,10,10,30,40\n",
     "line 2: frame 1e400 is not a frame number (an integer from 0)"),
    ("letters.csv", H + "1,10,20,abc,60\n", "line 2 is not frame,x0,y0,x1,y1 numbers"),
    ("short.csv", H + "1,10,20,30\n", "line 2 is not frame,x0,y0,x1,y1 numbers"),
    ("headless.csv", "0,10,10,30,40\n", "the first row must be the header frame,x0,y0,x1,y1"),
    # An earlier run's frames.csv, edited: its other columns are ignored, its boxes checked.
    ("frames.csv", H.strip() + ",time,person_found,box_source,steered,warning\n"
     "0,10,10,30,40,0.000000,1,background,0,\"warning: a, b\"\n"
     "1,30,10,20,40,0.033333,0,held,1,\"warning: a, b\"\n",
     "line 3: the box of frame 1 is not x0 < x1, y0 < y1 (30, 10, 20, 40)"),
    ("binary.csv", bytes(range(256)), "not a text .csv file (it holds binary data)"),
    ("string.json", '[{"frame": 0, "box": "1234"}]',
     'entry 1: the box is not 4 numbers [x0, y0, x1, y1] ("1234")'),
    ("booleans.json", '[{"frame": 0, "box": [true, 10, 30, 40]}]',
     "entry 1: the box is not 4 numbers [x0, y0, x1, y1] ([true, 10, 30, 40])"),
    ("boolean_frame.json", '[{"frame": true, "box": [10, 10, 30, 40]}]',
     "entry 1: frame true is not a frame number (an integer from 0)"),
    ("fraction_frame.json", '[{"frame": 0.5, "box": [10, 10, 30, 40]}]',
     "entry 1: frame 0.5 is not a frame number (an integer from 0)"),
    ("overflow.json", '[{"frame": 1e400, "box": [10, 10, 30, 40]}]',
     "entry 1: frame Infinity is not a frame number (an integer from 0)"),
    ("twice.json", '[{"frame": 3, "box": [10, 10, 30, 40]}, {"frame": 3, "box": [9, 9, 30, 40]}]',
     "entry 2: a second box for frame 3 (the first is on entry 1)"),
    ("entry.json", '[[0, 10, 10, 30, 40]]', f"entry 1 is not {FORM} ([0, 10, 10, 30, 40])"),
    ("object.json", '{"frame": 0, "box": [10, 10, 30, 40]}',
     f'not a JSON list of {FORM} ({{"frame": 0, "box": [10, 10, 30, 40]}})'),
    ("empty.json", "[]", "no boxes in the file"),
    ("nested.json", "[" * 100000 + "]" * 100000, f"not a JSON list of {FORM} (nested too deeply)"),
    ("binary.json", bytes(range(256)), "not a text .json file (it holds binary data)"),
]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
  """A 64x48 video of 6 frames: walk.mp4."""
  folder = tmp_path_factory.mktemp("video")
  return write_video(str(folder / "walk.mp4"), np.full((6, 48, 64, 3), 90, np.uint8), 30)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A run's config and nothing else."""
  folder = str(tmp_path_factory.mktemp("run"))
  runs.save_config(folder, synthetic_tiny.get_config())
  return folder


def _infer(capsys, *argv):
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_:
    cli.run(infer.main, list(argv), prog="infer")
  return exit_.value.code, capsys.readouterr().err


def _write(path, content):
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    path.write_text(content)
  return str(path)


@pytest.mark.parametrize("name, content, message", BAD_BOXES, ids=[b[0] for b in BAD_BOXES])
def test_bad_boxes_are_one_line(video, workdir, tmp_path, capsys, name, content, message):
  boxes = _write(tmp_path / name, content)
  out = tmp_path / "out"
  code, err = _infer(capsys, "--video", video, "--workdir", workdir, "--out", str(out),
                     "--boxes", boxes)
  assert (code, err) == (2, f"infer: {boxes}: {message}\n")
  assert not out.exists()


def test_boxes_folders(video, workdir, tmp_path, capsys):
  """A folder of boxes serves a single video too; a video with both a .csv and a .json
  there, or a folder of videos given one file, is refused. An Excel CSV (a byte-order mark,
  CRLF line ends) reads."""
  folder = tmp_path / "boxes"
  _write(folder / "walk.csv", ("\ufeff" + H + "0,10,10,30,40\n").replace("\n", "\r\n"))
  passed = (2, f"infer: {workdir}: no checkpoint to restore (has it trained a step?)\n")
  assert _infer(capsys, "--video", video, "--workdir", workdir, "--boxes", str(folder)) == passed
  _write(folder / "walk.json", '[{"frame": 0, "box": [10, 10, 30, 40]}]')
  assert _infer(capsys, "--video", video, "--workdir", workdir, "--boxes", str(folder)) == (
      2, f"infer: {folder}: both walk.csv and walk.json for {video}; keep one (--boxes)\n")
  videos = os.path.dirname(video)
  assert _infer(capsys, "--video", videos, "--workdir", workdir, "--boxes",
                str(folder / "walk.csv")) == (
      2, f"infer: {folder / 'walk.csv'}: one boxes file for the folder {videos}; give a "
      "folder of <video name>.csv or .json (--boxes)\n")


@pytest.mark.parametrize("edit, message", [
    (lambda config: [config], "not a JSON config (not an object of config keys)"),
    (lambda config: dict(config, dataset=dict(config["dataset"], name="nope")),
     "dataset.name='nope': unknown dataset (available: ['movi', 'synthetic'])"),
    (lambda config: dict(config, dataset=dict(config["dataset"], config="nope")),
     "dataset.config='nope': unknown (choose from "
     f"{[c.name for c in runs.DATASETS['synthetic'].BUILDER_CONFIGS]})"),
    (lambda config: dict(config, stage="cms"),
     "stage='cms': inference needs a per_frame or sequence run"),
], ids=["list", "dataset", "variant", "stage"])
def test_bad_run_configs_are_one_line(video, workdir, tmp_path, capsys, edit, message):
  with open(os.path.join(workdir, runs.CONFIG_FILE)) as f:
    config = json.load(f)
  path = _write(tmp_path / "run" / runs.CONFIG_FILE, json.dumps(edit(config)))
  assert _infer(capsys, "--video", video, "--workdir", str(tmp_path / "run"), "--out",
                str(tmp_path / "out")) == (2, f"infer: {path}: {message}\n")
  assert not (tmp_path / "out").exists()


def test_a_video_name_opensim_cannot_write(video, workdir, tmp_path, capsys):
  """Outputs go to OUT/<video name>/, and OpenSim writes only UTF-8 paths."""
  name = os.fsdecode(b"caf\xe9")
  renamed = str(tmp_path / f"{name}.mp4")
  os.link(video, renamed)
  out = tmp_path / "out"
  assert _infer(capsys, "--video", renamed, "--workdir", workdir, "--out", str(out)) == (
      2, f"infer: {out}/caf\\xe9: not UTF-8 text, which OpenSim needs (rename the video, or "
      "choose another --out)\n")
