"""Verified export: `.keras`, SavedModel and TFLite, each with a JSON sidecar.

Every exporter writes to a temporary path beside the destination, reloads what it wrote, runs
it on a probe batch and compares the numbers with the Keras model. Only an artifact that
passes replaces the destination (by rename); one that fails is deleted and
`ExportVerificationError` is raised, so a previous artifact is never lost and a mismatched one
is never left behind. The sidecar `<artifact>.json` records the preset, the resolved config,
package versions, the data scale and the parity result.
"""

import contextlib
import datetime
import os
import re
import warnings
from pathlib import Path

import numpy as np

from kerastp.backend import quiet_native_stderr, require_tensorflow

tf = require_tensorflow()

import keras  # noqa: E402

from kerastp import options  # noqa: E402
from kerastp.forecasters import (  # noqa: E402
    INPUT_NAME,
    OUTPUT_NAME,
    SIGNATURE_KEY,
)
from kerastp.layers.depthwise import using_depthwise_implementation  # noqa: E402
from kerastp.layers.stl_mixer import using_float_tflite_layout  # noqa: E402
from kerastp.precision import float32_model  # noqa: E402
from kerastp.runs import DEFAULT_DATA_SCALE, RunRecord, sidecar_path  # noqa: E402
from kerastp.saving import (  # noqa: E402
    load_model,
    remove,
    replace,
    temporary_sibling,
    write_json,
)
from kerastp.validation import (  # noqa: E402
    check_output_dir,
    check_saved_model_target,
    finite_number,
)

#: The depth-wise form the graphs that TFLite conversions start from are traced with
#: (`kerastp.layers.depthwise`): "native" makes each dilated depth-wise convolution one
#: DEPTHWISE_CONV_2D in TFLite instead of SPACE_TO_BATCH_ND / conv / BATCH_TO_SPACE_ND (same
#: values); "keras" is the former export.
DEPTHWISE_FORM = "native"

#: The depth-wise form of the SavedModel served to users (`export_saved_model`): Keras' form,
#: which every TensorFlow kernel runs. TensorFlow's own CPU kernel of a dilated
#: `DepthwiseConv2dNative` exists only in its oneDNN build path, which TensorFlow turns on by
#: default only on CPUs with AVX-512 VNNI / BF16, AVX-VNNI or AMX; elsewhere (e.g. an AMD EPYC with
#: AVX2) running such a graph fails with "Current kernel implementation does not support
#: dilations".
SERVING_DEPTHWISE_FORM = "keras"

#: Largest max-abs difference accepted between an artifact and the Keras model.
TOLERANCES = {"keras": 1e-5, "saved_model": 1e-4, "tflite": 1e-4}

class ExportVerificationError(RuntimeError):
    """An exported artifact did not reproduce the Keras model's numbers."""


