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
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from kerastp.backend import require_tensorflow

tf = require_tensorflow()

import keras  # noqa: E402

from kerastp.artifacts import (  # noqa: E402
    CorruptArtifactError,
    check_keras_archive,
    check_saved_model_dir,
    saved_model_error,
)
from kerastp.precision import float32_model  # noqa: E402
from kerastp.validation import check_output_dir, finite_number  # noqa: E402

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "frames"
OUTPUT_NAME = "forecast"

#: Largest max-abs difference accepted between an artifact and the Keras model.
TOLERANCES = {"keras": 1e-5, "saved_model": 1e-4, "tflite": 1e-4}

DEFAULT_DATA_SCALE = {
    "name": "unit",
    "description": "frames in [0, 1] (Moving MNIST: uint8 / 255)",
    "range": [0.0, 1.0],
}


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


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_sibling(path):
    """A private temporary directory beside `path` (same file system, so renames are atomic).

    First puts back a previous artifact that a crash left aside mid-swap (see `_replace`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.with_name(f".{path.name}.old")
    if old.is_dir() and not path.exists():
        os.replace(old, path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _replace(src, dst):
    """Moves a verified `src` onto `dst`, replacing any previous artifact.

    A file is replaced by one atomic rename. A directory (SavedModel) takes two: the old one
    moves aside to `.<name>.old` first; should a crash fall between the renames, the next
    export to that path moves it back before anything else (`_tmp_sibling`).
    """
    old = dst.with_name(f".{dst.name}.old")
    if dst.is_dir() and not dst.is_symlink():
        _remove(old)
        os.replace(dst, old)
        os.replace(src, dst)
        _remove(old)
    else:
        os.replace(src, dst)


def sidecar_path(path):
    """`<artifact>.json`: where an artifact's sidecar lives."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_json(path, payload):
    """Writes `payload` as JSON atomically: a temporary file beside `path`, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_keras_atomic(model, path):
    """Saves `model` as a `.keras` file atomically; returns the path.

    The archive is written beside `path`, checked (a complete zip whose every member passes
    its CRC, with Keras' config), then renamed onto `path`: a save that fails or is killed
    leaves any previous file intact and no temporary behind.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"`path` must end in .keras, got {str(path)!r}")
    tmp_dir = _tmp_sibling(path)
    try:
        tmp = tmp_dir / path.name
        model.save(tmp)
        check_keras_archive(tmp)
        _replace(tmp, path)
    finally:
        _remove(tmp_dir)
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _sidecar(model, kind, path, parity, preset, data_scale, extra):
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
        "parity": parity,
        "versions": versions(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    payload.update(extra or {})
    write_json(sidecar_path(path), payload)
    return payload


def export_keras(model, path, *, preset=None, data_scale=None, probe=None):
    """Saves a `.keras` file, reloads it and checks it reproduces the model.

    Args:
        model: a kerastp `Forecaster`.
        path: destination ending in `.keras`.
        preset: str or None, recorded in the sidecar.
        data_scale: dict or None, what the model's numbers mean (sidecar).
        probe: (B, T_in, H, W, C) float32 frames to compare on; seeded noise by default.

    Returns:
        The sidecar dict.
    """
    model = float32_model(model)
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"`path` must end in .keras, got {str(path)!r}")
    probe = probe_batch(model) if probe is None else np.asarray(probe, np.float32)
    expected = _reference(model, probe)
    tmp_dir = _tmp_sibling(path)
    try:
        tmp = tmp_dir / path.name
        model.save(tmp)
        reloaded = keras.saving.load_model(tmp)
        got = keras.ops.convert_to_numpy(reloaded(probe, training=False))
        parity = _parity(expected, got, TOLERANCES["keras"], [len(probe)], "Keras")
        _replace(tmp, path)
    finally:
        _remove(tmp_dir)
    return _sidecar(model, "keras", path, parity, preset, data_scale, None)


