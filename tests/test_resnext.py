"""The Flax ResNeXt against torchvision's (fixture made by tests/fixtures/make_resnext_fixture.py
with torch 2.14.1 / torchvision 0.29.1): converted weights give the same logits and stage
outputs in float32 (measured: <= 8.5e-7 relative to the largest value, logits; stages
<= 6.8e-7), checked within 3e-6; the converter covers the full ResNeXt-50 32x4d."""

import ast
import os
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d3ke_jax.nets.resnext import ResNeXt, load_torchvision_state_dict

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
sys.path.insert(0, FIXTURES)
from seeded_weights import seeded_state_dict  # pylint: disable=g-import-not-at-top,wrong-import-position

FIXTURE = np.load(os.path.join(FIXTURES, "resnext_torchvision.npz"))
TOL = 3e-6  # relative error, float32


def _shapes(prefix):
  return {k: ast.literal_eval(s) for k, s in zip(FIXTURE[f"{prefix}_keys"],
                                                 FIXTURE[f"{prefix}_shapes"])}


def _relative_error(a, b):
  return np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b))


def test_converted_weights_reproduce_torchvision():
  model = ResNeXt(stage_sizes=(1, 1, 1, 1), num_classes=10)
  image = jnp.asarray(FIXTURE["image"].transpose(0, 2, 3, 1))  # NCHW -> NHWC
  variables = model.init(jax.random.PRNGKey(0), image)
  converted = load_torchvision_state_dict(seeded_state_dict(_shapes("tiny")), variables)
  logits, stages = model.apply(converted, image, return_stages=True)
  chex.assert_type([logits, *stages], jnp.float32)
  assert _relative_error(logits, FIXTURE["logits"]) < TOL
  for i, stage in enumerate(stages):
    expected = FIXTURE[f"stage{i + 1}"].transpose(0, 2, 3, 1)
    assert _relative_error(stage, expected) < TOL, f"stage {i + 1}"


def test_converter_covers_full_resnext50_32x4d():
  model = ResNeXt(num_classes=1000)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
  shapes = _shapes("full")
  assert len(shapes) == 320
  fake = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
  converted = load_torchvision_state_dict(fake, variables)  # raises on any mismatch
  count = lambda tree: sum(np.size(x) for x in jax.tree.leaves(tree))
  assert count(converted["params"]) == count(variables["params"]) == 25_028_904


def test_converter_rejects_a_foreign_state_dict():
  variables = jax.eval_shape(ResNeXt(stage_sizes=(1, 1, 1, 1)).init, jax.random.PRNGKey(0),
                             jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match="present in only one"):
    load_torchvision_state_dict(seeded_state_dict(_shapes("tiny")), variables)  # has fc


def test_features_shape_train_mode_and_bfloat16():
  model = ResNeXt(stage_sizes=(1, 1, 1, 1), groups=4, dtype=jnp.bfloat16)
  x = jnp.ones((2, 64, 64, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  features, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  chex.assert_shape(features, (2, 2048))
  chex.assert_type(features, jnp.float32)
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), updates["batch_stats"],
                         variables["batch_stats"])
  assert any(jax.tree.leaves(changed))
  chex.assert_type(jax.tree.leaves(variables["params"]), jnp.float32)
