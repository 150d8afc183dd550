"""gSTA: the gated spatio-temporal attention block of SimVP v2 (OpenSTL's `GASubBlock`)."""

import math

import keras
from keras import ops

from kerastp.layers.depthwise import DepthwiseConv2D
from kerastp.validation import positive_ints


def pytorch_default_init(fan_in):
    """PyTorch's default `Conv2d`/`Linear` init as Keras initialisers (kernel, bias).

    Kernels: kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which
    is `VarianceScaling(1/3, "fan_in", "uniform")`; biases: the same bound, which Keras cannot
    derive from a bias shape, hence `fan_in` (in_channels / groups * k * k).
    """
    bound = 1.0 / math.sqrt(fan_in)
    return (
        keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        keras.initializers.RandomUniform(-bound, bound),
    )


def pytorch_conv_init():
    """OpenSTL's conv init for gSTA: N(0, 2 / fan_out), fan_out = k * k * out / groups.

    For Keras kernels this is `VarianceScaling(2, "fan_out", "untruncated_normal")`: a
    `Conv2D` kernel (k, k, in, out) has fan_out k*k*out and a depth-wise kernel (k, k, C, 1)
    has k*k, which is PyTorch's k*k*C/C.
    """
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _conv(filters, kernel_size, name, dilation=1, dtype=None):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        dilation_rate=dilation,
        kernel_initializer=pytorch_conv_init(),
        name=name,
        dtype=dtype,
    )


def _depthwise(kernel_size, name, dilation=1, dtype=None):
    return DepthwiseConv2D(
        kernel_size,
        padding="same",
        dilation_rate=dilation,
        depthwise_initializer=pytorch_conv_init(),
        name=name,
        dtype=dtype,
    )