def versions():
    """Versions of the packages that wrote an artifact."""
    import kerastp

    found = {
        "kerastp": kerastp.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    with contextlib.suppress(ImportError):
        from importlib.metadata import version

        found["ai_edge_litert"] = version("ai-edge-litert")
    return found


def probe_batch(model, batch_size=2, seed=0):
    """A seeded batch of uniform [0, 1] frames of the model's input shape."""
    rng = np.random.default_rng(seed)
    return rng.random((batch_size, *model.input_signature_shape[1:]), dtype=np.float32)


def _reference(model, probe):
    return keras.ops.convert_to_numpy(model(probe, training=False))


def _parity(expected, got, tolerance, batch_sizes, kind):
    error = float(np.max(np.abs(expected - got)))
    result = {
        "max_abs_error": error,
        "tolerance": tolerance,
        "batch_sizes": list(batch_sizes),
        "passed": bool(error <= tolerance),
    }
    if not result["passed"]:
        raise ExportVerificationError(
            f"{kind} export does not reproduce the Keras model: max abs error {error:.3g} "
            f"> tolerance {tolerance:.3g}; nothing was written"
        )
    return result


def _sidecar(model, kind, path, parity, preset, data_scale, extra, training_backend=None):
    payload = {
        "artifact": kind,
        "path": Path(path).name,
        "preset": preset,
        "model_class": type(model).__name__,
        "config": model.get_config(),
        "signature": {
            "name": SIGNATURE_KEY,
            "inputs": {INPUT_NAME: list(model.input_signature_shape)},
            "outputs": {OUTPUT_NAME: [None, model.output_frames, *model.frame_shape]},
        },
        "data_scale": data_scale or DEFAULT_DATA_SCALE,
        # The Keras backend that trained the weights (the export itself runs on TensorFlow).
        "training_backend": training_backend or keras.backend.backend(),
        "parity": parity,
        "versions": versions(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    payload.update(extra or {})
    write_json(sidecar_path(path), payload)
    return payload


def export_keras(model, path, *, preset=None, data_scale=None, probe=None, training_backend=None):
    """Saves a `.keras` file, reloads it and checks it reproduces the model.

    Args:
        model: a kerastp `Forecaster`.
        path: destination ending in `.keras`.
        preset: str or None, recorded in the sidecar.
        data_scale: dict or None, what the model's numbers mean (sidecar).
        probe: (B, T_in, H, W, C) float32 frames to compare on; seeded noise by default.
        training_backend: the Keras backend that trained the weights, recorded in the
            sidecar; default the one running now.

    Returns:
        The sidecar dict.
    """
    model = float32_model(model)
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"`path` must end in .keras, got {str(path)!r}")
    probe = probe_batch(model) if probe is None else np.asarray(probe, np.float32)
    expected = _reference(model, probe)
    tmp_dir = temporary_sibling(path)
    try:
        tmp = tmp_dir / path.name
        model.save(tmp)
        reloaded = keras.saving.load_model(tmp)
        got = keras.ops.convert_to_numpy(reloaded(probe, training=False))
        parity = _parity(expected, got, TOLERANCES["keras"], [len(probe)], "Keras")
        replace(tmp, path)
    finally:
        remove(tmp_dir)
    return _sidecar(model, "keras", path, parity, preset, data_scale, None, training_backend)


#: TFLite conversions whose SavedModel is traced in STLight's float layout
#: (`kerastp.layers.stl_mixer.export_layout`; fp16 files run float32 kernels on CPUs); the
#: integer conversions, which it did not make faster (benchmarks/results/tflite_ops.md), and
#: the SavedModel export itself keep the plain graph.
FLOAT_LAYOUT_QUANTIZATIONS = ("none", "fp16")


def write_tflite_source(model, directory, quantize="none"):
    """Writes the SavedModel that a TFLite conversion of `quantize` starts from (not verified:
    `export_tflite` verifies the converted file).

    Args:
        model: a float32 kerastp `Forecaster` (`float32_model`).
        directory: destination directory.
        quantize: one of `QUANTIZATIONS`.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}, got quantize={quantize!r}")
    with using_float_tflite_layout(quantize in FLOAT_LAYOUT_QUANTIZATIONS):
        _write_saved_model(model, directory, DEPTHWISE_FORM)


def _write_saved_model(model, directory, depthwise_form):
    shape = model.input_signature_shape
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(frames):
        return {OUTPUT_NAME: model(frames, training=False)}

    with contextlib.redirect_stdout(None), using_depthwise_implementation(depthwise_form):
        archive.add_endpoint(
            name=SIGNATURE_KEY,
            fn=serve,
            input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)],
        )
        archive.write_out(os.fspath(directory), verbose=False)


def export_saved_model(
    model, path, *, preset=None, data_scale=None, probe=None, training_backend=None
):
    """Writes a SavedModel for serving and verifies it at two batch sizes.

    The `serving_default` signature takes `frames` (None, T_in, H, W, C) float32 and returns
    `forecast` (None, T_out, H, W, C) float32; the batch is dynamic.

    Args:
        model: a kerastp `Forecaster`.
        path: destination directory.
        preset, data_scale, probe: as in `export_keras`; the probe's first sample alone is
            also run, to check the dynamic batch.

    Returns:
        The sidecar dict.
    """
    path = check_saved_model_target(path)
    model = float32_model(model)
    probe = probe_batch(model, batch_size=3) if probe is None else np.asarray(probe, np.float32)
    batches = [probe[:1], probe] if len(probe) > 1 else [probe]
    tmp = temporary_sibling(path)
    try:
        _write_saved_model(model, tmp, SERVING_DEPTHWISE_FORM)
        loaded = tf.saved_model.load(os.fspath(tmp))
        signature = loaded.signatures[SIGNATURE_KEY]
        errors = []
        for batch in batches:
            got = signature(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME].numpy()
            errors.append((_reference(model, batch), got))
        expected = np.concatenate([e for e, _ in errors], axis=0)
        got = np.concatenate([g for _, g in errors], axis=0)
        parity = _parity(
            expected, got, TOLERANCES["saved_model"], [len(b) for b in batches], "SavedModel"
        )
        replace(tmp, path)
    finally:
        remove(tmp)
    return _sidecar(
        model, "saved_model", path, parity, preset, data_scale, None, training_backend
    )


#: TFLite conversions: float32, float16 weights, dynamic-range int8 weights, full int8
#: (float input and output), and full int8 with int8 input and output.
QUANTIZATIONS = options.QUANTIZATIONS

#: fp16 conversions must reproduce the Keras model within this max abs error.
FP16_TOLERANCE = 1e-2

#: Integer conversions (dynamic range, int8, int8 I/O) are judged by what they do to the
#: forecast: the relative increase of the MSE on held-out sequences (`validation_data`),
#: (mse_tflite - mse_keras) / mse_keras, must not exceed this (settable per export).
MAX_METRIC_INCREASE = options.MAX_METRIC_INCREASE

#: Without held-out sequences, integer conversions fall back to their error against the Keras
#: model, relative to the energy of the Keras output: mean((lite - keras)^2) / mean(keras^2).
QUANTIZED_MAX_RELATIVE_ERROR = {"fp16": 1e-3, "dynamic": 0.05, "int8": 0.05, "int8_io": 0.05}


def _mse(pred, true):
    """OpenSTL's MSE: per-frame sum of squared errors, averaged over sequences and frames."""
    return float(np.mean(np.sum((pred - true) ** 2, axis=(2, 3, 4))))


def _next_step(quantize):
    """What to try after a refused integer conversion: the gentler quantisations."""
    gentler = {"int8_io": ("int8", "dynamic", "fp16"), "int8": ("dynamic", "fp16")}
    options_left = gentler.get(quantize, ("fp16",))
    return "try " + " or ".join(f"--quantize {q}" for q in options_left)


def _quantized_parity(quantize, expected, got, sizes, validation, limits):
    """Judges a quantised conversion; raises `ExportVerificationError` when it fails."""
    parity = {
        "max_abs_error": float(np.max(np.abs(got - expected))),
        "relative_squared_error": float(
            np.mean((got - expected) ** 2) / max(np.mean(expected**2), 1e-12)
        ),
        "batch_sizes": sizes,
    }
    if quantize == "fp16":
        parity.update(judged_by="max_abs_error", tolerance=FP16_TOLERANCE)
        parity["passed"] = bool(parity["max_abs_error"] <= FP16_TOLERANCE)
        if not parity["passed"]:
            raise ExportVerificationError(
                f"TFLite fp16 export does not reproduce the Keras model: max abs error "
                f"{parity['max_abs_error']:.3g} > {FP16_TOLERANCE:.3g}; nothing was written"
            )
        return parity
    if validation is not None:
        keras_pred, lite_pred, future = validation
        mse_keras, mse_lite = _mse(keras_pred, future), _mse(lite_pred, future)
        increase = (mse_lite - mse_keras) / max(mse_keras, 1e-12)
        limit = limits["metric"]
        parity.update(
            judged_by="mse_increase_on_held_out_sequences",
            held_out_sequences=len(future),
            mse_keras=mse_keras,
            mse_tflite=mse_lite,
            mse_relative_increase=increase,
            tolerance=limit,
            passed=bool(increase <= limit),
        )
        if not parity["passed"]:
            raise ExportVerificationError(
                f"TFLite {quantize} export raises the MSE on {len(future)} held-out sequences "
                f"from {mse_keras:.4g} to {mse_lite:.4g} (+{100 * increase:.2f}%), above the "
                f"allowed +{100 * limit:.2f}% (`max_metric_increase`); nothing was written. "
                f"Next: {_next_step(quantize)}, or accept a larger increase with "
                "--max-metric-increase (`max_metric_increase`)"
            )
        return parity
    limit = limits["relative"]
    parity.update(judged_by="relative_squared_error", tolerance=limit)
    parity["passed"] = bool(parity["relative_squared_error"] <= limit)
    if not parity["passed"]:
        raise ExportVerificationError(
            f"TFLite {quantize} export is too far from the Keras model: relative squared "
            f"error {parity['relative_squared_error']:.3g} > {limit:.3g}; nothing was written"
        )
    return parity


def _float_nodes(content, float_layers):
    """The tensor names of a converted model produced inside the named Keras layers (or
    name scopes); raises `ValueError` naming any that match nothing.

    TFLite keeps TensorFlow's name scopes: an operator of layer `encoder_0` (called once or
    more) writes a tensor named `<model>_1/encoder_0_1/...` (one suffix per call).
    """
    if not float_layers:
        return []
    from kerastp.lite import LiteForecaster

    def scope(*layers):  # `<...>/layer/` or `<...>/layer_3/`, in the op's first name
        return re.compile(r"(^|/)(" + "|".join(map(re.escape, layers)) + r")(_\d+)?/")

    names = [d["name"] for d in LiteForecaster(content).interpreter.get_tensor_details()]
    missing = [
        layer
        for layer in float_layers
        if not any(scope(layer).search(n.split(";")[0]) for n in names)
    ]
    if missing:
        raise ValueError(
            f"`float_layers` {missing} name no layer (or name scope) of the converted model; "
            "give the names of the model's Keras layers (`[l.name for l in model.layers]`)"
        )
    pattern = scope(*float_layers)
    return sorted({n for n in names if pattern.search(n.split(";")[0])})


def convert_to_tflite(
    saved_model_dir, quantize="none", representative_data=None, float_ops=(), float_layers=()
):
    """Converts a kerastp SavedModel to a TFLite flatbuffer with builtin ops only.

    Args:
        saved_model_dir: a SavedModel written by kerastp.
        quantize: one of `QUANTIZATIONS`.
        representative_data: (N, T_in, H, W, C) float32 frames for int8 calibration (from the
            training data, in model scale); required for "int8" and "int8_io".
        float_ops: TFLite operator types ("GELU", "MUL", ...) an int8 conversion keeps in
            float (selective quantisation, TensorFlow's `QuantizationDebugger` denylist),
            with QUANTIZE / DEQUANTIZE around them.
        float_layers: names of the model's Keras layers whose operators an int8 conversion
            keeps in float.

    Returns:
        The flatbuffer bytes.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}, got quantize={quantize!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        os.fspath(saved_model_dir), signature_keys=[SIGNATURE_KEY]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize in options.CALIBRATED_QUANTIZATIONS:
        if representative_data is None or len(representative_data) == 0:
            raise ValueError(f"quantize={quantize!r} needs `representative_data` for calibration")
        samples = np.asarray(representative_data, np.float32)

        def representative():
            for sample in samples:
                yield {INPUT_NAME: sample[None]}

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if quantize == "int8_io":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    selective = quantize in options.CALIBRATED_QUANTIZATIONS and (float_ops or float_layers)
    # The converter's deprecation notice about tf.lite.Interpreter (kerastp runs LiteRT) and
    # its calibrator's native log lines are not the user's concern.
    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        if not selective:
            return converter.convert()
        # Layer names become tensor names through a first, fully integer conversion.
        float_nodes = _float_nodes(converter.convert(), float_layers) if float_layers else []
        # Selective quantisation: the float operators need builtin float kernels too.
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        debug_options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_ops=list(float_ops) or None,
            denylisted_nodes=float_nodes or None,
        )
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=lambda: ([sample[None]] for sample in samples[:1]),
            debug_options=debug_options,
        )
        # The debugger's own `get_nondebug_quantized_model()` keeps float input and output;
        # its calibrated model is quantised here with the I/O types the conversion asks for.
        from tensorflow.lite.python import convert as lite_convert

        io_type = tf.int8 if quantize == "int8_io" else tf.float32
        content = lite_convert.mlir_quantize(
            debugger.calibrated_model,
            disable_per_channel=converter._experimental_disable_per_channel,
            input_data_type=io_type,
            output_data_type=io_type,
            denylisted_ops=debug_options.denylisted_ops,
            denylisted_nodes=debug_options.denylisted_nodes,
        )
    from kerastp.lite import tflite_ops

    absent = sorted(set(float_ops) - set(tflite_ops(content)))
    if absent:
        raise ValueError(
            f"`float_ops` {absent} name no operator of the converted model; its operators: "
            f"{', '.join(tflite_ops(content))}"
        )
    return content


def export_tflite(
    model,
    path,
    *,
    quantize="none",
    representative_data=None,
    validation_data=None,
    max_metric_increase=MAX_METRIC_INCREASE,
    max_relative_error=None,
    preset=None,
    data_scale=None,
    probe=None,
    training_backend=None,
    float_ops=None,
    float_layers=None,
):
    """Writes a TFLite model (builtin ops only) and verifies it with LiteRT before keeping it.

    The model keeps the dynamic batch (the interpreter resizes its input); it is run at two
    batch sizes with `ai_edge_litert` and compared with the Keras model:

    - float32 must agree within `TOLERANCES["tflite"]` (max abs error, 1e-4);
    - fp16 within `FP16_TOLERANCE` (max abs error, 1e-2);
    - dynamic-range, int8 and int8-I/O are judged by the forecast: with `validation_data`
      (held-out `(past, future)` sequences) the relative increase of the MSE over the Keras
      model's must not exceed `max_metric_increase`; without it, by the relative squared
      error against the Keras model on the probe (`max_relative_error`, default
      `QUANTIZED_MAX_RELATIVE_ERROR`).

    A conversion that fails leaves no file behind. The operator list, the errors and the
    metrics go into the sidecar.

    Args:
        model: a kerastp `Forecaster`.
        path: destination ending in `.tflite`.
        quantize: one of `QUANTIZATIONS`.
        representative_data: calibration frames for int8, (N, T_in, H, W, C) from the
            training data (default: the probe batch, which calibrates poorly).
        validation_data: optional `(past, future)` arrays of held-out sequences.
        max_metric_increase: float, allowed relative MSE increase for integer conversions.
        max_relative_error: float or None, the fallback threshold without `validation_data`.
        preset, data_scale, probe: as in `export_saved_model`.
        float_ops, float_layers: what an int8 conversion keeps in float (see
            `convert_to_tflite`); None: the model's measured choice
            (`Forecaster.int8_float_ops` / `int8_float_layers`), () for fully integer.

    Returns:
        The sidecar dict.
    """
    if float_ops is None:
        float_ops = getattr(model, "int8_float_ops", ())
    if float_layers is None:
        float_layers = getattr(model, "int8_float_layers", ())
    float_ops, float_layers = tuple(float_ops), tuple(float_layers)
    for what, names in (("float_ops", float_ops), ("float_layers", float_layers)):
        if not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"`{what}` must be names (strings), got {what}={names!r}")
    model = float32_model(model)
    from kerastp.lite import LiteForecaster

    path = Path(path)
    if path.suffix != ".tflite":
        raise ValueError(f"`path` must end in .tflite, got {str(path)!r}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}, got quantize={quantize!r}")
    if not float(max_metric_increase) >= 0.0:
        raise ValueError(
            f"`max_metric_increase` must be >= 0, got max_metric_increase={max_metric_increase!r}"
        )
    validation = _validation_arrays(model, validation_data)
    probe = probe_batch(model, batch_size=3) if probe is None else np.asarray(probe, np.float32)
    if representative_data is None and quantize in options.CALIBRATED_QUANTIZATIONS:
        representative_data = probe
    batches = [probe[:1], probe] if len(probe) > 1 else [probe]
    tmp_dir = temporary_sibling(path)
    try:
        write_tflite_source(model, tmp_dir / "saved_model", quantize)
        content = convert_to_tflite(
            tmp_dir / "saved_model", quantize, representative_data, float_ops, float_layers
        )
        forecaster = _CheckedLite(LiteForecaster(content), quantize)
        expected = np.concatenate([_reference(model, b) for b in batches], axis=0)
        got = np.concatenate([forecaster.predict(b) for b in batches], axis=0)
        sizes = [len(b) for b in batches]
        if quantize == "none":
            parity = _parity(expected, got, TOLERANCES["tflite"], sizes, "TFLite")
        else:
            judged = None
            if validation is not None and quantize != "fp16":
                past, future = validation
                judged = (
                    _predict_in_batches(lambda b: _reference(model, b), past),
                    _predict_in_batches(forecaster.predict, past),
                    future,
                )
            limits = {
                "metric": float(max_metric_increase),
                "relative": (
                    QUANTIZED_MAX_RELATIVE_ERROR[quantize]
                    if max_relative_error is None
                    else float(max_relative_error)
                ),
            }
            parity = _quantized_parity(quantize, expected, got, sizes, judged, limits)
        tmp = tmp_dir / path.name
        tmp.write_bytes(content)
        replace(tmp, path)
    finally:
        remove(tmp_dir)
    extra = {"ops": forecaster.ops, "quantization": quantize, "bytes": len(content)}
    if quantize in options.CALIBRATED_QUANTIZATIONS:
        extra.update(
            float_ops=list(float_ops),
            float_layers=list(float_layers),
            fully_integer=not (float_ops or float_layers),
        )
    return _sidecar(model, "tflite", path, parity, preset, data_scale, extra, training_backend)


class _CheckedLite:
    """A converted model under verification: a failure to run is a failed verification."""

    def __init__(self, forecaster, quantize):
        self.forecaster, self.quantize = forecaster, quantize
        self.ops = forecaster.ops

    def predict(self, past):
        try:
            return self.forecaster.predict(past)
        except RuntimeError as error:
            raise ExportVerificationError(
                f"the TFLite {self.quantize} conversion does not run ({error}); nothing was "
                f"written. Next: {_next_step(self.quantize)}"
            ) from error


def _predict_in_batches(predict, past, batch_size=16):
    return np.concatenate(
        [predict(past[i : i + batch_size]) for i in range(0, len(past), batch_size)], axis=0
    )


def _validation_arrays(model, validation_data):
    """Checks `(past, future)` held-out arrays against the model's contract."""
    if validation_data is None:
        return None
    from kerastp.models.base import check_frames_array

    try:
        past, future = validation_data
    except (TypeError, ValueError) as error:
        raise ValueError(
            "`validation_data` must be a (past, future) pair of arrays of held-out sequences"
        ) from error
    shape = dict(height=model.height, width=model.width, channels=model.channels)
    past = check_frames_array(
        past, name="validation_data[0] (past)", frames_per_sequence=model.input_frames, **shape
    )
    future = check_frames_array(
        future, name="validation_data[1] (future)", frames_per_sequence=model.output_frames, **shape
    )
    if len(past) != len(future):
        raise ValueError(
            f"`validation_data` holds {len(past)} past and {len(future)} future sequences"
        )
    return past, future


def export_all(
    model,
    name,
    *,
    saved_model_dir="saved_models",
    tflite_dir="tflite",
    preset=None,
    data_scale=None,
    probe=None,
):
    """Writes and verifies `<saved_model_dir>/<name>.keras`, `<saved_model_dir>/<name>/`
    (SavedModel) and `<tflite_dir>/<name>.tflite`.

    Returns:
        dict mapping "keras", "saved_model", "tflite" to (path, sidecar).

    Raises:
        FileExistsError: before anything is written, where the SavedModel would replace a
            directory that is not a SavedModel (`check_saved_model_target`).
    """
    check_saved_model_target(_targets(name, saved_model_dir, tflite_dir)["saved_model"][1])
    return {
        kind: (path, exporter(model, path, preset=preset, data_scale=data_scale, probe=probe))
        for kind, (exporter, path) in _targets(name, saved_model_dir, tflite_dir).items()
    }


def _targets(name, saved_model_dir, tflite_dir):
    saved_model_dir, tflite_dir = Path(saved_model_dir), Path(tflite_dir)
    return {
        "keras": (export_keras, saved_model_dir / f"{name}.keras"),
        "saved_model": (export_saved_model, saved_model_dir / name),
        "tflite": (export_tflite, tflite_dir / f"{name}.tflite"),
    }


def quantization_data(model, quantize, source, sequences=64):
    """Calibration frames and held-out `(past, future)` for a quantised export, drawn from
    `source` (a `kerastp.data.sources.DataSource`, normally the one the model was trained
    on: `RunRecord.of(path).source()`).

    Returns:
        (representative_data or None, validation_data or None); both None for fp16 / float.
    """
    if quantize not in options.INTEGER_QUANTIZATIONS:
        return None, None
    representative = None
    if quantize in options.CALIBRATED_QUANTIZATIONS:
        representative = source.calibration_samples(model, sequences)
    past, future = source.held_out(model, sequences)
    return representative, (past[:sequences], future[:sequences])


def _default_name(model_path, record):
    """Artifacts are named after the run's preset, or the file when nothing is recorded; a
    run fine-tuned from a pretrained model (`init` in its config) after its run directory,
    so that its files do not take the shipped model's name."""
    if record.config.get("init"):
        return record.run_dir.name
    return record.preset or Path(model_path).stem


def export_artifacts(
    model_path,
    formats=("keras", "saved_model", "tflite"),
    name=None,
    saved_model_dir="saved_models",
    tflite_dir="tflite",
    quantize="none",
    data=None,
    mnist_path=None,
    max_metric_increase=MAX_METRIC_INCREASE,
    float_ops=None,
    float_layers=None,
):
    """Loads a trained model (`.keras` file or run directory) and exports the given formats.

    Args:
        model_path: `.keras` file or a kerastp run directory.
        formats: any of "keras", "saved_model", "tflite".
        name: artifact base name; default the preset recorded with the model (the run
            directory's name for a fine-tuned pretrained model), else the file's stem. A
            quantised TFLite file is named `<name>_<quantize>.tflite`.
        saved_model_dir: where `.keras` and SavedModel go.
        tflite_dir: where `.tflite` goes.
        quantize: TFLite quantisation, one of `QUANTIZATIONS`.
        data: the data source int8 calibration (training split) and the held-out sequences
            that judge integer conversions come from; None: the one the run was trained on
            (`kerastp.runs.RunRecord`), else procedural Moving MNIST.
        mnist_path: MNIST location for Moving MNIST digits.
        max_metric_increase: allowed relative MSE increase of integer conversions.
        float_ops, float_layers: what int8 keeps in float (`export_tflite`).

    Returns:
        dict mapping each format to (path, sidecar).
    """
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = sorted(set(formats) - set(options.EXPORT_FORMATS))
    if unknown or not formats:
        raise ValueError(
            f"Unknown export formats {unknown or 'none given'}; valid: "
            f"{', '.join(options.EXPORT_FORMATS)}"
        )
    options.check_choice("quantize", quantize, QUANTIZATIONS)
    # Every argument is checked before the model is loaded and anything is written.
    finite_number("max_metric_increase", max_metric_increase, 0.0)
    if name is not None and (
        not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..")
    ):
        raise ValueError(f"`name` must be a plain file name (no folders), got name={name!r}")
    if "keras" in formats or "saved_model" in formats:
        check_output_dir(saved_model_dir, "saved_model_dir")
    if "tflite" in formats:
        check_output_dir(tflite_dir, "tflite_dir")
    from kerastp.pretrained import resolve_model_path

    model_path = resolve_model_path(model_path)
    model = load_model(model_path)
    record = RunRecord.of(model_path)
    preset = record.preset
    data_scale = record.data_scale
    # A bare .keras file does not say which backend trained it; a run directory does.
    trained_on = getattr(record, "training_backend", None) or "unknown"
    name = name or _default_name(model_path, record)
    targets = _targets(name, saved_model_dir, tflite_dir)
    if "saved_model" in formats:
        # e.g. `--model mmnist` from a source checkout: saved_models/mmnist/ holds the
        # shipped files, which an export must not replace.
        check_saved_model_target(targets["saved_model"][1])
    # Everything the exports need is gathered before the first artifact is written.
    representative, validation = (None, None)
    if "tflite" in formats and quantize in options.INTEGER_QUANTIZATIONS:
        source = record.source(data, mnist_path=mnist_path)
        source.check()
        source.check_model(model)
        representative, validation = quantization_data(model, quantize, source)
    written = {}
    for kind in ("keras", "saved_model"):
        if kind in formats:
            exporter, path = targets[kind]
            written[kind] = (
                path,
                exporter(
                    model, path, preset=preset, data_scale=data_scale,
                    training_backend=trained_on,
                ),
            )  # fmt: skip
    if "tflite" in formats:
        path = targets["tflite"][1]
        if quantize != "none" and not name.endswith(f"_{quantize}"):
            path = path.with_name(f"{name}_{quantize}.tflite")
        written["tflite"] = (
            path,
            export_tflite(
                model,
                path,
                quantize=quantize,
                representative_data=representative,
                validation_data=validation,
                max_metric_increase=max_metric_increase,
                preset=preset,
                data_scale=data_scale,
                training_backend=trained_on,
                float_ops=float_ops,
                float_layers=float_layers,
            ),
        )
    return written
