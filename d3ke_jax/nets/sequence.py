"""Sequence networks that refine windows of per-frame estimates: (batch, frames, D) ->
(refined (batch, frames, ``outputs``), features (batch, frames, H)).

- ``BiLSTM``: stacked bidirectional LSTMs (hidden 128, 3 layers, dropout 0.1).
- ``TCN``: dilated temporal convolutions as in VideoPose3D (kernel 3, dilations 1, 3, 9,
  27, 81: a 243-frame receptive field), centred (bidirectional) or causal.
- ``LiftingTransformer``: transformer encoder (hidden 256, 8 heads, feed-forward as a
  512-channel convolution) over the window.
Each returns a residual update of its input's first ``outputs`` channels (0: all; the rest
only inform it), so an untrained network starts as identity, and the features the update
is made from (what other heads may read).
Dropout draws one mask per example (``dropout.Dropout``); ``axis_name`` names the device
axis of the train step, over which TCN's BatchNorm also averages its statistics.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn

from d3ke_jax.nets.dropout import Dropout, attention


def _residual(x, h, outputs):
  """(x's first ``outputs`` channels (0: all) + a zero-initialised linear map of the
  features ``h``, ``h``)."""
  outputs = outputs or x.shape[-1]
  update = nn.Dense(outputs, kernel_init=nn.initializers.zeros, name="out")(h)
  return x[..., :outputs] + update, h


class BiLSTM(nn.Module):
  hidden: int = 128
  layers: int = 3
  dropout: float = 0.1
  outputs: int = 0
  axis_name: Any = None

  @nn.compact
  def __call__(self, x, train=False):
    h = x
    for i in range(self.layers):
      h = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(self.hidden), name=f"forward_{i}"),
                           nn.RNN(nn.OptimizedLSTMCell(self.hidden), name=f"backward_{i}"),
                           name=f"lstm_{i}")(h)
      h = Dropout(self.dropout, self.axis_name)(h, deterministic=not train)
    return _residual(x, h, self.outputs)


class TCN(nn.Module):
  """Receptive field ``1 + 2 * sum(dilations)`` frames (243 by default); ``causal`` looks
  only backwards (the field then ends at the current frame)."""
  channels: int = 256
  dilations: Sequence[int] = (1, 3, 9, 27, 81)
  dropout: float = 0.25
  causal: bool = False
  outputs: int = 0
  axis_name: Any = None

  @nn.compact
  def __call__(self, x, train=False):
    def conv(h, dilation, name):
      pad = ((2 * dilation, 0),) if self.causal else ((dilation, dilation),)
      return nn.Conv(self.channels, (3,), kernel_dilation=dilation, padding=pad, name=name)(h)

    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                     axis_name=self.axis_name if train else None, name=name)
    drop = functools.partial(Dropout(self.dropout, self.axis_name), deterministic=not train)
    h = drop(nn.relu(norm("expand_bn")(conv(x, self.dilations[0], "expand"))))
    for i, dilation in enumerate(self.dilations[1:]):
      y = drop(nn.relu(norm(f"bn_{i}")(conv(h, dilation, f"conv_{i}"))))
      y = drop(nn.relu(norm(f"bn1x1_{i}")(nn.Conv(self.channels, (1,), name=f"conv1x1_{i}")(y))))
      h = h + y
    return _residual(x, h, self.outputs)

  @property
  def receptive_field(self):
    return 1 + 2 * sum(self.dilations)


class LiftingTransformer(nn.Module):
  hidden: int = 256
  heads: int = 8
  feed_forward: int = 512
  layers: int = 4
  dropout: float = 0.1
  max_frames: int = 243
  outputs: int = 0
  axis_name: Any = None

  @nn.compact
  def __call__(self, x, train=False):
    if x.shape[-2] > self.max_frames:
      raise ValueError(f"LiftingTransformer: {x.shape[-2]} frames > max_frames {self.max_frames}")
    h = nn.Dense(self.hidden, name="embed")(x)
    position = self.param("position", nn.initializers.normal(0.02), (self.max_frames, self.hidden))
    h = h + position[:x.shape[-2]]
    drop = functools.partial(Dropout(self.dropout, self.axis_name), deterministic=not train)
    for i in range(self.layers):
      y = nn.LayerNorm(name=f"norm_attention_{i}")(h)
      y = nn.MultiHeadDotProductAttention(
          self.heads, dropout_rate=self.dropout, deterministic=not train,
          attention_fn=functools.partial(attention, axis_name=self.axis_name),
          name=f"attention_{i}")(y)
      h = h + drop(y)
      y = nn.LayerNorm(name=f"norm_ff_{i}")(h)
      y = nn.Conv(self.feed_forward, (1,), name=f"ff_in_{i}")(y)
      y = nn.Conv(self.hidden, (1,), name=f"ff_out_{i}")(nn.gelu(y))
      h = h + drop(y)
    h = nn.LayerNorm(name="norm_out")(h)
    return _residual(x, h, self.outputs)


SEQUENCE_NETWORKS = {"lstm": BiLSTM, "tcn": TCN, "transformer": LiftingTransformer}
