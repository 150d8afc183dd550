"""The spatio-temporal LSTM cell of PredRNN (Wang et al. 2017), OpenSTL's layout."""

import keras
from keras import ops

from kerastp.layers.conv_lstm_cell import (
    conv_layer_norm,
    odd_kernel,
    recurrent_conv,
    zero_if_none,
)
from kerastp.validation import positive_int


@keras.saving.register_keras_serializable(package="kerastp")
class SpatioTemporalLSTMCell(keras.layers.Layer):
    """One step of PredRNN's ST-LSTM: a temporal memory `c` and a spatio-temporal memory `m`.

    With `Conv_x(x) -> [i, f, g, i', f', g', o]_x`, `Conv_h(h) -> [i, f, g, o]_h` and
    `Conv_m(m) -> [i', f', g']_m` (all k x k, no bias):

    - `c' = sigmoid(f_x + f_h + b) * c + sigmoid(i_x + i_h) * tanh(g_x + g_h)`;
    - `m' = sigmoid(f'_x + f'_m + b) * m + sigmoid(i'_x + i'_m) * tanh(g'_x + g'_m)`;
    - `o = sigmoid(o_x + o_h + Conv_o([c', m']))`, `h' = o * tanh(Conv1x1_last([c', m']))`,

    with `b = forget_bias`. In PredRNN `m` zig-zags: it goes up the layer stack inside a time
    step and from the top layer to the bottom layer of the next step.

    Args:
        filters: int, hidden channels (also the channels of `m`).
        kernel_size: int, odd filter size.
        forget_bias: float, `b` (OpenSTL: 1.0).
        layer_norm: bool, LayerNorm over (H, W, C) after `Conv_x`, `Conv_h`, `Conv_m`, `Conv_o`.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: (B, H, W, C_in).
        h: (B, H, W, filters) hidden state, or None for zeros (the first time step).
        c: (B, H, W, filters) temporal memory, or None for zeros.
        m: (B, H, W, filters) spatio-temporal memory, or None for zeros.

    A None state skips the convolution and the products of zeros, with the same result as
    zeros to the last bit.

    Returns:
        `(h', c', m')`.

    Example:
    >>> cell = SpatioTemporalLSTMCell(8, kernel_size=3)
    >>> zeros = keras.ops.zeros((2, 4, 4, 8))
    >>> h, c, m = cell(keras.ops.ones((2, 4, 4, 3)), zeros, zeros, zeros)
    >>> m.shape
    (2, 4, 4, 8)

    Reference:
        Wang, Long, Wang, Gao, Yu, "PredRNN: Recurrent Neural Networks for Predictive Learning
        using Spatiotemporal LSTMs", NeurIPS 2017; OpenSTL `openstl/modules/predrnn_modules.py`.
    """

    def __init__(self, filters, kernel_size=5, forget_bias=1.0, layer_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = positive_int("filters", filters)
        self.kernel_size = odd_kernel("kernel_size", kernel_size)
        self.forget_bias = float(forget_bias)
        self.layer_norm = bool(layer_norm)
        dtype = self.dtype_policy
        self.conv_x = recurrent_conv(7 * filters, kernel_size, "conv_x", dtype=dtype)
        self.conv_h = recurrent_conv(4 * filters, kernel_size, "conv_h", dtype=dtype)
        self.conv_m = recurrent_conv(3 * filters, kernel_size, "conv_m", dtype=dtype)
        self.conv_o = recurrent_conv(filters, kernel_size, "conv_o", dtype=dtype)
        self.conv_last = recurrent_conv(filters, 1, "conv_last", dtype=dtype)
        self.norms = (
            {name: conv_layer_norm(f"norm_{name}", dtype) for name in ("x", "h", "m", "o")}
            if layer_norm
            else None
        )

    def build(self, inputs_shape, h_shape=None, c_shape=None, m_shape=None):
        spatial = tuple(inputs_shape)[:-1]
        state = (*spatial, self.filters)
        memory = (*spatial, 2 * self.filters)
        self.conv_x.build(inputs_shape)
        self.conv_h.build(state)
        self.conv_m.build(state)
        self.conv_o.build(memory)
        self.conv_last.build(memory)
        if self.norms is not None:
            for name, width in (("x", 7), ("h", 4), ("m", 3), ("o", 1)):
                self.norms[name].build((*spatial, width * self.filters))

    def _conv(self, name, conv, x):
        x = conv(x)
        return x if self.norms is None else self.norms[name](x)

    def call(self, inputs, h, c, m):
        # Seven slices, not `ops.split`: XNNPACK delegates splits into at most 4 parts, and a
        # 7-way SPLIT ran on LiteRT's kernels, cutting predrnn_tiny's graph into 32 partitions.
        x_gates = self._conv("x", self.conv_x, inputs)
        f = self.filters
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = (x_gates[..., k * f : (k + 1) * f] for k in range(7))
        if self.norms is not None:
            # LayerNorm of a zero map is its offset, not zero: the state is made real.
            h, c, m = (zero_if_none(state, x_gates, f) for state in (h, c, m))
        # A None state is zero: its convolution (no bias) and products are skipped, exactly.
        if h is not None:
            i_h, f_h, g_h, o_h = ops.split(self._conv("h", self.conv_h, h), 4, axis=-1)
            i_x, f_x, g_x, o_x = i_x + i_h, f_x + f_h, g_x + g_h, o_x + o_h
        if m is not None:
            i_m, f_m, g_m = ops.split(self._conv("m", self.conv_m, m), 3, axis=-1)
            i_xm, f_xm, g_xm = i_xm + i_m, f_xm + f_m, g_xm + g_m
        c_new = ops.sigmoid(i_x) * ops.tanh(g_x)
        if c is not None:
            c_new = ops.sigmoid(f_x + self.forget_bias) * c + c_new
        m_new = ops.sigmoid(i_xm) * ops.tanh(g_xm)
        if m is not None:
            m_new = ops.sigmoid(f_xm + self.forget_bias) * m + m_new
        memory = ops.concatenate([c_new, m_new], axis=-1)
        o = ops.sigmoid(o_x + self._conv("o", self.conv_o, memory))
        h_new = o * ops.tanh(self.conv_last(memory))
        return h_new, c_new, m_new

    def compute_output_shape(self, inputs_shape, h_shape=None, c_shape=None, m_shape=None):
        state = (*tuple(inputs_shape)[:-1], self.filters)
        return state, state, state

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "forget_bias": self.forget_bias,
                "layer_norm": self.layer_norm,
            }
        )
        return config
