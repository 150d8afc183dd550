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
    """A private temporary directory beside `path` (same file system, so renames are atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _replace(src, dst):
    """Moves a verified `src` onto `dst`, replacing any previous artifact."""
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old")
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


def run_saved_model(directory, frames):
    """Runs a kerastp SavedModel's `serving_default` on NumPy frames."""
    loaded = tf.saved_model.load(os.fspath(directory))
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

#: Quantised conversions are judged by their error against the Keras model, relative to the
#: energy of the Keras output: mean((lite - keras)^2) / mean(keras^2).
QUANTIZED_MAX_RELATIVE_ERROR = {"fp16": 1e-3, "dynamic": 0.05, "int8": 0.05, "int8_io": 0.05}


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
    max_relative_error=None,
    preset=None,
    data_scale=None,
    probe=None,
):
    """Writes a TFLite model (builtin ops only) and verifies it with LiteRT before keeping it.

    The model keeps the dynamic batch (the interpreter resizes its input); it is run at two
    batch sizes with `ai_edge_litert` and compared with the Keras model. float32 must agree
    within `TOLERANCES["tflite"]` (max abs error); quantised models within
    `max_relative_error` of relative squared error (default `QUANTIZED_MAX_RELATIVE_ERROR`).
    The operator list and the measured errors go into the sidecar.

    Args:
        model: a kerastp `Forecaster`.
        path: destination ending in `.tflite`.
        quantize: one of `QUANTIZATIONS`.
        representative_data: calibration frames for int8 (default: the probe batch; pass
            training sequences for a useful calibration).
        max_relative_error: float or None, the refusal threshold for quantised models.
        preset, data_scale, probe: as in `export_saved_model`.

    Returns:
        The sidecar dict.
    """
    from kerastp.lite import LiteForecaster

    path = Path(path)
    if path.suffix != ".tflite":
        raise ValueError(f"`path` must end in .tflite, got {str(path)!r}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}, got quantize={quantize!r}")
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
            limit = (
                QUANTIZED_MAX_RELATIVE_ERROR[quantize]
                if max_relative_error is None
                else float(max_relative_error)
            )
            relative = float(np.mean((got - expected) ** 2) / max(np.mean(expected**2), 1e-12))
            parity = {
                "max_abs_error": float(np.max(np.abs(got - expected))),
                "relative_squared_error": relative,
                "tolerance": limit,
                "batch_sizes": sizes,
                "passed": bool(relative <= limit),
            }
            if not parity["passed"]:
                raise ExportVerificationError(
                    f"TFLite {quantize} export is too far from the Keras model: relative squared "
                    f"error {relative:.3g} > {limit:.3g}; nothing was written"
                )
        tmp = tmp_dir / path.name
        tmp.write_bytes(content)
        _replace(tmp, path)
    finally:
        _remove(tmp_dir)
    extra = {"ops": forecaster.ops, "quantization": quantize, "bytes": len(content)}
    return _sidecar(model, "tflite", path, parity, preset, data_scale, extra)


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


def _preset_of(model_path):
    """The preset recorded next to a `.keras` file or in its run directory, if any."""
    model_path = Path(model_path)
    candidates = [sidecar_path(model_path)]
    run_dir = model_path if model_path.is_dir() else model_path.parent
    candidates += [run_dir / "config.json", run_dir.parent / "config.json"]
    for candidate in candidates:
        if candidate.is_file():
            with contextlib.suppress(ValueError, OSError):
                preset = json.loads(candidate.read_text()).get("preset")
                if preset:
                    return preset
    return None


def calibration_frames(model, data="procedural", num_sequences=64, mnist_path=None, seed=0):
    """Training-split Moving MNIST inputs for int8 calibration, (N, T_in, H, W, C) float32."""
    from kerastp.data import moving_mnist_dataset

    dataset = moving_mnist_dataset(
        data,
        "train",
        batch_size=num_sequences,
        input_frames=model.input_frames,
        output_frames=model.output_frames,
        image_size=model.height,
        num_sequences=num_sequences,
        seed=seed,
        path=mnist_path,
    )
    past, _ = next(iter(dataset))
    return past.numpy()


def export_artifacts(
    model_path,
    formats=("keras", "saved_model", "tflite"),
    name=None,
    saved_model_dir="saved_models",
    tflite_dir="tflite",
    quantize="none",
    data="procedural",
    mnist_path=None,
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
        data, mnist_path: where int8 calibration sequences come from (training split).

    Returns:
        dict mapping each format to (path, sidecar).
    """
    from kerastp.training import load_model

    unknown = sorted(set(formats) - {"keras", "saved_model", "tflite"})
    if unknown:
        raise ValueError(f"Unknown export formats {unknown}; valid: keras, saved_model, tflite")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}, got quantize={quantize!r}")
    model = load_model(model_path)
    preset = _preset_of(model_path)
    name = name or preset or Path(model_path).stem
    targets = _targets(name, saved_model_dir, tflite_dir)
    written = {}
    for kind in ("keras", "saved_model"):
        if kind in formats:
            exporter, path = targets[kind]
            written[kind] = (path, exporter(model, path, preset=preset))
    if "tflite" in formats:
        path = targets["tflite"][1]
        kwargs = {}
        if quantize != "none":
            path = path.with_name(f"{name}_{quantize}.tflite")
            if quantize in ("int8", "int8_io"):
                kwargs["representative_data"] = calibration_frames(
                    model, data, mnist_path=mnist_path
                )
        written["tflite"] = (
            path,
            export_tflite(model, path, quantize=quantize, preset=preset, **kwargs),
        )
    return written