@keras.saving.register_keras_serializable(package="kerastp")
class GSTABlock(keras.layers.Layer):
    """gSTA block (SimVP v2): large-kernel gated attention and a convolutional MLP.

    `x = x + ls1 * SpatialAttention(BN(x))`, `x = x + ls2 * MixMlp(BN(x))` with

    - SpatialAttention: `proj_2(LKA(GELU(proj_1(x)))) + x`, `proj_*` 1x1 convolutions;
    - LKA (large-kernel attention, decomposed): depth-wise conv `2*dilation - 1`, dilated
      depth-wise conv `kernel_size // dilation` (made odd) with `dilation`, then a 1x1 conv
      to `2*dim` channels split into `f, g`: `sigmoid(g) * f`;
    - MixMlp: 1x1 conv to `mlp_ratio * dim`, depth-wise 3x3, GELU, 1x1 conv back;
    - `ls1`, `ls2`: learnable per-channel layer scales initialised to `init_value`.

    Args:
        dim: int, channels.
        kernel_size: int, the large kernel the LKA decomposes (21 in SimVP).
        mlp_ratio: float, MLP expansion.
        dilation: int, dilation of the LKA's second depth-wise convolution.
        init_value: float, initial layer scale.
        drop_rate: float, dropout in the MLP.
        drop_path: float, stochastic depth: the probability that a sample skips each
            residual branch (timm's `DropPath`; survivors are scaled by 1 / (1 - drop_path)).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: (B, h, w, dim).
        training: bool.

    Example:
    >>> block = GSTABlock(dim=8, kernel_size=7)
    >>> block(keras.ops.zeros((2, 8, 8, 8))).shape
    (2, 8, 8, 8)

    Reference:
        Tan et al., "SimVP: Towards Simple yet Powerful Spatiotemporal Predictive Learning",
        arXiv:2211.12509; OpenSTL `openstl/modules/simvp_modules.py` (`GASubBlock`).
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        positive_ints(dim=dim, kernel_size=kernel_size, dilation=dilation)
        if not mlp_ratio > 0:
            raise ValueError(f"`mlp_ratio` must be positive, got mlp_ratio={mlp_ratio!r}")
        self.dim = dim
        self.kernel_size = kernel_size
        self.mlp_ratio = float(mlp_ratio)
        self.dilation = dilation
        self.init_value = float(init_value)
        self.drop_rate = float(drop_rate)
        self.drop_path = float(drop_path)
        for name, rate in (("drop_rate", self.drop_rate), ("drop_path", self.drop_path)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"`{name}` must lie in [0, 1), got {name}={rate!r}")

        local_kernel = 2 * dilation - 1
        far = kernel_size // dilation
        far_kernel = max(1, far + (far % 2 - 1))
        hidden = int(dim * mlp_ratio)
        dtype = self.dtype_policy
        self.norm_1 = keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, name="norm_1", dtype=dtype
        )
        self._create_attention(local_kernel, far_kernel)
        self.norm_2 = keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, name="norm_2", dtype=dtype
        )
        self.fc_1 = _conv(hidden, 1, "fc_1", dtype=dtype)
        self.mlp_depthwise = _depthwise(3, "mlp_depthwise", dtype=dtype)
        self.fc_2 = _conv(dim, 1, "fc_2", dtype=dtype)
        self.dropout = keras.layers.Dropout(self.drop_rate, dtype=dtype)
        # One keep/drop decision per sample for the whole residual branch.
        self.branch_drop = keras.layers.Dropout(
            self.drop_path, noise_shape=(None, 1, 1, 1), dtype=dtype
        )

    def _create_attention(self, local_kernel, far_kernel):
        """Creates `proj_1`, the LKA (`lka_local`, `lka_far`, `lka_gate`) and `proj_2`."""
        dtype = self.dtype_policy
        self.proj_1 = _conv(self.dim, 1, "proj_1", dtype=dtype)
        self.lka_local = _depthwise(local_kernel, "lka_local", dtype=dtype)
        self.lka_far = _depthwise(far_kernel, "lka_far", dilation=self.dilation, dtype=dtype)
        self.lka_gate = _conv(2 * self.dim, 1, "lka_gate", dtype=dtype)
        self.proj_2 = _conv(self.dim, 1, "proj_2", dtype=dtype)

    def build(self, input_shape):
        if input_shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__}(dim={self.dim}) got inputs with {input_shape[-1]} channels "
                f"(input shape {tuple(input_shape)})"
            )
        hidden_shape = (*input_shape[:-1], int(self.dim * self.mlp_ratio))
        for layer in (self.norm_1, self.proj_1, self.lka_local, self.lka_far, self.lka_gate):
            layer.build(input_shape)
        self.proj_2.build(input_shape)
        self.norm_2.build(input_shape)
        self.fc_1.build(input_shape)
        self.mlp_depthwise.build(hidden_shape)
        self.fc_2.build(hidden_shape)
        scale = keras.initializers.Constant(self.init_value)
        self.layer_scale_1 = self.add_weight(
            shape=(self.dim,), initializer=scale, name="layer_scale_1"
        )
        self.layer_scale_2 = self.add_weight(
            shape=(self.dim,), initializer=scale, name="layer_scale_2"
        )

    def _gating(self, x):
        """The LKA gating unit: `sigmoid(g) * f` with `[f, g] = Conv1x1(LKA(x))`."""
        f, g = ops.split(self.lka_gate(self.lka_far(self.lka_local(x))), 2, axis=-1)
        return ops.sigmoid(g) * f

    def _spatial_attention(self, x):
        shortcut = x
        x = ops.gelu(self.proj_1(x), approximate=False)
        return self.proj_2(self._gating(x)) + shortcut

    def call(self, inputs, training=None):
        x = inputs
        attention = self._spatial_attention(self.norm_1(x, training=training))
        x = x + self.branch_drop(self.layer_scale_1 * attention, training=training)
        mlp = self.fc_1(self.norm_2(x, training=training))
        mlp = self.dropout(ops.gelu(self.mlp_depthwise(mlp), approximate=False), training=training)
        mlp = self.dropout(self.fc_2(mlp), training=training)
        return x + self.branch_drop(self.layer_scale_2 * mlp, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dim": self.dim,
                "kernel_size": self.kernel_size,
                "mlp_ratio": self.mlp_ratio,
                "dilation": self.dilation,
                "init_value": self.init_value,
                "drop_rate": self.drop_rate,
                "drop_path": self.drop_path,
            }
        )
        return config
