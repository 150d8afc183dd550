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
- ``"lax_dw_conv"`` (JAX): `lax.conv_general_dilated` forward and input gradient, with the
  weight gradient written as a *forward* grouped convolution (channels as groups, batch as
  the contracted feature axis) instead of a batch-grouped one.

Only stride 1, depth multiplier 1 and "same"/"valid" padding take the alternative paths; any
other setting falls back to ``"keras"``. `KERASTP_DEPTHWISE` (environment) or
`set_depthwise_implementation()` chooses globally; ``"auto"`` (the default) is ``"keras"``
except where `benchmarks/gpu.py` measured another form faster (see `AUTO`).

Measured (benchmarks/results/gpu/race.md; H200, Keras 3.15.1 on JAX 0.11.2, one call):
STLight-XS trains at 301 samples/s in float32 at batch 16 with ``"shift"`` against 86 with
``"keras"`` (PyTorch reference: 294); one 7x7, dilation-3 depth-wise convolution on
(16, 32, 32, 800), forward and backward, takes 2.07 ms as ``"shift"`` and 10.34 ms as
``"keras"`` in float32, but 8.28 against 3.28 ms in bfloat16, where Keras' form stays.
"""

import os

import keras
from keras import ops

IMPLEMENTATIONS = ("auto", "keras", "shift", "lax_dw_conv")
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
    if name == "lax_dw_conv" and keras.backend.backend() != "jax":
        name = "keras"
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


def _lax_dw_conv():
    """Builds the JAX custom-gradient depth-wise convolution (imported only on JAX)."""
    import jax
    from jax import lax
    from jax import numpy as jnp

    numbers = ("NHWC", "HWIO", "NHWC")

    def forward(x, w, dilation, pads):
        return lax.conv_general_dilated(
            x,
            w,
            (1, 1),
            pads,
            rhs_dilation=dilation,
            dimension_numbers=numbers,
            feature_group_count=x.shape[-1],
        )

    def make(dilation, pads):
        (dh, dw) = dilation

        @jax.custom_vjp
        def f(x, w):
            return forward(x, w, dilation, pads)

        def f_fwd(x, w):
            return forward(x, w, dilation, pads), (x, w)

        def f_bwd(residuals, grad):
            x, w = residuals
            kh, kw = w.shape[0], w.shape[1]
            batch, height, width, channels = x.shape
            out_h, out_w = grad.shape[1], grad.shape[2]
            # Input gradient: the transposed convolution, a grouped convolution of the output
            # gradient with the flipped kernel (padding mirrored).
            flipped = w[::-1, ::-1]
            back_pads = [
                (dh * (kh - 1) - pads[0][0], height - out_h + pads[0][0]),
                (dw * (kw - 1) - pads[1][0], width - out_w + pads[1][0]),
            ]
            grad_x = lax.conv_general_dilated(
                grad,
                flipped,
                (1, 1),
                back_pads,
                rhs_dilation=dilation,
                dimension_numbers=numbers,
                feature_group_count=channels,
            )
            # Weight gradient as a forward grouped convolution: channels are the groups, the
            # batch is the contracted feature axis, the output gradient is the "kernel" and
            # the taps are strided by the dilation.
            padded = jnp.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
            lhs = jnp.transpose(padded, (1, 2, 3, 0)).reshape(
                1, padded.shape[1], padded.shape[2], channels * batch
            )
            rhs = jnp.transpose(grad, (1, 2, 0, 3))  # (out_h, out_w, B, C)
            grad_w = lax.conv_general_dilated(
                lhs,
                rhs,
                (dh, dw),
                "VALID",
                dimension_numbers=numbers,
                feature_group_count=channels,
                preferred_element_type=jnp.float32,
            )  # (1, kh, kw, C)
            grad_w = grad_w[0, :kh, :kw, :, None].astype(w.dtype)
            return grad_x.astype(x.dtype), jnp.transpose(grad_w, (0, 1, 3, 2))

        f.defvjp(f_fwd, f_bwd)
        return f

    return make


_LAX = {}


def lax_depthwise(inputs, kernel, dilation, padding):
    """Depth-wise convolution on JAX with the weight gradient as a forward grouped conv."""
    if "make" not in _LAX:
        _LAX["make"] = _lax_dw_conv()
    kh, kw = kernel.shape[0], kernel.shape[1]
    if padding == "same":
        pads = (_same_pads(kh, dilation[0]), _same_pads(kw, dilation[1]))
    else:
        pads = ((0, 0), (0, 0))
    key = (tuple(dilation), pads)
    if key not in _LAX:
        _LAX[key] = _LAX["make"](tuple(dilation), pads)
    # Keras' (kh, kw, C, 1) kernel is HWIO with I = 1 per group and O = C.
    channels = kernel.shape[2]
    return _LAX[key](inputs, ops.reshape(kernel, (kh, kw, 1, channels)))


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
        return None if name == "keras" else name

    def call(self, inputs):
        name = self._alternative()
        if name is None:
            return super().call(inputs)
        kernel = ops.cast(self.kernel, inputs.dtype)
        if name == "shift":
            outputs = shift_depthwise(inputs, kernel, tuple(self.dilation_rate), self.padding)
        else:
            outputs = lax_depthwise(inputs, kernel, tuple(self.dilation_rate), self.padding)
        if self.use_bias:
            outputs = ops.add(outputs, ops.cast(self.bias, outputs.dtype))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs
