"""Multiply-accumulate counting for kerastp models.

`count_macs(model)` runs one symbolic forward pass at batch 1 (no arithmetic is done) and
records every call of every counted layer with its real input and output shapes, so layers
called several times (rollouts, recurrences) are counted once per call, as a profiler would.

Two totals are reported:

- `macs`: multiply-accumulates of every layer, depth-wise convolutions included;
- `fvcore_macs`: what fvcore (the counter the STLight paper and OpenSTL report) gives for the
  PyTorch twin of the model: all convolutions and matrix products, 2 operations per element
  for inference BatchNorm and 5 for GroupNorm / LayerNorm (affine), nothing for activations
  and element-wise arithmetic. fvcore has no handle for convolutions declared with
  `padding="same"` (PyTorch traces them as a different op) and skips them silently; models
  whose PyTorch twin declares its depth-wise convolutions that way (STLight) set
  `fvcore_skips_same_padding = True`, and those convolutions are left out of their total.
"""

import dataclasses
import math

import keras


@dataclasses.dataclass
class LayerCount:
    """MACs of one layer over all its calls in one forward pass at batch 1."""

    path: str
    kind: str
    calls: int
    macs: int
    fvcore_macs: int


@dataclasses.dataclass
class MacReport:
    """The result of `count_macs`.

    Attributes:
        macs: multiply-accumulates of every layer for one sequence.
        fvcore_macs: the fvcore convention (see module docstring).
        layers: per-layer rows, in order of first call.
    """

    macs: int
    fvcore_macs: int
    layers: list

    @property
    def gmacs(self):
        return self.macs / 1e9

    @property
    def fvcore_gmacs(self):
        return self.fvcore_macs / 1e9

    def table(self):
        """A plain-text per-layer table."""
        width = max([len(row.path) for row in self.layers] + [5])
        lines = [f"{'layer':<{width}}  {'kind':<20} {'calls':>5} {'MACs':>15} {'fvcore':>15}"]
        for row in self.layers:
            lines.append(
                f"{row.path:<{width}}  {row.kind:<20} {row.calls:>5} {row.macs:>15,} "
                f"{row.fvcore_macs:>15,}"
            )
        lines.append(
            f"{'total':<{width}}  {'':<20} {'':>5} {self.macs:>15,} {self.fvcore_macs:>15,}"
        )
        return "\n".join(lines)


def _spatial(shape):
    """Positions a convolution visits: the leading (batch) axis times the spatial axes.

    Models fold time into the leading axis (an encoder shared over frames sees B*T images),
    so the leading axis must be counted, not assumed to be 1.
    """
    return _lead(shape) * math.prod(int(d) for d in shape[1:-1])


def _lead(shape):
    return 1 if shape[0] is None else int(shape[0])


def _elements(shape):
    return _lead(shape) * math.prod(int(d) for d in shape[1:])


def _layer_macs(layer, input_shape, output_shape, skip_same_grouped=False):
    """(macs, fvcore_macs) of one call; None for layers that do no counted work."""
    if isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.DepthwiseConv1D):
        macs = (
            _spatial(output_shape)
            * math.prod(layer.kernel_size)
            * int(input_shape[-1])
            * layer.depth_multiplier
        )
        return macs, 0 if skip_same_grouped and layer.padding == "same" else macs
    if isinstance(layer, keras.layers.Conv2DTranspose | keras.layers.Conv1DTranspose):
        macs = (
            _spatial(input_shape)
            * math.prod(layer.kernel_size)
            * int(input_shape[-1])
            * layer.filters
        )
        return macs, macs
    if isinstance(layer, keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D):
        groups = getattr(layer, "groups", 1)
        macs = (
            _spatial(output_shape)
            * math.prod(layer.kernel_size)
            * (int(input_shape[-1]) // groups)
            * layer.filters
        )
        return macs, 0 if skip_same_grouped and layer.padding == "same" and groups > 1 else macs
    if isinstance(layer, keras.layers.Dense):
        macs = _elements(output_shape) * int(input_shape[-1])
        return macs, macs
    if isinstance(layer, keras.layers.EinsumDense):
        # Each output element sums over the kernel axes that do not appear in the output.
        kernel_spec = layer.equation.split("->")[0].split(",")[1]
        output_spec = layer.equation.split("->")[1]
        contracted = math.prod(
            int(size)
            for axis, size in zip(kernel_spec, layer.kernel.shape, strict=True)
            if axis not in output_spec
        )
        macs = _elements(output_shape) * contracted
        return macs, macs
    if isinstance(layer, keras.layers.BatchNormalization):
        elements = _elements(input_shape)
        return 0, 2 * elements if (layer.center or layer.scale) else elements
    if isinstance(layer, keras.layers.GroupNormalization | keras.layers.LayerNormalization):
        # fvcore's norm counter: 5 operations per element with an affine transform, else 4.
        elements = _elements(input_shape)
        return 0, 5 * elements if (layer.center or layer.scale) else 4 * elements
    extra = getattr(layer, "extra_macs", None)
    if callable(extra):
        macs = int(extra(input_shape, output_shape))
        return macs, macs
    return None


def _shape_of(value):
    if isinstance(value, list | tuple):
        value = value[0]
    return tuple(value.shape)


def count_macs(model, batch_size=1):
    """Counts the multiply-accumulates of one forward pass of a built kerastp model.

    Args:
        model: a `kerastp.models.base.Forecaster` (or any model with
            `input_signature_shape`).
        batch_size: int, sequences per pass (MACs scale linearly).

    Returns:
        A `MacReport`.

    Example:
    >>> from kerastp import build_model
    >>> report = count_macs(build_model("stlight_tiny"))
    >>> report.macs > report.fvcore_macs
    True
    """
    rows = {}
    wrapped = []
    skip_same_grouped = bool(getattr(model, "fvcore_skips_same_padding", False))

    def wrap(layer, path):
        original = layer.call

        def counted_call(*args, **kwargs):
            outputs = original(*args, **kwargs)
            counted = _layer_macs(layer, _shape_of(args[0]), _shape_of(outputs), skip_same_grouped)
            if counted is not None:
                row = rows.setdefault(path, LayerCount(path, type(layer).__name__, 0, 0, 0))
                row.calls += 1
                row.macs += counted[0]
                row.fvcore_macs += counted[1]
            return outputs

        object.__setattr__(layer, "call", counted_call)
        wrapped.append(layer)

    seen = set()

    def visit(layer, prefix):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) in seen:  # a layer reachable twice (an RNN's cell) is counted once
                continue
            seen.add(id(child))
            path = f"{prefix}/{child.name}" if prefix else child.name
            wrap(child, path)
            visit(child, path)

    visit(model, "")
    try:
        import tensorflow as tf

        shape = (batch_size, *model.input_signature_shape[1:])
        # Tracing runs every layer's `call` on symbolic tensors of static shape; nothing is
        # computed.
        tf.function(lambda past: model(past, training=False)).get_concrete_function(
            tf.TensorSpec(shape, tf.float32)
        )
    finally:
        for layer in wrapped:
            object.__delattr__(layer, "call")
    layers = list(rows.values())
    return MacReport(
        macs=sum(r.macs for r in layers),
        fvcore_macs=sum(r.fvcore_macs for r in layers),
        layers=layers,
    )