def _write_saved_model(model, directory):
    shape = model.input_signature_shape
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(frames):
        return {OUTPUT_NAME: model(frames, training=False)}

    archive.add_endpoint(
        name=SIGNATURE_KEY,
        fn=serve,
        input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)],
    )
    with contextlib.redirect_stdout(None):
        archive.write_out(os.fspath(directory), verbose=False)


def load_saved_model(directory):
    """Loads a kerastp SavedModel directory; checks it has the `serving_default` signature.

    Returns:
        The loaded object (`.signatures[SIGNATURE_KEY]` is the forecast function; keep the
        object alive while using it).

    Raises:
        FileNotFoundError: no directory, or no saved_model.pb in it.
        kerastp.artifacts.CorruptArtifactError: (a `ValueError`) an unreadable graph, missing
            or truncated variables, or no `serving_default` signature; the message names the
            directory.
    """
    directory = check_saved_model_dir(directory)
    try:
        loaded = tf.saved_model.load(os.fspath(directory))
    except Exception as error:  # protobuf, I/O and checkpoint errors alike
        raise saved_model_error(directory, error) from error
    signatures = getattr(loaded, "signatures", None) or {}
    if SIGNATURE_KEY not in signatures:
        raise CorruptArtifactError(
            f"{directory} is not a kerastp SavedModel: no {SIGNATURE_KEY!r} signature "
            f"(it has {sorted(signatures)})"
        )
    return loaded


def run_saved_model(directory, frames):
    """Runs a kerastp SavedModel's `serving_default` on NumPy frames."""
    loaded = load_saved_model(directory)
    signature = loaded.signatures[SIGNATURE_KEY]
    return signature(**{INPUT_NAME: tf.constant(frames, tf.float32)})[OUTPUT_NAME].numpy()


def export_saved_model(model, path, *, preset=None, data_scale=None, probe=None):
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
    model = float32_model(model)
    path = Path(path)
    probe = probe_batch(model, batch_size=3) if probe is None else np.asarray(probe, np.float32)
    batches = [probe[:1], probe] if len(probe) > 1 else [probe]
    tmp = _tmp_sibling(path)
    try:
        _write_saved_model(model, tmp)
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
        _replace(tmp, path)
    finally:
        _remove(tmp)
    return _sidecar(model, "saved_model", path, parity, preset, data_scale, None)


#: TFLite conversions: float32, float16 weights, dynamic-range int8 weights, full int8
#: (float input and output), and full int8 with int8 input and output.
QUANTIZATIONS = ("none", "fp16", "dynamic", "int8", "int8_io")

#: fp16 conversions must reproduce the Keras model within this max abs error.
FP16_TOLERANCE = 1e-2

#: Integer conversions (dynamic range, int8, int8 I/O) are judged by what they do to the
#: forecast: the relative increase of the MSE on held-out sequences (`validation_data`),
#: (mse_tflite - mse_keras) / mse_keras, must not exceed this (settable per export).
MAX_METRIC_INCREASE = 0.10

#: Without held-out sequences, integer conversions fall back to their error against the Keras
#: model, relative to the energy of the Keras output: mean((lite - keras)^2) / mean(keras^2).
QUANTIZED_MAX_RELATIVE_ERROR = {"fp16": 1e-3, "dynamic": 0.05, "int8": 0.05, "int8_io": 0.05}


def _mse(pred, true):
    """OpenSTL's MSE: per-frame sum of squared errors, averaged over sequences and frames."""
    return float(np.mean(np.sum((pred - true) ** 2, axis=(2, 3, 4))))


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
                f"allowed +{100 * limit:.2f}% (`max_metric_increase`); nothing was written"
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


