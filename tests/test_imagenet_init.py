"""ImageNet initialisation: a torchvision-layout state dict (fabricated: right keys and
shapes, random values, no download) starts the backbone; the input normalisation."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax import checkpoints, runs
from d3ke_jax.errors import UserError
from d3ke_jax.nets import heads
from d3ke_jax.nets.d3ke import INPUT_NORMALISATIONS, PerFrameD3KE
from d3ke_jax.skeleton import load_osim, make_layout
from d3ke_jax.train import pretrained, trainer
from experiments.configs import synthetic_tiny

# synthetic_tiny's backbone: one block per stage, 4 groups of 4 channels at the first stage.
STAGES, GROUPS, WIDTH = (1, 1, 1, 1), 4, 4


def torchvision_state_dict(rng):
  """{key: array} named and shaped as torchvision's ResNeXt of synthetic_tiny's sizes
  (torchvision.models.resnet.Bottleneck: width = planes * width_per_group / 64 * groups),
  with the classifier of 1000 classes and BatchNorm's step counters."""
  shapes = {"conv1.weight": (64, 3, 7, 7)}
  bn = lambda name, n: shapes.update({f"{name}.{leaf}": (n,) for leaf in (
      "weight", "bias", "running_mean", "running_var")})
  bn("bn1", 64)
  inplanes = 64
  for i in range(len(STAGES)):
    planes = 64 * 2**i
    width = planes * WIDTH // 64 * GROUPS
    block = f"layer{i + 1}.0"
    shapes[f"{block}.conv1.weight"] = (width, inplanes, 1, 1)
    shapes[f"{block}.conv2.weight"] = (width, width // GROUPS, 3, 3)
    shapes[f"{block}.conv3.weight"] = (planes * 4, width, 1, 1)
    shapes[f"{block}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
    for name, n in (("bn1", width), ("bn2", width), ("bn3", planes * 4),
                    ("downsample.1", planes * 4)):
      bn(f"{block}.{name}", n)
    inplanes = planes * 4
  shapes.update({"fc.weight": (1000, inplanes), "fc.bias": (1000,)})
  state = {key: rng.normal(size=shape).astype(np.float32) for key, shape in shapes.items()}
  for key in state:
    if key.endswith("running_var"):
      state[key] = np.abs(state[key]) + 0.5
  state.update({key.replace("running_mean", "num_batches_tracked"): np.array(7)
                for key in shapes if key.endswith("running_mean")})
  return state


def expected_backbone(state):
  """The Flax backbone's variables, written out per key: convolutions (out, in, kh, kw) ->
  (kh, kw, in, out); BatchNorm weight/bias -> scale/bias, running statistics -> batch_stats."""
  params, stats = {}, {}
  for key, value in state.items():
    if key.startswith("fc.") or key.endswith("num_batches_tracked"):
      continue
    *path, leaf = key.split(".")
    module = "_".join(path[:2]) if path[0].startswith("layer") else path[0]
    inner = path[2:] if path[0].startswith("layer") else []
    if inner[:1] == ["downsample"]:
      inner = ["_".join(inner)]
    node = [module] + inner
    if value.ndim == 4:
      target, name, value = params, "kernel", np.transpose(value, (2, 3, 1, 0))
    elif leaf in ("weight", "bias"):
      target, name = params, {"weight": "scale", "bias": "bias"}[leaf]
    else:
      target, name = stats, {"running_mean": "mean", "running_var": "var"}[leaf]
    target["/".join(node + [name])] = value
  return params, stats


def flat(tree):
  return {"/".join(k.key for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.fixture(scope="module")
def state_dict(tmp_path_factory):
  state = torchvision_state_dict(np.random.default_rng(0))
  path = tmp_path_factory.mktemp("weights") / "resnext_tiny.npz"
  np.savez(path, **state)
  return state, str(path)


@pytest.fixture(scope="module")
def network():
  model = load_osim()
  return PerFrameD3KE(heads.bounds_for(model, make_layout(model, include_root=False)),
                      stage_sizes=STAGES, groups=GROUPS, width_per_group=WIDTH, head_hidden=8)


def test_the_backbone_takes_the_state_dict_values(state_dict, network):
  state, path = state_dict
  loaded = pretrained.load_backbone(path, network, jnp.zeros((1, 32, 32, 3)))
  params, stats = expected_backbone(state)
  assert flat(loaded["params"]).keys() == params.keys()
  assert flat(loaded["batch_stats"]).keys() == stats.keys()
  for got, want in ((flat(loaded["params"]), params), (flat(loaded["batch_stats"]), stats)):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
      assert got[key].dtype == np.float32


def test_a_pth_file_reads_as_the_npz(state_dict, tmp_path):
  torch = pytest.importorskip("torch")
  state, npz = state_dict
  pth = tmp_path / "resnext_tiny.pth"
  torch.save({key: torch.from_numpy(np.asarray(value)) for key, value in state.items()}, pth)
  from_pth, from_npz = pretrained.read_state_dict(str(pth)), pretrained.read_state_dict(npz)
  assert from_pth.keys() == from_npz.keys()
  for key in from_npz:
    np.testing.assert_array_equal(from_pth[key], from_npz[key])


def test_bad_files_are_one_line_errors(state_dict, network, tmp_path, monkeypatch):
  state, _ = state_dict
  sample = jnp.zeros((1, 32, 32, 3))
  load = lambda path: pretrained.load_backbone(str(path), network, sample)

  def message(path):
    with pytest.raises(UserError) as error:
      load(path)
    assert "\n" not in str(error.value)
    return str(error.value)

  assert message(tmp_path / "none.npz") == f"{tmp_path}/none.npz: no such file (model.pretrained)"
  (tmp_path / "weights.h5").write_bytes(b"")
  assert message(tmp_path / "weights.h5") == (f"{tmp_path}/weights.h5: model.pretrained must be "
                                              "a .pth (PyTorch) or .npz state dict")
  (tmp_path / "broken.npz").write_bytes(b"not a zip")
  assert message(tmp_path / "broken.npz").startswith(
      f"{tmp_path}/broken.npz: not a readable .npz state dict (")
  wrong = dict(state, **{"layer2.0.conv2.weight": np.zeros((32, 4, 3, 3), np.float32)})
  np.savez(tmp_path / "wrong.npz", **wrong)
  assert message(tmp_path / "wrong.npz") == (
      f"{tmp_path}/wrong.npz: /params/layer2_0/conv2/kernel: shape (3, 3, 4, 32) in the state "
      "dict, (3, 3, 8, 32) in Flax (is it a state dict of this config's model.stage_sizes, "
      "groups and width_per_group?)")
  np.savez(tmp_path / "extra.npz", **dict(state, **{"layer9.0.conv1.weight": np.zeros(1)}))
  assert "layer9_0" in message(tmp_path / "extra.npz")
  (tmp_path / "weights.pth").write_bytes(b"")
  monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
  assert message(tmp_path / "weights.pth") == (
      f"{tmp_path}/weights.pth: reading a .pth needs PyTorch (pip install torch), which is not "
      "installed; or give a .npz of the same keys")


def test_normalisation_is_torchvisions_per_channel(network):
  """The same images give the same output whether normalised as ImageNet's or, shifted by
  hand into the equivalent input, as the runs from before (centred)."""
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.uniform(size=(2, 32, 32, 3)), jnp.float32)
  variables = jax.jit(network.init)(jax.random.PRNGKey(0), images)
  mean, std = map(np.array, INPUT_NORMALISATIONS["imagenet"])
  np.testing.assert_allclose(mean, [0.485, 0.456, 0.406])  # torchvision's ImageNet weights
  np.testing.assert_allclose(std, [0.229, 0.224, 0.225])
  imagenet = jax.jit(network.apply)(variables, images)
  centred = jax.jit(network.clone(normalisation="centred").apply)(
      variables, (images - mean) / std + 0.5)
  for a, b in zip(imagenet, centred):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_run_from_before_keeps_its_centred_input(tmp_path):
  saved = synthetic_tiny.get_config().to_dict()
  for key in ("input_normalisation", "pretrained"):
    del saved["model"][key]
  (tmp_path / runs.CONFIG_FILE).write_text(json.dumps(saved, default=list))
  config = runs.load_config(str(tmp_path))
  assert config.model.input_normalisation == "centred" and config.model.pretrained == ""


@pytest.mark.slow  # about 1-2 minutes on 2 cores: ``pytest -m slow``
def test_training_starts_from_the_state_dict_and_resumes_without_it(state_dict, tmp_path,
                                                                   micro_data):
  state, path = state_dict
  config = synthetic_tiny.get_config()
  for key, value in {"dataset.config": "micro", "dataset.data_dir": micro_data,
                     "model.head_hidden": 8, "model.pretrained": path, "batch_size": 8,
                     "max_steps": 1, "checkpoint_every_steps": 1,
                     "optimizer.learning_rate": 1e-9, "optimizer.end_learning_rate": 1e-9,
                     "optimizer.weight_decay": 0.0}.items():
    parent, name = key.rsplit(".", 1) if "." in key else (None, key)
    (config[parent] if parent else config)[name] = value
  workdir = tmp_path / "run"
  trainer.train_and_evaluate(config, str(workdir))
  params = flat(jax.tree.map(np.asarray, checkpoints.restore_state(str(workdir), "latest").params[
      "backbone"]))
  # One AdamW step of 1e-9 moves each value by about 1e-9 from the state dict's.
  for key, value in expected_backbone(state)[0].items():
    np.testing.assert_allclose(params[key], value, atol=1e-6, err_msg=key)
  # Resuming reads the checkpoint, not the state dict (gone now).
  os.rename(path, path + ".moved")
  try:
    config.max_steps = 2
    trainer.train_and_evaluate(config, str(workdir))
  finally:
    os.rename(path + ".moved", path)
  assert int(checkpoints.restore_state(str(workdir), "latest").step) == 2
