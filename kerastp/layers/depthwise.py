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
  TensorFlow's CPU gradient kernels of that op ignore the dilation, so only the TFLite
  export uses it (`using_depthwise_implementation("native")` while it traces the graph a
  conversion starts from) and training never does (a layer called with `training=True` in
  this form raises). TensorFlow itself runs the dilated op on a CPU only in its oneDNN path
  (on by default only on CPUs with AVX-512 VNNI / BF16, AVX-VNNI or AMX), so the SavedModel
  served to users keeps Keras' form (`kerastp.export.SERVING_DEPTHWISE_FORM`). XNNPACK's
  single-pass depth-wise kernels cover at most 25 taps (`XNNPACK_MAX_TAPS`); a larger kernel
  (STLight's 7x7) falls to a path several times slower (benchmarks/results/tflite_ops.md: a
  7x7, dilation-3 convolution on (1, 32, 32, 800) takes 6.73 ms at 2 threads, the same taps
  as bands of 3x7, 3x7 and 1x7 rows 1.92 ms, one run). The native form therefore splits such
  a kernel (rows wider than 25 taps stay one op) into bands of whole rows of at most 25
  taps, each a VALID `DepthwiseConv2dNative` on the input cropped and padded to the band's
  offsets, and adds them: the same products, summed in another order (float32 differences
  ~1e-6 of the output's scale). A small undilated kernel is the same op as Keras' form;

Only stride 1, depth multiplier 1 and "same"/"valid" padding take the alternative paths; any
other setting falls back to ``"keras"``. `KERASTP_DEPTHWISE` (environment) or
`set_depthwise_implementation()` chooses globally; ``"auto"`` (the default) is ``"keras"``
except where `benchmarks/gpu.py` (GPU) or `benchmarks/depthwise_forms.py` (JAX on CPU)
measured another form faster (see `AUTO`, keyed by whether the kernel is dilated: XLA
compiles an undilated 3x3 well in Keras' form on a GPU, a dilated 7x7 poorly). In
float16/bfloat16 the shift form multiplies and adds in float32 and rounds its result once:
XLA's bfloat16 shifted sums ran 4x slower than float32 ones.

Measured (benchmarks/results/gpu/race.md; H200, Keras 3.15.1 on JAX 0.11.2, one call):
STLight-XS trains at 301 samples/s in float32 at batch 16 with ``"shift"`` against 86 with
``"keras"`` (PyTorch reference: 294); one 7x7, dilation-3 depth-wise convolution on
(16, 32, 32, 800), forward and backward, takes 2.07 ms as ``"shift"`` and 10.34 ms as
``"keras"`` in float32, and 8.28 (shift computed in bfloat16) against 3.28 ms in bfloat16.
An undilated 3x3 takes 0.17 ms in Keras' form and 0.29 ms shifted. A third form raced then
(a custom-gradient `lax` convolution with the weight gradient as a forward grouped
convolution) was slower than both everywhere (12.8 ms) and was dropped. JAX on a CPU: see
`AUTO`'s comment; TensorFlow on a CPU trains stlight_tiny 10x faster in Keras' form than
shifted (benchmarks/results/depthwise_forms_tensorflow_any.md), so "auto" keeps it there.
"""

import contextlib
import os

import keras
from keras import ops

IMPLEMENTATIONS = ("auto", "keras", "shift", "native")
ENV_VAR = "KERASTP_DEPTHWISE"

#: (backend, platform, compute dtype, "dilated" | "undilated") -> implementation used by
#: "auto"; measured by benchmarks/gpu.py (see the module docstring). Anything not listed
#: uses "keras".
AUTO = {
    ("jax", "gpu", "float32", "dilated"): "shift",
    # JAX on CPU (benchmarks/results/depthwise_forms_jax_cpu.md, one interleaved run, 2-core
    # AMD EPYC): XLA's CPU grouped convolutions are slow. Shifting the dilated kernels trains
    # stlight_tiny 1.66x and 512-wide STLight blocks 2.35x faster, simvp_tiny and tau_tiny at
    # the same speed (1.01x, 0.99x). Shifting the undilated kernels too speeds SimVP/TAU up
    # (1.24x, 1.30x) but slows STLight (0.77x): XLA then fuses the 3x3's taps into every tap
    # of the dilated 7x7 it feeds. The first (compiling) step of stlight_tiny takes 14.5 s
    # instead of 7.3 s.
    ("jax", "cpu", "float32", "dilated"): "shift",
    # Not raced yet: the 16-bit entries assume the float32-summing shift form runs at the
    # measured float32 speed (2.07 ms against Keras' 3.28 ms in bfloat16); the next
    # benchmarks/gpu.py call measures it (its micro phase times both forms per dtype).
    ("jax", "gpu", "bfloat16", "dilated"): "shift",
    ("jax", "gpu", "float16", "dilated"): "shift",
}
LOW_PRECISION = ("float16", "bfloat16")

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


def depthwise_implementation(dtype="float32", dilated=True):
    """The implementation the next traced depth-wise convolution on `dtype` inputs uses.

    Args:
        dtype: the convolution's compute dtype.
        dilated: whether its dilation rate is above 1 (`AUTO` tells the two apart).
    """
    name = _chosen["name"] or os.environ.get(ENV_VAR, "auto")
    if name not in IMPLEMENTATIONS:
        raise ValueError(
            f"{ENV_VAR} must be one of {', '.join(IMPLEMENTATIONS)}; got {name!r}"
        )
    if name == "auto":
        kind = "dilated" if dilated else "undilated"
        name = AUTO.get((keras.backend.backend(), _platform(), dtype, kind), "keras")
    return name


def _same_pads(kernel_size, dilation):
    extent = dilation * (kernel_size - 1) + 1
    low = (extent - 1) // 2
    return low, extent - 1 - low


def shift_depthwise(inputs, kernel, dilation, padding):
    """Depth-wise convolution as a sum of shifted inputs (`keras.ops` only).

    16-bit inputs are multiplied and summed in float32 and the result is rounded to their
    dtype once (one rounding instead of one per tap, and XLA runs it faster).

    Args:
        inputs: (B, H, W, C).
        kernel: (kh, kw, C, 1), Keras' depth-wise kernel layout.
        dilation: (dh, dw).
        padding: "same" or "valid".
    """
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    if dtype in LOW_PRECISION:
        outputs = shift_depthwise(
            ops.cast(inputs, "float32"), ops.cast(kernel, "float32"), dilation, padding
        )
        return ops.cast(outputs, dtype)
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


#: The most taps (kh * kw) of a depth-wise kernel XNNPACK runs in one pass (its "25p"
#: micro-kernels); the native form splits larger kernels into bands within this (read at
#: trace time: `benchmarks/tflite_ops.py` raises it to time the single-op form).
XNNPACK_MAX_TAPS = 25


def _band_edges(kernel_size, other_size, max_taps):
    """[(start, stop)] bands of whole kernel rows, each at most `max_taps` taps."""
    rows = max(1, max_taps // other_size)
    return [(start, min(start + rows, kernel_size)) for start in range(0, kernel_size, rows)]


def _native_op(inputs, kernel, dilation, padding):
    import tensorflow as tf  # only reached on the TensorFlow backend

    return tf.raw_ops.DepthwiseConv2dNative(
        input=inputs,
        filter=kernel,
        strides=[1, 1, 1, 1],
        padding=padding.upper(),
        dilations=[1, int(dilation[0]), int(dilation[1]), 1],
    )


def native_depthwise(inputs, kernel, dilation, padding, max_taps=None):
    """TensorFlow's `DepthwiseConv2dNative` with the dilation as an attribute (forward only:
    its CPU gradient kernels ignore the dilation; see the module docstring); kernels of more
    than `max_taps` taps as a sum of row bands, each within it.

    Args:
        inputs: (B, H, W, C), H and W static where the kernel is split.
        kernel: (kh, kw, C, 1), Keras' depth-wise kernel layout.
        dilation: (dh, dw).
        padding: "same" or "valid".
        max_taps: the largest kernel (kh * kw) run as one op (default `XNNPACK_MAX_TAPS`).
    """
    max_taps = XNNPACK_MAX_TAPS if max_taps is None else max_taps
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    height, width = inputs.shape[1], inputs.shape[2]
    if kh * kw <= max_taps or kw > max_taps or height is None or width is None:
        return _native_op(inputs, kernel, dilation, padding)
    dh, dw = int(dilation[0]), int(dilation[1])
    if padding == "same":
        top = _same_pads(kh, dh)[0]
        left, right = _same_pads(kw, dw)
        out_h = height
    else:
        top, left, right = 0, 0, 0
        out_h = height - dh * (kh - 1)
    outputs = None
    for start, stop in _band_edges(kh, kw, max_taps):
        # Output row y of this band reads input rows y + first ... y + last.
        first, last = dh * start - top, dh * (stop - 1) - top
        if first >= height or out_h + last <= 0:
            continue  # the band reads padding only (a dilation wider than the input)
        crop_top, crop_bottom = max(0, first), min(height, out_h + last)
        band_inputs = inputs[:, crop_top:crop_bottom]
        pad_top, pad_bottom = max(0, -first), max(0, out_h + last - height)
        if pad_top or pad_bottom or left or right:
            band_inputs = ops.pad(
                band_inputs, [[0, 0], [pad_top, pad_bottom], [left, right], [0, 0]]
            )
        band = _native_op(band_inputs, kernel[start:stop], (dh, dw), "valid")
        outputs = band if outputs is None else outputs + band
    return outputs


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
        name = depthwise_implementation(
            keras.backend.standardize_dtype(self.compute_dtype),
            dilated=tuple(self.dilation_rate) != (1, 1),
        )
        if name == "native" and (
            keras.backend.backend() != "tensorflow"
            or (
                tuple(self.dilation_rate) == (1, 1)
                and self.kernel_size[0] * self.kernel_size[1] <= XNNPACK_MAX_TAPS
            )
        ):
            return None  # TensorFlow only; small and undilated, Keras' form is the same op
        return None if name == "keras" else name

    def call_channels(self, inputs, start, stop):
        """This layer on channels `start:stop` alone (`inputs` holds just those channels): the
        same per-channel products, in the form `call` would use.

        Raises:
            ValueError: a stride or depth multiplier other than 1 (channels then mix).
        """
        if self.depth_multiplier != 1 or tuple(self.strides) != (1, 1):
            raise ValueError(
                "call_channels needs stride 1 and depth multiplier 1, got "
                f"strides={tuple(self.strides)}, depth_multiplier={self.depth_multiplier}"
            )
        name = self._alternative() or "keras"
        kernel = self.kernel[:, :, start:stop]
        kernel = kernel if name == "shift" else ops.cast(kernel, inputs.dtype)
        outputs = depthwise_conv(inputs, kernel, self.dilation_rate, self.padding, name)
        if self.use_bias:
            outputs = ops.add(outputs, ops.cast(self.bias[start:stop], outputs.dtype))
        return outputs if self.activation is None else self.activation(outputs)

    def call(self, inputs, training=None):
        name = self._alternative()
        if name is None:
            return super().call(inputs)
        if name == "native" and training:
            raise ValueError(
                f"{self.name}: the 'native' depth-wise form is for inference and export only "
                "(TensorFlow's CPU gradients of DepthwiseConv2dNative ignore its dilation); "
                f"train with {ENV_VAR} unset or set to 'auto', 'keras' or 'shift'"
            )
        # The shift form takes the float32 variable as it is (it computes in float32).
        kernel = self.kernel if name == "shift" else ops.cast(self.kernel, inputs.dtype)
        outputs = depthwise_conv(inputs, kernel, self.dilation_rate, self.padding, name)
        if self.use_bias:
            outputs = ops.add(outputs, ops.cast(self.bias, outputs.dtype))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs
