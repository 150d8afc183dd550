"""Run kerastp TFLite (LiteRT) forecasters with `ai_edge_litert`; no TensorFlow needed.

An edge box installs `ai-edge-litert` and NumPy only: this module imports neither TensorFlow
nor Keras.
"""

import os

import numpy as np

from kerastp.artifacts import check_tflite_content, tflite_error
from kerastp.backend import quiet_native_stderr
from kerastp.validation import check_frames, positive_int


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ImportError(
            "Running .tflite forecasters needs the LiteRT interpreter: "
            "`pip install ai-edge-litert`."
        ) from error
    return Interpreter


def tflite_ops(model_content):
    """Sorted names of the operators a `.tflite` flatbuffer uses (builtin and custom).

    Read from the flatbuffer itself, so delegates cannot hide any op.
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {
        value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")
    }
    model = schema.Model.GetRootAs(bytearray(model_content), 0)
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            ops.add(custom.decode() if isinstance(custom, bytes) else str(custom))
        else:
            ops.add(names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(ops)


def delegation(interpreter):
    """Which operators of an allocated LiteRT interpreter run inside a delegate (XNNPACK).

    A delegate replaces each partition of the graph it supports with one DELEGATE node,
    whose inputs and outputs are the partition's boundary tensors; the original nodes stay
    listed. The nodes of a partition are those reached backwards from its outputs without
    crossing its inputs; every other node runs on LiteRT's built-in kernels.

    Args:
        interpreter: an `ai_edge_litert.interpreter.Interpreter` after `allocate_tensors()`.

    Returns:
        dict with `nodes` (operators of the model), `delegated`, `partitions` (DELEGATE
        nodes), `delegated_ops` and `fallback_ops` ({op name: count}).
    """
    details = interpreter._get_ops_details()
    delegates = [d for d in details if d["op_name"] == "DELEGATE"]
    nodes = [d for d in details if d["op_name"] != "DELEGATE"]
    producer = {}
    for node in nodes:
        for tensor in node["outputs"]:
            producer[int(tensor)] = node["index"]
    by_index = {node["index"]: node for node in nodes}
    inside = set()
    for delegate in delegates:
        boundary = {int(t) for t in delegate["inputs"]}
        stack = [int(t) for t in delegate["outputs"]]
        seen = set()
        while stack:
            tensor = stack.pop()
            if tensor in boundary or tensor in seen or tensor not in producer:
                continue
            seen.add(tensor)
            index = producer[tensor]
            if index not in inside:
                inside.add(index)
                stack.extend(int(t) for t in by_index[index]["inputs"] if int(t) >= 0)
    counts = {"delegated_ops": {}, "fallback_ops": {}}
    for node in nodes:
        key = "delegated_ops" if node["index"] in inside else "fallback_ops"
        counts[key][node["op_name"]] = counts[key].get(node["op_name"], 0) + 1
    return {
        "nodes": len(nodes),
        "delegated": len(inside),
        "partitions": len(delegates),
        **{key: dict(sorted(value.items())) for key, value in counts.items()},
    }


class LiteForecaster:
    """A `.tflite` forecaster: NumPy frames in, NumPy forecast out.

    Signature, input and output names are read from the model (kerastp writes
    `serving_default` with input `frames` and output `forecast`). Quantised int8 / uint8
    inputs and outputs are scaled with the tensor's own quantisation parameters, so callers
    always pass and receive float32 frames in model scale.

    Args:
        path: path of a `.tflite` file, or the flatbuffer bytes.
        num_threads: int or None, interpreter threads.
        signature: str or None; the model's only (or `serving_default`) signature by default.

    Raises:
        FileNotFoundError: no file at `path`.
        kerastp.artifacts.CorruptArtifactError: (a `ValueError`) empty, truncated or foreign
            content, or a flatbuffer the interpreter refuses; the message names the file.

    Example:
    >>> forecaster = LiteForecaster("tflite/stlight_tiny.tflite")  # doctest: +SKIP
    >>> forecaster.predict(past).shape  # doctest: +SKIP
    (1, 10, 64, 64, 1)
    """

    def __init__(self, path, num_threads=None, signature=None):
        if isinstance(path, bytes | bytearray):
            content = bytes(path)
            self.path = None
        else:
            self.path = os.fspath(path)
            if not os.path.isfile(self.path):
                raise FileNotFoundError(f"TFLite model not found: {self.path}")
            with open(self.path, "rb") as f:
                content = f.read()
        if num_threads is not None:
            num_threads = positive_int("num_threads", num_threads)
        source = self.path or "the given bytes"
        check_tflite_content(content, source)
        interpreter_cls = _interpreter_class()
        try:
            self.interpreter = interpreter_cls(model_content=content, num_threads=num_threads)
        except (ValueError, RuntimeError) as error:
            raise tflite_error(source, content, error) from error
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise ValueError(f"{self.path or 'model'} has no signature; export it with kerastp")
        if signature is None:
            signature = (
                "serving_default" if "serving_default" in signatures else next(iter(signatures))
            )
        if signature not in signatures:
            raise ValueError(f"Unknown signature {signature!r}; the model has {sorted(signatures)}")
        self.signature = signature
        self.input_name = signatures[signature]["inputs"][0]
        self.output_name = signatures[signature]["outputs"][0]
        self.runner = self.interpreter.get_signature_runner(signature)
        self.input_details = self.runner.get_input_details()[self.input_name]
        self.output_details = self.runner.get_output_details()[self.output_name]
        self.ops = tflite_ops(content)
        self._first_run = True

    @property
    def input_shape(self):
        """(None, T_in, H, W, C): the input shape with a dynamic batch."""
        shape = list(self.input_details["shape_signature"])
        return (None, *[int(d) for d in shape[1:]])

    @property
    def input_frames(self):
        return self.input_shape[1]

    @property
    def output_frames(self):
        return int(self.output_details["shape_signature"][1])

    @property
    def height(self):
        return self.input_shape[2]

    @property
    def width(self):
        return self.input_shape[3]

    @property
    def channels(self):
        return self.input_shape[4]

    def _quantize(self, frames):
        dtype = self.input_details["dtype"]
        if np.issubdtype(dtype, np.floating):
            return frames.astype(dtype)
        scale, zero_point = self.input_details["quantization"]
        info = np.iinfo(dtype)
        q = np.round(frames / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)

    def _dequantize(self, values):
        if np.issubdtype(values.dtype, np.floating):
            return values.astype(np.float32)
        scale, zero_point = self.output_details["quantization"]
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)

    def predict(self, past):
        """Forecasts from `past` (B, T_in, H, W, C) float frames in model scale."""
        past = check_frames(past, "past", self.input_shape)
        if self._first_run:
            # The first run creates the XNNPACK delegate, which logs a line natively.
            with quiet_native_stderr():
                result = self.runner(**{self.input_name: self._quantize(past)})
            self._first_run = False
        else:
            result = self.runner(**{self.input_name: self._quantize(past)})
        return self._dequantize(result[self.output_name])


class StreamingForecaster:
    """Frame-by-frame forecasting for the edge: push frames, get a forecast once T_in are in.

    A ring buffer holds the last T_in frames of one stream; `push(frame)` stores a frame and
    returns None until the buffer is full, then the forecast from the latest T_in frames on
    every push. Works with any forecaster with `predict(past)` and a `(None, T_in, H, W, C)`
    `input_shape` (a `LiteForecaster`).

    Args:
        forecaster: a `LiteForecaster` (or an object with the same interface).

    Example:
    >>> stream = StreamingForecaster(LiteForecaster("tflite/stlight_tiny.tflite"))  # doctest: +SKIP
    >>> for frame in camera:  # (H, W, C) float frames in model scale  # doctest: +SKIP
    ...     forecast = stream.push(frame)  # None until 10 frames have arrived
    """

    def __init__(self, forecaster):
        shape = getattr(forecaster, "input_shape", None)
        if not callable(getattr(forecaster, "predict", None)) or shape is None or len(shape) != 5:
            raise ValueError(
                "`forecaster` must have `predict(past)` and a (None, T_in, H, W, C) "
                f"`input_shape`, such as a LiteForecaster; got {forecaster!r}"
            )
        self.forecaster = forecaster
        _, self.input_frames, *frame_shape = shape
        self.frame_shape = tuple(int(d) for d in frame_shape)
        self._buffer = np.zeros((self.input_frames, *self.frame_shape), np.float32)
        self._count = 0

    @property
    def ready(self):
        """Whether T_in frames have arrived since the last `reset()`."""
        return self._count >= self.input_frames

    def reset(self):
        """Forgets the buffered frames (a new stream, or a gap in the old one)."""
        self._buffer[:] = 0.0
        self._count = 0

    def window(self):
        """The buffered frames, oldest first, (T_in, H, W, C); only once `ready`."""
        if not self.ready:
            raise ValueError(f"only {self._count} of {self.input_frames} frames have been pushed")
        start = self._count % self.input_frames
        return np.concatenate([self._buffer[start:], self._buffer[:start]], axis=0)

    def push(self, frame):
        """Adds one (H, W, C) frame; returns the (T_out, H, W, C) forecast or None."""
        frame = check_frames(frame, "frame", self.frame_shape, hint=" (height, width, channels)")
        self._buffer[self._count % self.input_frames] = frame
        self._count += 1
        if not self.ready:
            return None
        return self.forecaster.predict(self.window()[None])[0]
