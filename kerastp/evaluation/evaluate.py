"""Scoring a model on its data: `evaluate` takes any model kerastp writes (a Keras model, a
`.keras` file, a run directory, a SavedModel directory or a `.tflite` file) and asks the data
source (`kerastp.data.sources`) for its test protocol.

Which data: `data` if given, else the source the model's run recorded (its config.json or
the artifact's sidecar, `kerastp.runs.RunRecord`), else procedural Moving MNIST.
"""

import time
from pathlib import Path

import numpy as np

from kerastp.data.sources import get_source
from kerastp.evaluation.frames import ForecastEvaluator
from kerastp.evaluation.nowcasting import NowcastingEvaluator
from kerastp.forecasters import load_forecaster
from kerastp.runs import RunRecord
from kerastp.validation import positive_int


def open_model(model):
    """`(forecaster, record)` for a model object or a model path."""
    if isinstance(model, str | Path):
        from kerastp.pretrained import resolve_model_path

        model = resolve_model_path(model)
        return load_forecaster(model), RunRecord.of(model)
    return model, RunRecord()


def predict(forecaster, past, batch_size=16):
    """Forecasts `past` in batches with a Keras model or any `predict(past)` forecaster;
    returns `(forecast, seconds)`."""
    start = time.perf_counter()
    if hasattr(forecaster, "fit"):  # a Keras model batches itself
        forecast = forecaster.predict(past, batch_size=batch_size, verbose=0)
        return np.asarray(forecast, np.float32), time.perf_counter() - start
    chunks = [
        np.asarray(forecaster.predict(past[i : i + batch_size]), np.float32)
        for i in range(0, len(past), batch_size)
    ]
    return np.concatenate(chunks, axis=0), time.perf_counter() - start


def _persistence(past, output_frames):
    return np.repeat(past[:, -1:], output_frames, axis=1)


def score_frames(source, forecaster, batches, batch_size, persistence):
    """OpenSTL metrics (MSE / MAE per frame, SSIM, PSNR); with `persistence` also those of
    the last input frame repeated."""
    evaluator = ForecastEvaluator()
    reference = ForecastEvaluator() if persistence else None
    seconds, count = 0.0, 0
    for past, future in batches:
        prediction, spent = predict(forecaster, past, batch_size)
        seconds += spent
        count += len(past)
        evaluator.update(future, prediction)
        if reference is not None:
            reference.update(future, _persistence(past, forecaster.output_frames))
    result = evaluator.result()
    result.update({"seconds": seconds, "sequences_per_second": count / max(seconds, 1e-9)})
    if reference is not None:
        result["persistence"] = reference.result()
    return result


def score_nowcasting(source, forecaster, batches, batch_size, persistence):
    """Nowcasting verification of the model and of persistence: errors in model scale and,
    through the source's exact inverse, in data units (MSE, CSI / POD / FAR at 0.5, 1 and
    5 mm/h, FSS at 1 mm/h over 8 pixels), per lead time and over the horizon."""
    evaluators = {"model": NowcastingEvaluator(inverse=source.inverse)}
    evaluators["persistence"] = NowcastingEvaluator(inverse=source.inverse)
    seconds = 0.0
    for past, future in batches:
        prediction, spent = predict(forecaster, past, batch_size)
        seconds += spent
        evaluators["model"].update(future, prediction)
        evaluators["persistence"].update(future, _persistence(past, forecaster.output_frames))
    return {**{name: e.result() for name, e in evaluators.items()}, "seconds": seconds}


def score_units(source, forecaster, batches, batch_size, persistence):
    """MSE / MAE per pixel of the model and of persistence, in model scale and, through the
    source's inverse transform, in data units."""
    sums = {name: np.zeros(4) for name in ("model", "persistence")}
    pixels, seconds = 0, 0.0
    for past, future in batches:
        prediction, spent = predict(forecaster, past, batch_size)
        seconds += spent
        truth_units = source.inverse(future)
        pixels += future.size
        for name, forecast in (
            ("model", prediction),
            ("persistence", _persistence(past, forecaster.output_frames)),
        ):
            units = source.inverse(forecast)
            sums[name] += [
                np.sum(np.square(forecast - future, dtype=np.float64)),
                np.sum(np.abs(forecast - future), dtype=np.float64),
                np.sum(np.square(units - truth_units, dtype=np.float64)),
                np.sum(np.abs(units - truth_units), dtype=np.float64),
            ]
    keys = ("mse", "mae", "mse_data_units", "mae_data_units")
    scores = {
        name: {key: float(value / pixels) for key, value in zip(keys, total, strict=True)}
        for name, total in sums.items()
    }
    return {**scores, "seconds": seconds}


