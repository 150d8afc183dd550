"""Depth-wise 2-D convolution with an implementation chosen per backend.

Keras' `DepthwiseConv2D` runs, on JAX, as one `lax.conv_general_dilated` with
`feature_group_count = channels`; its weight gradient becomes a convolution with
`batch_group_count = channels`, which XLA's GPU compiler handles far more slowly than
PyTorch's depth-wise kernels (issue "Backends and GPU"). The same mathematics can be written
in other forms that XLA compiles well; `DepthwiseConv2D` here keeps Keras' layer, weights and
config and picks the form per backend:

- ``"keras"``: `keras.ops.depthwise_conv` (every backend; what TensorFlow, SavedModel and
  TFLite use, so exported graphs are unchanged);
- ``"shift"``: the sum over the k*k taps of a shifted input times a per-channel weight
  (`keras.ops` only, any backend). XLA fuses it into elementwise loops, and the weight
  gradient becomes k*k reductions;
- ``"native"`` (TensorFlow, inference only): one `DepthwiseConv2dNative` op carrying the
  dilation as an attribute. `tf.nn.depthwise_conv2d` (Keras' form) wraps a dilated
  convolution in SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND, which TFLite keeps as three ops
  around an undilated kernel; the native op converts to one DEPTHWISE_CONV_2D with its
  dilation factor, which XNNPACK runs directly (issue "Edge forecasting at full speed").
  TensorFlow's CPU gradient kernels of that op ignore the dilation, so the export uses it
  (`using_depthwise_implementation("native")` while it traces the serving graph) and
  training never does; an undilated convolution is the same op either way;

Only stride 1, depth multiplier 1 and "same"/"valid" padding take the alternative paths; any
other setting falls back to ``"keras"``. `KERASTP_DEPTHWISE` (environment) or
`set_depthwise_implementation()` chooses globally; ``"auto"`` (the default) is ``"keras"``
except where `benchmarks/gpu.py` measured another form faster (see `AUTO`).

Measured (benchmarks/results/gpu/race.md; H200, Keras 3.15.1 on JAX 0.11.2, one call):
STLight-XS trains at 301 samples/s in float32 at batch 16 with ``"shift"`` against 86 with
``"keras"`` (PyTorch reference: 294); one 7x7, dilation-3 depth-wise convolution on
(16, 32, 32, 800), forward and backward, takes 2.07 ms as ``"shift"`` and 10.34 ms as
``"keras"`` in float32, but 8.28 against 3.28 ms in bfloat16, where Keras' form stays. A
third form raced then (a custom-gradient `lax` convolution with the weight gradient as a
forward grouped convolution) was slower than both everywhere (12.8 ms) and was dropped.
"""

import contextlib
import os

import keras
from keras import ops

IMPLEMENTATIONS = ("auto", "keras", "shift", "native")
ENV_VAR = "KERASTP_DEPTHWISE"

#: (backend, platform, compute dtype) -> implementation used by "auto"; measured by
#: benchmarks/gpu.py (see the module docstring). Anything not listed uses "keras".
AUTO = {("jax", "gpu", "float32"): "shift"}

_chosen = {"name": None}


def set_depthwise_implementation(name):
    """Chooses how every kerastp depth-wise convolution is computed from the next trace on.

    Args:
        name: one of `IMPLEMENTATIONS`, or None to return to `KERASTP_DEPTHWISE` / "auto".
    """
    if name is not None and name not in IMPLEMENTATIONS:
        raise ValueError(
            f"depth-wise implementation must be one of {', '.join(IMPLEMENTATIONS)}; "
            f"got {name!r}"
        )
    _chosen["name"] = name


@contextlib.contextmanager
def using_depthwise_implementation(name):
    """Within the block, depth-wise convolutions traced use `name` (then the previous choice).

    Example:
    >>> with using_depthwise_implementation("native"):  # doctest: +SKIP
    ...     archive.write_out(path)  # the serving graph with dilated DEPTHWISE_CONV_2D ops
    """
    previous = _chosen["name"]
    set_depthwise_implementation(name)
    try:
        yield
    finally:
        _chosen["name"] = previous


def _platform():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend()
    return "any"