def convert_to_tflite(saved_model_dir, quantize="none", representative_data=None):
    """Converts a kerastp SavedModel to a TFLite flatbuffer with builtin ops only.

    Args:
        saved_model_dir: a SavedModel written by kerastp.
        quantize: one of `QUANTIZATIONS`.
        representative_data: (N, T_in, H, W, C) float32 frames for int8 calibration (from the
            training data, in model scale); required for "int8" and "int8_io".

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
    if quantize in ("int8", "int8_io"):
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
    return converter.convert()


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

    Returns:
        The sidecar dict.
    """
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
    if representative_data is None and quantize in ("int8", "int8_io"):
        representative_data = probe
    batches = [probe[:1], probe] if len(probe) > 1 else [probe]
    tmp_dir = _tmp_sibling(path)
    try:
        _write_saved_model(model, tmp_dir / "saved_model")
        content = convert_to_tflite(tmp_dir / "saved_model", quantize, representative_data)
        forecaster = LiteForecaster(content)
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
        _replace(tmp, path)
    finally:
        _remove(tmp_dir)
    extra = {"ops": forecaster.ops, "quantization": quantize, "bytes": len(content)}
    return _sidecar(model, "tflite", path, parity, preset, data_scale, extra)


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
    """
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


def _recorded(model_path, key):
    """`key` of the sidecar next to an artifact, or of its run directory's config.json."""
    model_path = Path(model_path)
    candidates = [sidecar_path(model_path)]
    run_dir = model_path if model_path.is_dir() else model_path.parent
    candidates += [run_dir / "config.json", run_dir.parent / "config.json"]
    for candidate in candidates:
        if candidate.is_file():
            with contextlib.suppress(ValueError, OSError):
                value = json.loads(candidate.read_text()).get(key)
                if value:
                    return value
    return None


def _preset_of(model_path):
    """The preset recorded next to a `.keras` file or in its run directory, if any."""
    return _recorded(model_path, "preset")


def recorded_data_scale(model_path):
    """What a saved model's numbers mean: the `data_scale` recorded in its sidecar or run.

    For a model trained on the user's own arrays this holds the fitted normalisation
    (`{"name": "normalization", "normalization": {...}}`); None when nothing is recorded.
    """
    return _recorded(model_path, "data_scale")


def calibration_frames(model, data="procedural", num_sequences=64, mnist_path=None, seed=0):
    """Training-split Moving MNIST inputs for int8 calibration, (N, T_in, H, W, C) float32."""
    return _moving_mnist_pairs(model, "train", data, num_sequences, mnist_path, seed)[0]


def held_out_sequences(model, data="procedural", num_sequences=64, mnist_path=None, seed=0):
    """Test-split Moving MNIST `(past, future)` (test digits) to judge quantised exports."""
    return _moving_mnist_pairs(model, "test", data, num_sequences, mnist_path, seed)


def _moving_mnist_pairs(model, split, data, num_sequences, mnist_path, seed):
    from kerastp.data import moving_mnist_dataset

    dataset = moving_mnist_dataset(
        data,
        split,
        batch_size=num_sequences,
        input_frames=model.input_frames,
        output_frames=model.output_frames,
        image_size=model.height,
        num_sequences=num_sequences,
        seed=seed,
        path=mnist_path,
    )
    past, future = next(iter(dataset))
    return past.numpy(), future.numpy()


def recorded_run_config(model_path):
    """The `config.json` of the run a model comes from (its run directory, or the one its
    `.keras` file sits in or under), or None."""
    model_path = Path(model_path)
    run_dir = model_path if model_path.is_dir() else model_path.parent
    for candidate in (run_dir / "config.json", run_dir.parent / "config.json"):
        if candidate.is_file():
            with contextlib.suppress(ValueError, OSError):
                return json.loads(candidate.read_text())
    return None


