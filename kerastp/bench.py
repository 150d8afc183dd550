"""Forecast latency of kerastp models and artifacts, the way a user would run them.

Runtimes (`RUNTIMES`):

- `keras_eager`: `model(past, training=False)` called eagerly, op by op;
- `keras_xla`: the same call in a `tf.function(jit_compile=True)`;
- `saved_model`: the `serving_default` signature of the exported SavedModel;
- `tflite`: the LiteRT interpreter (`kerastp.lite.LiteForecaster`) at a thread count;
- `onnxruntime`: ONNX Runtime (CPU) on the model converted by tf2onnx, at a thread count; the
  peer a user would pick instead (optional: `pip install tf2onnx onnxruntime`).

`time_forecasts` is the one timing loop: warm-up calls first (tracing, compilation, allocator
warm-up), then timed calls until `runs` are done or `max_seconds` have passed (at least
`min_runs`); the median is the figure to report. `time_interleaved` alternates several
forecast functions in blocks; `time_files_interleaved` does so for LiteRT and ONNX Runtime
files in a fresh process without TensorFlow, as an edge device runs them.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kerastp import options
from kerastp.validation import finite_number, non_negative_int, positive_int

RUNTIMES = options.RUNTIMES


def _check_timing(warmup, runs, max_seconds):
    non_negative_int("warmup", warmup)
    if non_negative_int("runs", runs) < 1:
        raise ValueError(f"`runs` must be >= 1, got runs={runs!r}")
    finite_number("max_seconds", max_seconds, 0.0)


def time_forecasts(forecast, past, *, warmup=3, runs=20, min_runs=5, max_seconds=30.0):
    """Times `forecast(past)` and returns latency statistics in milliseconds.

    Args:
        forecast: callable taking a (B, T_in, H, W, C) float32 array; its result is
            converted to NumPy inside the timed region, so asynchronous runtimes are waited for.
        past: the input batch.
        warmup: untimed calls first.
        runs: timed calls wanted.
        min_runs: timed calls made even past `max_seconds`.
        max_seconds: stop adding timed calls after this much timed wall time.

    Returns:
        dict with `median_ms`, `mean_ms`, `min_ms`, `p90_ms`, `runs`, `warmup`.
    """
    _check_timing(warmup, runs, max_seconds)
    non_negative_int("min_runs", min_runs)
    for _ in range(warmup):
        np.asarray(forecast(past))
    times = []
    spent = 0.0
    while len(times) < runs and (spent < max_seconds or len(times) < min(min_runs, runs)):
        start = time.perf_counter()
        np.asarray(forecast(past))
        elapsed = time.perf_counter() - start
        times.append(elapsed * 1e3)
        spent += elapsed
    return _stats(times, warmup)


def _stats(times, warmup):
    ordered = sorted(times)
    return {
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "min_ms": ordered[0],
        "p90_ms": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
        "runs": len(times),
        "warmup": warmup,
    }


def time_interleaved(forecasts, past, *, warmup=3, runs=20, rounds=4, max_seconds=30.0):
    """Times several forecast functions in alternating blocks, so that a shared machine's
    drift (another process, a frequency change) falls on all of them alike.

    Each of `rounds` rounds gives every function `warmup` untimed calls, then its share of
    `runs` timed calls (fewer once the block has spent its share of `max_seconds`, but at
    least one). Each round starts at a different function (the order rotates
    by `len(forecasts) / rounds`), so that no function holds the same place every round:
    with a fixed order, the same early file ran slow in some runs (stlight_tiny's 2-thread
    fp32 TFLite file: median 1.41 ms against 0.88 ms for its fp16 file, which runs the same
    float32 kernels; one run on a 2-core EPYC VM).

    Args:
        forecasts: {key: callable}, as `time_forecasts` takes.
        past: the input batch.
        warmup, runs, max_seconds: per function, as in `time_forecasts`.
        rounds: int, blocks per function.

    Returns:
        {key: the `time_forecasts` statistics, plus `rounds`}.
    """
    _check_timing(warmup, runs, max_seconds)
    rounds = positive_int("rounds", rounds)
    per_round = -(-runs // rounds)
    per_block_seconds = max_seconds / rounds
    keys = list(forecasts)
    times = {key: [] for key in keys}
    for round_index in range(rounds):
        shift = round_index * len(keys) // rounds
        for key in keys[shift:] + keys[:shift]:
            forecast = forecasts[key]
            for _ in range(warmup):
                np.asarray(forecast(past))
            spent = 0.0
            for i in range(per_round):
                if len(times[key]) >= runs or (i and spent >= per_block_seconds):
                    break
                start = time.perf_counter()
                np.asarray(forecast(past))
                elapsed = time.perf_counter() - start
                times[key].append(elapsed * 1e3)
                spent += elapsed
    return {key: {**_stats(times[key], warmup), "rounds": rounds} for key in forecasts}


def file_forecaster(path, num_threads=1):
    """The forecast function of a `.tflite` (LiteRT) or `.onnx` (ONNX Runtime) file."""
    if Path(path).suffix == ".onnx":
        return onnx_forecaster(path, num_threads)
    return tflite_forecaster(path, num_threads)


def time_files_interleaved(files, past, *, timeout=3600, **timing):
    """`time_interleaved` over LiteRT and ONNX Runtime files, in a fresh Python process that
    imports neither TensorFlow nor Keras, as on an edge device.

    Timed in the process that had just traced and converted the model, identical files did
    not run alike: with TensorFlow loaded and used, the first LiteRT interpreter created ran
    4% and 7% slower than a second interpreter of the same file (predrnn_tiny, two runs on a
    2-core EPYC), and without TensorFlow in the process the two ran level.

    Args:
        files: {key: (path, num_threads)}, keys of str / int / None or tuples of them; a
            `.onnx` path runs under ONNX Runtime, any other under LiteRT.
        past: the input batch.
        timeout: seconds before the timing process is stopped (a RuntimeError).
        **timing: `warmup`, `runs`, `rounds`, `max_seconds` as `time_interleaved` takes.

    Returns:
        {key: the `time_interleaved` statistics}.

    Raises:
        RuntimeError: naming the file that the process could not load or run, with its error.
    """
    keys = list(files)
    with tempfile.TemporaryDirectory(prefix="kerastp_timing_") as tmp:
        np.save(Path(tmp) / "past.npy", np.asarray(past, np.float32))
        spec = {
            "files": [[os.fspath(files[k][0]), int(files[k][1])] for k in keys],
            "timing": timing,
        }
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        done = subprocess.run(
            [sys.executable, "-m", "kerastp.bench", tmp],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"timing {[os.fspath(files[k][0]) for k in keys]} failed:\n{done.stderr[-2000:]}"
            )
        stats = json.loads((Path(tmp) / "stats.json").read_text())
    return {key: stats[i] for i, key in enumerate(keys)}


def _time_files_main(directory):
    """`time_files_interleaved`'s timing process: DIR/spec.json and DIR/past.npy in,
    DIR/stats.json out."""
    directory = Path(directory)
    spec = json.loads((directory / "spec.json").read_text())
    past = np.load(directory / "past.npy")
    forecasts = {i: file_forecaster(path, n) for i, (path, n) in enumerate(spec["files"])}
    stats = time_interleaved(forecasts, past, **spec["timing"])
    (directory / "stats.json").write_text(json.dumps([stats[i] for i in range(len(forecasts))]))


def keras_forecaster(model, jit_compile=False):
    """A NumPy-in, NumPy-out forecast function of a Keras model (eager, or XLA-compiled)."""
    import keras
    import tensorflow as tf

    if not jit_compile:
        return lambda past: keras.ops.convert_to_numpy(model(past, training=False))
    compiled = tf.function(lambda past: model(past, training=False), jit_compile=True)
    return lambda past: compiled(tf.constant(past)).numpy()


def saved_model_forecaster(directory):
    """The forecast function of a kerastp SavedModel's `serving_default` signature."""
    from kerastp.forecasters import SavedModelForecaster

    return SavedModelForecaster(directory).predict


