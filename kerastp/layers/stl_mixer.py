"""STLight's mixer block: a residual depth-wise branch followed by a point-wise mixer."""

import math

import keras
from keras import ops

from kerastp.layers.depthwise import DepthwiseConv2D
from kerastp.validation import positive_ints


def he_normal_fan_out(fan_out, seed=None):
    """PyTorch's `kaiming_normal_(mode="fan_out", nonlinearity="relu")`: N(0, 2 / fan_out).

    Keras' `HeNormal` computes the fan of a depth-wise kernel as `k * k`, PyTorch as
    `channels * k * k`; taking the fan explicitly keeps both conventions apart.
    """
    return keras.initializers.RandomNormal(mean=0.0, stddev=math.sqrt(2.0 / fan_out), seed=seed)


def batch_norm(name, dtype=None):
    """BatchNorm with the STLight settings: momentum 0.9 (Keras convention), epsilon 1e-5."""
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="kerastp")
class STLMixerBlock(keras.layers.Layer):
    """The STLMixer block of STLight (Alfarano et al., WACV 2025).

    Two parts, on a (B, h, w, d) feature map whose channels hold all frames of the clip:

    1. residual depth-wise branch:
       `x = x + BN(GELU(DWConv(k2, dilation)(DWConv(k1)(x))))`, no activation between the
       two depth-wise convolutions, both with bias, 'same' padding;
    2. point-wise mixer without residual: `x = BN(GELU(Conv1x1(d -> d)(x)))`.

    GELU is the exact (erf) form. Convolutions are He-normal initialised with PyTorch's
    fan-out convention, biases zero.

    Args:
        hidden_dim: int, the channel width `d`.
        kernel_size_1: int, kernel of the first depth-wise convolution (3 in the paper).
        kernel_size_2: int, kernel of the dilated depth-wise convolution (7 in the paper).
        dilation: int, dilation of the second depth-wise convolution (3 in the paper).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: (B, h, w, hidden_dim) tensor.
        training: bool, BatchNorm mode.

    Example:
    >>> block = STLMixerBlock(hidden_dim=8)
    >>> block(keras.ops.zeros((2, 6, 6, 8))).shape
    (2, 6, 6, 8)

    Reference:
        Alfarano et al., "Efficient Spatio-Temporal Forecasting with STLight", WACV 2025,
        arXiv:2411.10198.
    """

    def __init__(self, hidden_dim, kernel_size_1=3, kernel_size_2=7, dilation=3, **kwargs):
        super().__init__(**kwargs)
        positive_ints(
            hidden_dim=hidden_dim,
            kernel_size_1=kernel_size_1,
            kernel_size_2=kernel_size_2,
            dilation=dilation,
        )
        self.hidden_dim = hidden_dim
        self.kernel_size_1 = kernel_size_1
        self.kernel_size_2 = kernel_size_2
        self.dilation = dilation

        d, dtype = hidden_dim, self.dtype_policy
        self.depthwise_1 = DepthwiseConv2D(
            kernel_size_1,
            padding="same",
            depthwise_initializer=he_normal_fan_out(d * kernel_size_1**2),
            bias_initializer="zeros",
            name="depthwise_1",
            dtype=dtype,
        )
        self.depthwise_2 = DepthwiseConv2D(
            kernel_size_2,
            padding="same",
            dilation_rate=dilation,
            depthwise_initializer=he_normal_fan_out(d * kernel_size_2**2),
            bias_initializer="zeros",
            name="depthwise_2",
            dtype=dtype,
        )
        self.depthwise_norm = batch_norm("depthwise_norm", dtype)
        self.pointwise = keras.layers.Conv2D(
            d,
            1,
            kernel_initializer=he_normal_fan_out(d),
            bias_initializer="zeros",
            name="pointwise",
            dtype=dtype,
        )
        self.pointwise_norm = batch_norm("pointwise_norm", dtype)

    def build(self, input_shape):
        if input_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"STLMixerBlock(hidden_dim={self.hidden_dim}) got inputs with "
                f"{input_shape[-1]} channels (input shape {tuple(input_shape)})"
            )
        self.depthwise_1.build(input_shape)
        self.depthwise_2.build(input_shape)
        self.depthwise_norm.build(input_shape)
        self.pointwise.build(input_shape)
        self.pointwise_norm.build(input_shape)

    def call(self, inputs, training=None):
        branch = self.depthwise_2(self.depthwise_1(inputs))
        branch = self.depthwise_norm(ops.gelu(branch, approximate=False), training=training)
        x = ops.add(inputs, branch)
        x = self.pointwise(x)
        return self.pointwise_norm(ops.gelu(x, approximate=False), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "kernel_size_1": self.kernel_size_1,
                "kernel_size_2": self.kernel_size_2,
                "dilation": self.dilation,
            }
        )
        return config
