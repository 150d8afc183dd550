"""The convolutional LSTM cell of ConvLSTM (Shi et al. 2015), OpenSTL's layout."""

import keras
from keras import ops

from kerastp.validation import positive_int


def odd_kernel(name, value):
    """Returns `value` if it is an odd positive integer, else raises `ValueError`."""
    positive_int(name, value)
    if value % 2 == 0:
        raise ValueError(f"`{name}` must be odd ('same' padding), got {name}={value!r}")
    return int(value)


def recurrent_conv(filters, kernel_size, name, use_bias=False, dtype=None):
    """A 'same'-padded convolution with PyTorch's default init (OpenSTL's cell convolutions).

    Kaiming-uniform with a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    fan_in = k * k * in_channels.
    """
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        name=name,
        dtype=dtype,
    )


def zero_if_none(state, like, filters):
    """`state`, or zeros shaped like `like` (B, H, W, *) with `filters` channels if None."""
    if state is not None:
        return state
    return ops.zeros_like(like[..., :filters])


def conv_layer_norm(name, dtype=None):
    """OpenSTL's `nn.LayerNorm([C, H, W])`: normalise over the whole (H, W, C) map."""
    return keras.layers.LayerNormalization(axis=(-3, -2, -1), epsilon=1e-5, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="kerastp")
class ConvLSTMCell(keras.layers.Layer):
    """One step of a convolutional LSTM.

    `[i, f, g, o] = Conv_x(x) + Conv_h(h)` (each `filters` channels), then
    `c' = sigmoid(f + forget_bias) * c + sigmoid(i) * tanh(g)`, `h' = sigmoid(o) * tanh(c')`.
    With `forget_bias=0` this is exactly `keras.layers.ConvLSTM2D`'s cell ('same' padding,
    sigmoid/tanh, gate order i, f, c, o, the bias on the input convolution): copy
    `kernel -> conv_x.kernel`, `recurrent_kernel -> conv_h.kernel`, `bias -> conv_x.bias`.

    OpenSTL's cell has no bias and no forget bias; its module also declares `conv_o` and
    `conv_last` convolutions that its `forward` never uses. Those are not created here (they
    would be untrained dead weights), so parameter counts are OpenSTL's minus theirs.

    Args:
        filters: int, hidden channels.
        kernel_size: int, odd filter size of both convolutions.
        use_bias: bool, a bias on the input convolution (OpenSTL: False).
        forget_bias: float, added to the forget gate's pre-activation.
        layer_norm: bool, LayerNorm over (H, W, C) after each convolution (OpenSTL's
            `layer_norm=1`).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: (B, H, W, C_in) frame (or the hidden state of the layer below).
        h: (B, H, W, filters) hidden state, or None for a zero state (the first time step).
        c: (B, H, W, filters) cell state, or None for zeros.

    A None state skips the convolution and the products of zeros, with the same result as
    zeros to the last bit: the first step of a forecast costs less, in TFLite too.

    Returns:
        `(h', c')`.

    Example:
    >>> cell = ConvLSTMCell(8, kernel_size=3)
    >>> zeros = keras.ops.zeros((2, 4, 4, 8))
    >>> h, c = cell(keras.ops.ones((2, 4, 4, 3)), zeros, zeros)
    >>> h.shape
    (2, 4, 4, 8)

    Reference:
        Shi et al., "Convolutional LSTM Network: A Machine Learning Approach for Precipitation
        Nowcasting", NeurIPS 2015; OpenSTL `openstl/modules/convlstm_modules.py`.
    """

    def __init__(
        self, filters, kernel_size=5, use_bias=False, forget_bias=0.0, layer_norm=False, **kwargs
    ):
        super().__init__(**kwargs)
        self.filters = positive_int("filters", filters)
        self.kernel_size = odd_kernel("kernel_size", kernel_size)
        self.use_bias = bool(use_bias)
        self.forget_bias = float(forget_bias)
        self.layer_norm = bool(layer_norm)
        dtype = self.dtype_policy
        self.conv_x = recurrent_conv(
            4 * filters, kernel_size, "conv_x", use_bias=use_bias, dtype=dtype
        )
        self.conv_h = recurrent_conv(4 * filters, kernel_size, "conv_h", dtype=dtype)
        self.norm_x = conv_layer_norm("norm_x", dtype) if layer_norm else None
        self.norm_h = conv_layer_norm("norm_h", dtype) if layer_norm else None

    def build(self, inputs_shape, h_shape=None, c_shape=None):
        state_shape = (*tuple(inputs_shape)[:-1], self.filters)
        gates_shape = (*tuple(inputs_shape)[:-1], 4 * self.filters)
        self.conv_x.build(inputs_shape)
        self.conv_h.build(state_shape)
        if self.layer_norm:
            self.norm_x.build(gates_shape)
            self.norm_h.build(gates_shape)

    def call(self, inputs, h, c):
        x_gates = self.conv_x(inputs)
        if self.layer_norm:
            x_gates = self.norm_x(x_gates)
            # LayerNorm of a zero map is its offset, not zero: the state is made real.
            h, c = zero_if_none(h, x_gates, self.filters), zero_if_none(c, x_gates, self.filters)
        gates = x_gates
        if h is not None:  # Conv_h of a zero state is zero (no bias): skipped, exactly.
            h_gates = self.conv_h(h)
            gates = gates + (self.norm_h(h_gates) if self.layer_norm else h_gates)
        i, f, g, o = ops.split(gates, 4, axis=-1)
        c_new = ops.sigmoid(i) * ops.tanh(g)
        if c is not None:
            c_new = ops.sigmoid(f + self.forget_bias) * c + c_new
        h_new = ops.sigmoid(o) * ops.tanh(c_new)
        return h_new, c_new

    def compute_output_shape(self, inputs_shape, h_shape=None, c_shape=None):
        state = (*tuple(inputs_shape)[:-1], self.filters)
        return state, state

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "use_bias": self.use_bias,
                "forget_bias": self.forget_bias,
                "layer_norm": self.layer_norm,
            }
        )
        return config
