"""ImageNet initialisation: a torchvision ``resnext50_32x4d`` state dict as the backbone's
starting variables (``config.model.pretrained``).

The file is a ``.pth`` (read with PyTorch, which is then needed) or a ``.npz`` of the same
keys and arrays. The classifier (``fc.*``) is not part of the backbone and is left out; every
other key must map onto the backbone with its shape (``resnext.load_torchvision_state_dict``).
"""

import os

import jax
import numpy as np

from d3ke_jax.errors import UserError
from d3ke_jax.io.npz import read_npz
from d3ke_jax.nets.resnext import load_torchvision_state_dict

CLASSIFIER = "fc."
BACKBONE = "backbone"  # the per-frame networks' ResNeXt submodule


def read_state_dict(path):
  """{key: NumPy array} of a ``.pth`` or ``.npz`` state dict; ``UserError`` naming the file."""
  if not os.path.isfile(path):
    problem = "not a file" if os.path.exists(path) else "no such file"
    raise UserError(f"{path}: {problem} (model.pretrained)")
  extension = os.path.splitext(path)[1].lower()
  if extension == ".npz":
    return read_npz(path, "state dict")
  if extension not in (".pth", ".pt"):
    raise UserError(f"{path}: model.pretrained must be a .pth (PyTorch) or .npz state dict")
  try:
    import torch  # pylint: disable=import-outside-toplevel  # only for .pth files
  except ImportError:
    raise UserError(f"{path}: reading a .pth needs PyTorch (pip install torch), which is not "
                    "installed; or give a .npz of the same keys") from None
  try:
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  # torch raises many kinds
    raise UserError(f"{path}: not a readable PyTorch state dict ({_first_line(e)})") from None
  if not isinstance(state_dict, dict) or not all(hasattr(v, "numpy")
                                                 for v in state_dict.values()):
    raise UserError(f"{path}: not a state dict (a mapping of names to tensors)")
  return {key: value.detach().cpu().numpy() for key, value in state_dict.items()}


def backbone_variables(path, backbone):
  """The backbone's variables {"params", "batch_stats"} from the state dict at ``path``,
  checked against ``backbone`` (the initialised ones) and cast to their dtypes."""
  state_dict = {key: value for key, value in read_state_dict(path).items()
                if not key.startswith(CLASSIFIER)}
  try:
    converted = load_torchvision_state_dict(state_dict, backbone)
  except ValueError as e:
    raise UserError(f"{path}: {_first_line(e)} (is it a state dict of this config's "
                    "model.stage_sizes, groups and width_per_group?)") from None
  return jax.tree.map(lambda value, like: np.asarray(value, like.dtype), converted, backbone)


def load_backbone(path, network, sample_input):
  """The backbone variables of a per-frame ``network`` read from ``path`` (checked against
  the shapes ``network.init`` gives for ``sample_input``, without computing them)."""
  shapes = jax.eval_shape(network.init, jax.random.PRNGKey(0), sample_input)
  return backbone_variables(path, {"params": shapes["params"][BACKBONE],
                                   "batch_stats": shapes["batch_stats"][BACKBONE]})


def with_backbone(state, backbone):
  """``state`` (a ``TrainState``) with the backbone variables ``backbone``."""
  return state.replace(params={**state.params, BACKBONE: backbone["params"]},
                       batch_stats={**state.batch_stats, BACKBONE: backbone["batch_stats"]})


def _first_line(error):
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__
