"""The Temporal Attention Unit block of TAU (OpenSTL's `TAUSubBlock`)."""

import keras
from keras import ops

from kerastp.layers.depthwise import DepthwiseConv2D
from kerastp.layers.gsta import GSTABlock, pytorch_default_init


def _default_conv(filters, kernel_size, fan_in, name, dilation=1, depthwise=False, dtype=None):
    kernel_init, bias_init = pytorch_default_init(fan_in)
    if depthwise:
        # Keras' fan-in of a depth-wise kernel (k, k, C, 1) is C*k*k; PyTorch's is k*k
        # (in_channels / groups * k * k), so the bound is set explicitly.
        return DepthwiseConv2D(
            kernel_size,
            padding="same",
            dilation_rate=dilation,
            depthwise_initializer=bias_init,
            bias_initializer=bias_init,
            name=name,
            dtype=dtype,
        )
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        kernel_initializer=kernel_init,
        bias_initializer=bias_init,
        name=name,
        dtype=dtype,
    )


@keras.saving.register_keras_serializable(package="kerastp")
class TAUBlock(GSTABlock):
    """TAU block: statical large-kernel attention times dynamical channel attention.

    The gSTA block (`GSTABlock`) with its gating unit replaced by TAU's temporal attention:
    for the block's (normalised, projected, GELU) input `u`,

    - statical attention (intra-frame, large receptive field): depth-wise conv
      `2*dilation - 1`, dilated depth-wise conv, 1x1 conv (`dim -> dim`);
    - dynamical attention (inter-frame, channels are frames x features): global average
      pool, `Dense(dim // r, no bias)`, ReLU, `Dense(dim, no bias)`, sigmoid, with
      `r = max(dim // reduction, 4)` (OpenSTL's formula);
    - output `SA * DA * u`.

    Everything else (BatchNorms, residuals with layer scale, the convolutional MLP) is the
    gSTA block's. As in OpenSTL, the attention's convolutions and dense layers keep PyTorch's
    default initialisation (uniform, bound 1/sqrt(fan_in)); the MLP uses the gSTA init.

    Args:
        dim: int, channels (frames x features when time is folded into channels).
        kernel_size: int, the large kernel the statical attention decomposes (21 in TAU).
        mlp_ratio: float, MLP expansion.
        dilation: int, dilation of the second depth-wise convolution.
        init_value: float, initial layer scale.
        drop_rate: float, dropout in the MLP.
        drop_path: float, stochastic depth of the residual branches.
        reduction: int, channel-attention reduction parameter.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: (B, h, w, dim).
        training: bool.

    Example:
    >>> block = TAUBlock(dim=16, kernel_size=7)
    >>> block(keras.ops.zeros((2, 8, 8, 16))).shape
    (2, 8, 8, 16)

    Reference:
        Tan, Gao, Wu, Xu, Li, Li, "Temporal Attention Unit: Towards Efficient Spatiotemporal
        Predictive Learning", CVPR 2023, arXiv:2206.12126; OpenSTL
        `openstl/modules/simvp_modules.py` (`TAUSubBlock`, `TemporalAttentionModule`).
    """

    def __init__(
        self,
        dim,
        kernel_size=21,
        mlp_ratio=4.0,
        dilation=3,
        init_value=1e-2,
        drop_rate=0.0,
        drop_path=0.0,
        reduction=16,
        **kwargs,
    ):
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"`reduction` must be a positive integer, got reduction={reduction!r}")
        self.reduction = reduction
        super().__init__(
            dim,
            kernel_size=kernel_size,
            mlp_ratio=mlp_ratio,
            dilation=dilation,
            init_value=init_value,
            drop_rate=drop_rate,
            drop_path=drop_path,
            **kwargs,
        )

    @property
    def channel_hidden(self):
        """Width of the channel attention's bottleneck: dim // max(dim // reduction, 4)."""
        return max(1, self.dim // max(self.dim // self.reduction, 4))

    def _create_attention(self, local_kernel, far_kernel):
        dim, dtype = self.dim, self.dtype_policy
        self.proj_1 = _default_conv(dim, 1, dim, "proj_1", dtype=dtype)
        self.lka_local = _default_conv(
            dim, local_kernel, local_kernel**2, "lka_local", depthwise=True, dtype=dtype
        )
        self.lka_far = _default_conv(
            dim,
            far_kernel,
            far_kernel**2,
            "lka_far",
            dilation=self.dilation,
            depthwise=True,
            dtype=dtype,
        )
        self.lka_gate = _default_conv(dim, 1, dim, "lka_gate", dtype=dtype)
        self.proj_2 = _default_conv(dim, 1, dim, "proj_2", dtype=dtype)
        hidden = self.channel_hidden
        self.channel_reduce = keras.layers.Dense(
            hidden,
            use_bias=False,
            kernel_initializer=pytorch_default_init(dim)[0],
            name="channel_reduce",
            dtype=dtype,
        )
        self.channel_expand = keras.layers.Dense(
            dim,
            use_bias=False,
            kernel_initializer=pytorch_default_init(hidden)[0],
            name="channel_expand",
            dtype=dtype,
        )

    def build(self, input_shape):
        super().build(input_shape)
        self.channel_reduce.build((None, self.dim))
        self.channel_expand.build((None, self.channel_hidden))

    def _gating(self, x):
        statical = self.lka_gate(self.lka_far(self.lka_local(x)))
        pooled = ops.mean(x, axis=(1, 2))
        dynamical = ops.sigmoid(self.channel_expand(ops.relu(self.channel_reduce(pooled))))
        return dynamical[:, None, None, :] * statical * x

    def get_config(self):
        config = super().get_config()
        config["reduction"] = self.reduction
        return config
