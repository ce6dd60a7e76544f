"""``config.model_path``: the skeletal model of a run, checked against the dataset's labels."""

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import reference_file
from d3ke_jax.nets import from_config, heads
from d3ke_jax.runs import ConfigError
from d3ke_jax.skeleton import default_model_path
from d3ke_jax.train import trainer
from experiments.configs import synthetic_tiny


def _config(tmp_path, model_path):
  config = synthetic_tiny.get_config()
  config.dataset.config = "micro"
  config.dataset.data_dir = str(tmp_path / "tfds")
  config.model_path = str(model_path)
  return config


def test_a_model_file_gives_the_packaged_layout(tmp_path):
  packaged = from_config.load_model(_config(tmp_path, ""))
  config = _config(tmp_path, default_model_path())
  model = from_config.load_model(config)
  assert model.source == default_model_path()
  layout = from_config.layout_for(config, model)
  assert layout == from_config.layout_for(config, packaged)
  assert heads.bounds_for(model, layout) == heads.bounds_for(packaged, layout)


def _renamed_marker(tmp_path):
  tree = ET.parse(default_model_path())
  marker = tree.getroot().find(".//MarkerSet/objects/Marker")
  old = marker.get("name")
  marker.set("name", old + "_moved")
  path = tmp_path / "renamed.osim"
  tree.write(path)
  return path, old


def test_mismatched_models_are_refused_naming_the_key(tmp_path):
  path, old = _renamed_marker(tmp_path)
  with pytest.raises(ConfigError, match=rf"model_path='.*renamed.osim': its markers do not "
                     rf"match the labels of dataset 'synthetic' .*'{old}_moved' vs '{old}'"):
    from_config.load_model(_config(tmp_path, path))
  with pytest.raises(ConfigError, match=r"model_path='.*': its coordinates do not match"):
    from_config.load_model(_config(tmp_path, reference_file("models", "full_body_wo_hands.osim")))
  with pytest.raises(ConfigError, match=r"model_path='missing.osim': missing.osim: no such"):
    from_config.load_model(_config(tmp_path, "missing.osim"))
  # At start-up: before the dataset is built.
  with pytest.raises(ConfigError, match="its markers do not match"):
    trainer.train_and_evaluate(_config(tmp_path, path), str(tmp_path / "run"))
  assert not (tmp_path / "tfds").exists()


def test_command_line_refuses_a_mismatched_model(tmp_path):
  path, _ = _renamed_marker(tmp_path)
  result = subprocess.run([sys.executable, "-m", "experiments.train", "--config",
                           synthetic_tiny.__file__, "--workdir", str(tmp_path / "run"),
                           f"--config.model_path={path}",
                           f"--config.dataset.data_dir={tmp_path / 'tfds'}"],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode != 0
  assert "model_path=" in result.stderr and "markers do not match" in result.stderr
  assert "Traceback" not in result.stderr
