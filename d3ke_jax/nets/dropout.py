"""Dropout with one key per example: an example's masks depend on the step's key and on its
row in the global batch, not on the device that holds it, so N devices train as one does.

The step's key (``make_rng("dropout")``) is the same on every device; inside a
``devices.data_parallel`` step (``axis_name`` bound) each device's rows are numbered from
its place on the mesh.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def example_keys(key, count, axis_name=None):
  """``count`` keys, one per row of this device's share of the global batch."""
  first = jax.lax.axis_index(axis_name) * count if axis_name is not None else 0
  return jax.vmap(lambda row: jax.random.fold_in(key, row))(first + jnp.arange(count))


def example_masks(key, shape, rate, axis_name=None):
  """Keep-masks (shape, leading axis the examples) for dropping ``rate`` of the values."""
  keys = example_keys(key, shape[0], axis_name)
  return jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - rate, shape[1:]))(keys)


class Dropout(nn.Module):
  """``nn.Dropout`` over (batch, ...) inputs with one key per example."""
  rate: float
  axis_name: Any = None

  @nn.compact
  def __call__(self, x, deterministic):
    if deterministic or self.rate == 0:
      return x
    keep = example_masks(self.make_rng("dropout"), x.shape, self.rate, self.axis_name)
    return jnp.where(keep, x / (1.0 - self.rate), 0).astype(x.dtype)


def attention(query, key, value, bias=None, mask=None, broadcast_dropout=True,
              dropout_rng=None, dropout_rate=0.0, deterministic=False, dtype=None,
              precision=None, module=None, axis_name=None):
  """``nn.dot_product_attention`` (an ``attention_fn`` of ``nn.MultiHeadDotProductAttention``)
  whose dropout of the attention weights draws one mask per example, shared by its heads
  (``broadcast_dropout``) or not. (Flax passes only the arguments named here.)"""
  weights = nn.dot_product_attention_weights(query, key, bias, mask, dtype=dtype,
                                             precision=precision, module=module)
  if not deterministic and dropout_rate > 0:
    shape = (weights.shape[0],) + ((1,) if broadcast_dropout else weights.shape[1:2]) + (
        weights.shape[2:])
    keep = example_masks(dropout_rng, shape, dropout_rate, axis_name)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0).astype(weights.dtype)
  return jnp.einsum("...hqk,...khd->...qhd", weights, value, precision=precision)