def tflite_forecaster(path, num_threads=1):
    """The forecast function of a `.tflite` file under LiteRT at `num_threads`."""
    from kerastp.lite import LiteForecaster

    return LiteForecaster(path, num_threads=num_threads).predict


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """tf2onnx handler: TensorFlow's exact GELU uses Erfc, which ONNX lacks; 1 - Erf(x)."""
    from tf2onnx import utils

    node.type = "Erf"
    one = ctx.make_const(utils.make_name("one"), np.array(1.0, dtype=np.float32))
    ctx.insert_new_node_on_output(
        "Sub",
        node.output[0],
        inputs=[one.output[0], node.output[0]],
        name=utils.make_name(f"{node.name}_erfc"),
    )


def convert_to_onnx(model, path, opset=17):
    """Converts a kerastp model to ONNX with tf2onnx (dynamic batch); returns the path.

    Raises:
        RuntimeError: tf2onnx is not installed.
    """
    try:
        import tf2onnx
    except ImportError as error:
        raise RuntimeError(
            "ONNX export needs tf2onnx and onnxruntime: pip install tf2onnx onnxruntime"
        ) from error
    import tensorflow as tf

    from kerastp.forecasters import INPUT_NAME

    spec = (tf.TensorSpec(model.input_signature_shape, tf.float32, name=INPUT_NAME),)

    @tf.autograph.experimental.do_not_convert
    def forecast(frames):
        return model(frames, training=False)

    path = Path(path)
    tf2onnx.convert.from_function(
        tf.function(forecast),
        input_signature=spec,
        opset=opset,
        custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])},
        output_path=os.fspath(path),
    )
    return path


def onnx_forecaster(path, num_threads=1):
    """The forecast function of an ONNX file under ONNX Runtime (CPU) at `num_threads`."""
    try:
        import onnxruntime
    except ImportError as error:
        raise RuntimeError("ONNX Runtime is not installed: pip install onnxruntime") from error
    session_options = onnxruntime.SessionOptions()
    session_options.intra_op_num_threads = num_threads
    session_options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        os.fspath(path), session_options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return lambda past: session.run(None, {name: np.asarray(past, np.float32)})[0]


