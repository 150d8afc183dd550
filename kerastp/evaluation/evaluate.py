"""Scoring a model on its data: `evaluate` takes any model kerastp writes (a Keras model, a
`.keras` file, a run directory, a SavedModel directory or a `.tflite` file) and asks the data
source (`kerastp.data.sources`) for its test protocol.

Which data: `data` if given, else the source the model's run recorded (its config.json or
the artifact's sidecar, `kerastp.runs.RunRecord`), else procedural Moving MNIST.
"""

from pathlib import Path

from kerastp.data.sources import get_source
from kerastp.forecasters import load_forecaster
from kerastp.runs import RunRecord
from kerastp.validation import positive_int


def open_model(model):
    """`(forecaster, record)` for a model object or a model path."""
    if isinstance(model, str | Path):
        return load_forecaster(model), RunRecord.of(model)
    return model, RunRecord()


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
      validation events (`kerastp.data.sources.radar.RadarSource.evaluate`).
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
        dict of scores with `data` (the source's name); see each source's `evaluate`.
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
    kwargs = {"num_sequences": num_sequences, "batch_size": batch_size}
    if split is not None:
        kwargs["split"] = split
    if persistence or not source.generated:
        kwargs["persistence"] = True
    return source.evaluate(forecaster, **kwargs)


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


def summary(result):
    """Headline scores of an `evaluate` result, the model next to persistence.

    Returns:
        dict {"model": {score: value}, "persistence": {score: value} or None}: scores over
        the whole horizon (per-frame and per-lead-time figures stay in the result); which
        scores is the source's choice (`DataSource.summary`).
    """
    from kerastp import registry

    return registry.get_source_class(result["data"]).summary(result)


def radar_summary(result):
    """`summary` of an `evaluate_radar` result."""
    return summary(result)