#: How each kind of source is scored (`DataSource.SCORING`).
SCORERS = {"frames": score_frames, "nowcasting": score_nowcasting, "units": score_units}


def evaluate(
    model,
    data=None,
    num_sequences=1000,
    mnist_path=None,
    batch_size=16,
    *,
    persistence=False,
    source=None,
    **settings,
):
    """Scores a model on the test protocol of its data.

    - Moving MNIST ("procedural", "mnist"): OpenSTL metrics (MSE / MAE per frame, SSIM,
      PSNR) on the first `num_sequences` of the fixed, seeded standard test set.
    - "radar": nowcasting scores of the model and of persistence on every window of the
      validation events.
    - "arrays": errors of the model and of persistence on the validation windows of the
      user's file, in model scale and in data units.

    Args:
        model: a kerastp model, or the path of a `.keras` file, run directory, SavedModel
            directory or `.tflite` file.
        data: a registered source name; None: the one the model's run recorded.
        num_sequences: Moving MNIST test sequences (radar and arrays score every window).
        mnist_path: MNIST location for `data="mnist"`.
        batch_size: prediction batch size.
        persistence: also score persistence on Moving MNIST (radar and arrays always do).
        source: a `DataSource` to use instead of `data` and the settings.
        **settings: source settings replacing the recorded ones (`radar_path`,
            `radar_resolution`, `data_path`, `data_key`, ...), and `split` for windowed
            sources.

    Returns:
        dict of scores with `data` (the source's name) and what the windows were.
    """
    # Arguments first: nothing is loaded for a mistake in them.
    positive_int("batch_size", batch_size)
    if num_sequences is not None and positive_int("num_sequences", num_sequences) > 10_000:
        raise ValueError(
            f"`num_sequences` must be at most 10000 (the standard test set), got "
            f"num_sequences={num_sequences!r}"
        )
    split = settings.pop("split", None)
    forecaster, record = open_model(model)
    if source is None:
        source = record.source(data, mnist_path=mnist_path, **settings)
    else:
        source = get_source(source)
    batches, info = source.test_windows(forecaster, num_sequences=num_sequences, split=split)
    result = SCORERS[source.SCORING](source, forecaster, batches, batch_size, persistence)
    return {**result, **info, "data": source.name}


def evaluate_radar(model, split="val", path=None, resolution=None, batch_size=16):
    """Nowcasting scores of a model and of persistence on the windows of radar events.

    Args:
        model: a kerastp model, or a model path (any artifact `evaluate` takes).
        split: which events ("val" by default: the held-out events of the default split).
        path: radar data folder (see `kerastp.data.radar.resolve_radar_dir`).
        resolution: 64 or 128; default the model's frame size.
        batch_size: prediction batch size.
    """
    return evaluate(
        model,
        "radar",
        batch_size=batch_size,
        split=split,
        radar_path=path,
        radar_resolution=resolution,
    )


#: The scores `summary` shows for each scoring.
SUMMARY_SCORES = {
    "frames": ("mse", "mae", "ssim", "psnr"),
    "units": ("mse", "mae", "mse_data_units", "mae_data_units"),
}


def _nowcasting_row(scores):
    row = {
        "mse": scores["mse"]["total"],
        "mae": scores["mae"]["total"],
        "mse_mm_h": scores["mse_rain_rate"]["total"],
    }
    for score in ("csi", "pod", "far"):
        for threshold, entry in scores[score].items():
            row[f"{score}_{threshold}"] = entry["total"]
    row["fss"] = scores["fss"]["total"]
    return row


def summary(result):
    """Headline scores of an `evaluate` result, the model next to persistence.

    Returns:
        dict {"model": {score: value}, "persistence": {score: value} or None}: scores over
        the whole horizon (per-frame and per-lead-time figures stay in the result). Radar:
        `mse`, `mae` (model scale), `mse_mm_h`, `csi_<t>` / `pod_<t>` / `far_<t>` at each
        threshold and `fss`.
    """
    from kerastp import registry

    scoring = registry.get_source_class(result["data"]).SCORING
    if "model" in result:  # model and persistence scored side by side
        rows = {name: result.get(name) for name in ("model", "persistence")}
    else:
        rows = {"model": result, "persistence": result.get("persistence")}
    if scoring == "nowcasting":
        return {name: None if row is None else _nowcasting_row(row) for name, row in rows.items()}
    keys = SUMMARY_SCORES[scoring]
    return {
        name: None if row is None else {key: row[key] for key in keys if key in row}
        for name, row in rows.items()
    }


def radar_summary(result):
    """`summary` of an `evaluate_radar` result."""
    return summary(result)