def quantization_data(model, quantize, data=None, run=None, mnist_path=None, sequences=64):
    """Calibration frames and held-out `(past, future)` for a quantised export, drawn from the
    data the model was trained on.

    `data` (or, when None, the run's recorded data source, else "procedural") decides:
    Moving MNIST draws training-split and test-digit sequences; "radar" the windows of the
    training and validation events; "arrays" the training and validation windows of the
    run's file with its recorded normalisation.

    Returns:
        (representative_data or None, validation_data or None); both None for fp16 / float.
    """
    if quantize not in ("dynamic", "int8", "int8_io"):
        return None, None
    run = run or {}
    source = data or run.get("data") or "procedural"
    frames = {"input_frames": model.input_frames, "output_frames": model.output_frames}
    if source == "radar":
        from kerastp.data import radar

        common = {
            "path": run.get("radar_path"),
            "resolution": run.get("radar_resolution") or model.height,
            **frames,
        }
        train_past, _ = radar.radar_arrays("train", **common)
        validation = radar.radar_arrays("val", **common)
    elif source == "arrays":
        from kerastp.data import arrays

        scale = run.get("data_scale") or {}
        if not run.get("data_path") or scale.get("name") != "normalization":
            raise ValueError(
                "Quantising a model trained on your own arrays needs its run's config.json "
                "(data_path and normalisation); export from the run directory"
            )
        common = {
            "key": run.get("data_key"),
            "stride": run.get("stride", 1),
            "seed": run.get("seed", 0),
            "normalization": arrays.Normalization.from_config(scale["normalization"]),
            **frames,
        }
        train_past, _, _ = arrays.prepare_arrays(run["data_path"], "train", **common)
        past, future, _ = arrays.prepare_arrays(run["data_path"], "val", **common)
        validation = (past[:sequences], future[:sequences])
    else:
        path = mnist_path or run.get("mnist_path")
        train_past = calibration_frames(model, source, sequences, mnist_path=path)
        validation = held_out_sequences(model, source, sequences, mnist_path=path)
    representative = train_past[:sequences] if quantize in ("int8", "int8_io") else None
    return representative, validation


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
):
    """Loads a trained model (`.keras` file or run directory) and exports the given formats.

    Args:
        model_path: `.keras` file or a kerastp run directory.
        formats: any of "keras", "saved_model", "tflite".
        name: artifact base name; default the preset recorded with the model, else the
            file's stem. A quantised TFLite file is named `<name>_<quantize>.tflite`.
        saved_model_dir: where `.keras` and SavedModel go.
        tflite_dir: where `.tflite` goes.
        quantize: TFLite quantisation, one of `QUANTIZATIONS`.
        data: where int8 calibration (training split) and the held-out sequences that judge
            integer conversions come from; None: the data the run was trained on (see
            `quantization_data`), else procedural Moving MNIST.
        mnist_path: MNIST location for Moving MNIST digits.
        max_metric_increase: allowed relative MSE increase of integer conversions.

    Returns:
        dict mapping each format to (path, sidecar).
    """
    from kerastp.training import load_model

    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = sorted(set(formats) - {"keras", "saved_model", "tflite"})
    if unknown or not formats:
        raise ValueError(
            f"Unknown export formats {unknown or 'none given'}; valid: keras, saved_model, tflite"
        )
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}, got quantize={quantize!r}")
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
    model = load_model(model_path)
    preset = _preset_of(model_path)
    data_scale = recorded_data_scale(model_path)
    name = name or preset or Path(model_path).stem
    targets = _targets(name, saved_model_dir, tflite_dir)
    # Everything the exports need is gathered before the first artifact is written.
    representative, validation = (None, None)
    if "tflite" in formats:
        representative, validation = quantization_data(
            model, quantize, data, recorded_run_config(model_path), mnist_path
        )
    written = {}
    for kind in ("keras", "saved_model"):
        if kind in formats:
            exporter, path = targets[kind]
            written[kind] = (path, exporter(model, path, preset=preset, data_scale=data_scale))
    if "tflite" in formats:
        path = targets["tflite"][1]
        if quantize != "none":
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
            ),
        )
    return written
