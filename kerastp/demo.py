"""The main job: train a small model on built-in data, evaluate, export, draw the forecast."""

import time
from pathlib import Path

import numpy as np

from kerastp import export, training, visualize
from kerastp.data import split_frames
from kerastp.data.sources import get_source
from kerastp.evaluation import evaluate_arrays
from kerastp.saving import write_json
from kerastp.validation import check_output_dir


def baselines(data="procedural", num_sequences=1000, mnist_path=None):
    """Metrics of two trivial forecasts on the standard test set: repeat the last input frame,
    and predict the mean frame of the inputs. A trained model must beat both."""
    sequences = get_source(data, mnist_path=mnist_path).test_sequences(num_sequences)
    past, future = split_frames(np.asarray(sequences), 10, 10)
    last = np.repeat(past[:, -1:], future.shape[1], axis=1)
    mean = np.repeat(past.mean(axis=1, keepdims=True), future.shape[1], axis=1)
    return {
        "repeat_last_frame": evaluate_arrays(future, last),
        "mean_of_inputs": evaluate_arrays(future, mean),
    }


def run_demo(
    run_dir="runs/demo",
    preset="stlight_tiny",
    data="procedural",
    epochs=10,
    steps_per_epoch=100,
    eval_sequences=500,
    saved_model_dir="saved_models",
    tflite_dir="tflite",
    mnist_path=None,
    seed=0,
    verbose=1,
):
    """Trains `preset`, evaluates it, exports `.keras` + SavedModel + TFLite (each verified),
    and writes `<run_dir>/forecast.png` and `.gif`.

    Returns:
        dict with the test metrics, the trivial baselines, the artifact paths, the picture
        paths and the wall time of each stage; also written to `<run_dir>/demo.json`.
    """
    check_output_dir(saved_model_dir, "saved_model_dir")
    check_output_dir(tflite_dir, "tflite_dir")
    timings = {}
    start = time.perf_counter()
    result = training.train(
        preset=preset,
        data=data,
        mnist_path=mnist_path,
        run_dir=run_dir,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        eval_sequences=eval_sequences,
        seed=seed,
        verbose=verbose,
    )
    timings["train_and_evaluate_s"] = time.perf_counter() - start
    model = result["model"]

    start = time.perf_counter()
    sequences = get_source(data, mnist_path=mnist_path).test_sequences(8)
    past, future = split_frames(
        np.asarray(sequences), model.input_frames, model.output_frames
    )
    artifacts = export.export_all(
        model,
        preset,
        saved_model_dir=saved_model_dir,
        tflite_dir=tflite_dir,
        preset=preset,
        probe=past[:3],
    )
    timings["export_s"] = time.perf_counter() - start

    png, gif, _ = visualize.save_forecast_pictures(
        model, past[0], future[0], Path(run_dir) / "forecast.png"
    )
    summary = {
        "preset": preset,
        "data": data,
        "metrics": result["metrics"],
        "baselines": baselines(data, eval_sequences, mnist_path),
        "artifacts": {kind: str(path) for kind, (path, _) in artifacts.items()},
        "parity": {kind: sidecar["parity"] for kind, (_, sidecar) in artifacts.items()},
        "pictures": [str(png), str(gif)],
        "timings": {**timings, "fit_s": result["seconds"]},
    }
    write_json(Path(run_dir) / "demo.json", summary)
    return summary