def depthwise_implementation(dtype="float32"):
    """The implementation the next traced depth-wise convolution on `dtype` inputs uses."""
    name = _chosen["name"] or os.environ.get(ENV_VAR, "auto")
    if name not in IMPLEMENTATIONS:
        raise ValueError(
            f"{ENV_VAR} must be one of {', '.join(IMPLEMENTATIONS)}; got {name!r}"
        )
    if name == "auto":
        name = AUTO.get((keras.backend.backend(), _platform(), dtype), "keras")
    return name


def _same_pads(kernel_size, dilation):
    extent = dilation * (kernel_size - 1) + 1
    low = (extent - 1) // 2
    return low, extent - 1 - low


def shift_depthwise(inputs, kernel, dilation, padding):
    """Depth-wise convolution as a sum of shifted inputs (`keras.ops` only).

    Args:
        inputs: (B, H, W, C).
        kernel: (kh, kw, C, 1), Keras' depth-wise kernel layout.
        dilation: (dh, dw).
        padding: "same" or "valid".
    """
    kh, kw = kernel.shape[0], kernel.shape[1]
    dh, dw = dilation
    height, width = inputs.shape[1], inputs.shape[2]
    if padding == "same":
        inputs = ops.pad(
            inputs, [[0, 0], list(_same_pads(kh, dh)), list(_same_pads(kw, dw)), [0, 0]]
        )
        out_h, out_w = height, width
    else:
        out_h, out_w = height - dh * (kh - 1), width - dw * (kw - 1)
    outputs = None
    for i in range(kh):
        for j in range(kw):
            tap = inputs[:, i * dh : i * dh + out_h, j * dw : j * dw + out_w, :]
            term = tap * kernel[i, j, :, 0]
            outputs = term if outputs is None else outputs + term
    return outputs


def native_depthwise(inputs, kernel, dilation, padding):
    """TensorFlow's `DepthwiseConv2dNative` with the dilation as an attribute (forward only:
    its CPU gradient kernels ignore the dilation; see the module docstring)."""
    import tensorflow as tf  # only reached on the TensorFlow backend

    return tf.raw_ops.DepthwiseConv2dNative(
        input=inputs,
        filter=kernel,
        strides=[1, 1, 1, 1],
        padding=padding.upper(),
        dilations=[1, int(dilation[0]), int(dilation[1]), 1],
    )


def depthwise_conv(inputs, kernel, dilation=(1, 1), padding="same", implementation="keras"):
    """A stride-1, depth-multiplier-1 depth-wise convolution in the given form.

    Args:
        inputs: (B, H, W, C).
        kernel: (kh, kw, C, 1), Keras' depth-wise kernel layout.
        dilation: (dh, dw).
        padding: "same" or "valid".
        implementation: "keras", "shift" or "native" (see the module docstring).
    """
    if implementation == "shift":
        return shift_depthwise(inputs, kernel, tuple(dilation), padding)
    if implementation == "native":
        return native_depthwise(inputs, kernel, tuple(dilation), padding)
    return ops.depthwise_conv(inputs, kernel, 1, padding, dilation_rate=tuple(dilation))


@keras.saving.register_keras_serializable(package="kerastp")
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` whose computation follows `depthwise_implementation()`.

    Same arguments, weights and config as Keras' layer, so saved models are interchangeable;
    only how the convolution is computed differs (see the module docstring).
    """

    def _alternative(self):
        if (
            self.depth_multiplier != 1
            or tuple(self.strides) != (1, 1)
            or self.data_format != "channels_last"
            or self.padding not in ("same", "valid")
        ):
            return None
        name = depthwise_implementation(keras.backend.standardize_dtype(self.compute_dtype))
        if name == "native" and (
            keras.backend.backend() != "tensorflow" or tuple(self.dilation_rate) == (1, 1)
        ):
            return None  # TensorFlow only; undilated, Keras' form is the same op
        return None if name == "keras" else name

    def call(self, inputs):
        name = self._alternative()
        if name is None:
            return super().call(inputs)
        kernel = ops.cast(self.kernel, inputs.dtype)
        outputs = depthwise_conv(inputs, kernel, self.dilation_rate, self.padding, name)
        if self.use_bias:
            outputs = ops.add(outputs, ops.cast(self.bias, outputs.dtype))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs
