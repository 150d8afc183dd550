"""STLight's mixer block: a residual depth-wise branch followed by a point-wise mixer."""

import contextlib
import math

import keras
from keras import ops

from kerastp.layers.depthwise import DepthwiseConv2D
from kerastp.validation import positive_ints

#: The graph a float TFLite export traces (`using_float_tflite_layout`) computes the block's
#: depth-wise branch in channel groups of at most this many channels, and concatenates them
#: before the point-wise convolution. XNNPACK's depth-wise kernels reload every tap's weights
#: for each output pixel: a 25-tap band over 800 channels holds 80 KB of weights, streamed
#: from L2; over 200 channels, 20 KB, within L1. The same products and sums per channel, so
#: the exported numbers do not change. `benchmarks/results/tflite_ops.md` times one block
#: whole and grouped: float32 0.76-0.95x of whole (d = 800 to 1400), int8 0.92-1.08x, so
#: integer files keep the plain graph, as does TensorFlow's own SavedModel (the layout is
#: for XNNPACK's kernels).
EXPORT_GROUP_CHANNELS = 200
#: XNNPACK delegates a CONCATENATION of at most 5 inputs (a 7-input one ran on LiteRT's own
#: kernels and cut the graph into 5 partitions, `kerastp.lite.delegation`).
MAX_EXPORT_GROUPS = 5
#: Widths whose exported point-wise convolution runs faster as this many output-channel
#: chunks: XNNPACK's GEMM ran (1024, d) x (d, d) at ~100 GMAC/s for d = 1000 and 1200 and
#: ~122 as two chunks, while d = 800 and 1400 ran at ~125 whole and no faster split
#: (one run each on this project's 2-core AMD EPYC, LiteRT 2.3.0; the block-level effect is in
#: tflite_ops.md's "channel groups only" rows).
EXPORT_POINTWISE_CHUNKS = {1000: 2, 1200: 2}


_float_tflite_layout = {"active": False, "layout": None}


@contextlib.contextmanager
def using_float_tflite_layout(active=True, layout=None):
    """Within the block, mixer blocks traced for inference on TensorFlow use `export_layout`.

    `kerastp.export` enters it while it traces the SavedModel a float32 / fp16 TFLite file is
    converted from; TensorFlow's own SavedModel and the integer TFLite files keep the plain
    graph (see `EXPORT_GROUP_CHANNELS`).

    Args:
        active: bool, whether the layout applies (False: the plain block).
        layout: (channel groups, point-wise chunks) for every block instead of
            `export_layout` (benchmarks/tflite_ops.py times the layouts side by side).
    """
    previous = dict(_float_tflite_layout)
    _float_tflite_layout.update(active=bool(active), layout=layout)
    try:
        yield
    finally:
        _float_tflite_layout.update(previous)


def export_layout(hidden_dim):
    """(channel groups of the depth-wise branch, point-wise chunks) in the exported graph."""
    groups = min(MAX_EXPORT_GROUPS, math.ceil(hidden_dim / EXPORT_GROUP_CHANNELS))
    return groups, EXPORT_POINTWISE_CHUNKS.get(hidden_dim, 1)


def _slices(size, parts):
    """`parts` contiguous (start, stop) ranges covering range(size), sizes within one."""
    edges = [size * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


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

    A float32 / fp16 TFLite export traces the same computation in `export_layout`: the
    depth-wise branch in channel groups, the point-wise convolution in output-channel chunks
    where that was measured faster (`using_float_tflite_layout`; the weights are sliced, not
    copied into new variables).

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

    def _export_layout(self):
        """`export_layout` while a float TFLite export traces this block, else None."""
        if (
            not _float_tflite_layout["active"]
            or keras.backend.backend() != "tensorflow"
            or keras.backend.standardize_dtype(self.compute_dtype) != "float32"
        ):
            return None
        layout = _float_tflite_layout["layout"] or export_layout(self.hidden_dim)
        return None if tuple(layout) == (1, 1) else tuple(layout)

    @staticmethod
    def _norm_channels(layer, inputs, start, stop):
        """BatchNorm `layer` in inference on channels `start:stop` (Keras' computation)."""

        def part(variable):
            return ops.cast(variable[start:stop], inputs.dtype)

        return ops.batch_normalization(
            inputs,
            part(layer.moving_mean),
            part(layer.moving_variance),
            axis=layer.axis,
            offset=part(layer.beta) if layer.center else None,
            scale=part(layer.gamma) if layer.scale else None,
            epsilon=layer.epsilon,
        )

    def _grouped_call(self, inputs, groups, chunks):
        """Inference in the exported layout (`export_layout`): the same computation, with
        the depth-wise branch in channel groups and the point-wise convolution in
        output-channel chunks."""
        parts = []
        for start, stop in _slices(self.hidden_dim, groups):
            x = inputs[..., start:stop]
            branch = self.depthwise_1.call_channels(x, start, stop)
            branch = self.depthwise_2.call_channels(branch, start, stop)
            branch = ops.gelu(branch, approximate=False)
            parts.append(ops.add(x, self._norm_channels(self.depthwise_norm, branch, start, stop)))
        x = parts[0] if groups == 1 else ops.concatenate(parts, axis=-1)
        if chunks == 1:
            x = self.pointwise(x)
        else:
            kernel = ops.cast(self.pointwise.kernel, x.dtype)
            bias = ops.cast(self.pointwise.bias, x.dtype)
            x = ops.concatenate(
                [
                    ops.add(ops.conv(x, kernel[..., start:stop], 1, "valid"), bias[start:stop])
                    for start, stop in _slices(self.hidden_dim, chunks)
                ],
                axis=-1,
            )
        return self.pointwise_norm(ops.gelu(x, approximate=False), training=False)

    def call(self, inputs, training=None):
        layout = None if training else self._export_layout()
        if layout is not None:
            return self._grouped_call(inputs, *layout)
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