def bench_path(path, *, batch_size=1, threads=(1,), warmup=3, runs=20, max_seconds=30.0, seed=0):
    """Latency of one artifact or model, on the runtimes it can run on.

    Args:
        path: a `.tflite` file (LiteRT at each thread count), a SavedModel directory, a
            `.keras` file or run directory (Keras eager and XLA), or a preset name (built with
            its initial weights: latency does not depend on the values of the weights).
        batch_size: sequences per forecast.
        threads: LiteRT thread counts.
        warmup, runs, max_seconds: see `time_forecasts`.
        seed: seed of the random input frames.

    Returns:
        list of dicts: `runtime`, `threads` (None where not settable), `batch_size`,
        `input_shape`, and the statistics of `time_forecasts`.
    """
    from kerastp import registry

    # Checked before anything is loaded or built.
    batch_size = positive_int("batch_size", batch_size)
    threads = (threads,) if isinstance(threads, int | np.integer) else tuple(threads)
    if not threads:
        raise ValueError(f"`threads` must list at least one thread count, got threads={threads}")
    threads = [positive_int("threads", n) for n in threads]
    _check_timing(warmup, runs, max_seconds)
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"`path` must be a preset name or a path, got path={path!r}")
    from kerastp.pretrained import pretrained_file, resolve_model_path

    name = os.fspath(path)
    path = resolve_model_path(path)
    text = os.fspath(path)
    candidates, shape = [], None
    lite_files = {}  # runtime ("tflite", "tflite_int8", ...) -> its .tflite file
    if text in registry.PRESETS or text.endswith(".keras") or Path(text, "model.keras").is_file():
        if text in registry.PRESETS:
            model = registry.build_model(text)
        else:
            from kerastp.saving import load_model

            model = load_model(text)
        shape = model.input_signature_shape[1:]
        candidates = [
            ("keras_eager", None, keras_forecaster(model)),
            ("keras_xla", None, keras_forecaster(model, jit_compile=True)),
        ]
        # A pretrained name: its shipped TFLite files too, beside the Keras model.
        for kind in registry.PRETRAINED.get(name, {}).get("files", {}):
            if kind.startswith("tflite"):
                lite_files[kind] = pretrained_file(name, kind)
    elif text.endswith(".tflite"):
        if not Path(text).is_file():
            raise FileNotFoundError(f"No .tflite file at {text}")
        lite_files["tflite"] = text
    elif Path(text, "saved_model.pb").is_file():
        from kerastp.forecasters import SavedModelForecaster

        forecaster = SavedModelForecaster(text)
        shape = forecaster.input_shape[1:]
        candidates = [("saved_model", None, forecaster.predict)]
    else:
        raise FileNotFoundError(
            f"Nothing to benchmark at {text!r}: give a preset name (see `kerastp list`), a "
            ".keras file, a run directory, a SavedModel directory or a .tflite file"
        )
    lites = {}
    if lite_files:
        from kerastp.lite import LiteForecaster

        for runtime, file in lite_files.items():
            lites[runtime] = {n: LiteForecaster(file, num_threads=n) for n in threads}
            candidates += [(runtime, n, lites[runtime][n].predict) for n in threads]
        if shape is None:
            shape = next(iter(lites["tflite"].values())).input_shape[1:]
    past = np.random.default_rng(seed).random((batch_size, *shape), dtype=np.float32)
    rows = []
    for runtime, num_threads, forecast in candidates:
        stats = time_forecasts(forecast, past, warmup=warmup, runs=runs, max_seconds=max_seconds)
        rows.append(
            {
                "runtime": runtime,
                "threads": num_threads,
                "batch_size": batch_size,
                "input_shape": [batch_size, *shape],
                **stats,
            }
        )
        if runtime in lites:
            from kerastp.lite import delegation

            rows[-1]["delegation"] = delegation(lites[runtime][num_threads].interpreter)
            rows[-1]["accuracy"] = tflite_accuracy(lite_files[runtime])
    return rows


def tflite_accuracy(path):
    """What a `.tflite` file's sidecar records about its accuracy against the Keras model.

    Returns:
        dict with `quantize`, `judged_by` and, for integer files judged on held-out
        sequences, `mse_keras`, `mse_tflite` and `mse_relative_increase`, with the operator
        types and layers the int8 file keeps in float (`float_ops`, `float_layers`) and
        `fully_integer`; or for float files `max_abs_error`. None when the file has no
        kerastp sidecar.
    """
    from kerastp.runs import sidecar_path
    from kerastp.saving import read_json

    sidecar = sidecar_path(Path(path))
    if not sidecar.is_file():
        return None
    record = read_json(sidecar)
    parity = record.get("parity") or {}
    keys = ("judged_by", "max_abs_error", "mse_keras", "mse_tflite", "mse_relative_increase")
    kept = {k: record[k] for k in ("float_ops", "float_layers", "fully_integer") if k in record}
    return {"quantize": record.get("quantization", "none"),
            **{k: parity[k] for k in keys if k in parity}, **kept}  # fmt: skip


if __name__ == "__main__":
    _time_files_main(sys.argv[1])
