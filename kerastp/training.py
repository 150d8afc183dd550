"""Training and evaluation on `model.fit`: run directories, resumable runs, OpenSTL metrics.

`train(TrainConfig(...))` builds a preset, compiles it with the one-cycle policy of the
STLight paper and fits it on freshly generated Moving MNIST. Each run owns a directory:

    <run_dir>/config.json        the resolved configuration (preset, model config, data, ...)
    <run_dir>/backup/            state.npz: a killed run resumes from here, at the same step
    <run_dir>/checkpoints/       best.keras (lowest val_loss) and last.keras
    <run_dir>/history.csv        one row per epoch (appended across resumes)
    <run_dir>/logs/              TensorBoard logs (optional)
    <run_dir>/model.keras        the final model
    <run_dir>/metrics.json       OpenSTL metrics on the fixed test set
"""

import dataclasses
import json
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np

from kerastp.backend import require_tensorflow

require_tensorflow()

import keras  # noqa: E402

from kerastp import precision, registry  # noqa: E402
from kerastp.artifacts import CorruptArtifactError, check_keras_archive  # noqa: E402
from kerastp.checkpointing import (  # noqa: E402
    AtomicCheckpoint,
    TrainingBackup,
    read_backup,
    trim_history,
)
from kerastp.data import moving_mnist  # noqa: E402
from kerastp.export import save_keras_atomic, write_json  # noqa: E402
from kerastp.metrics import ForecastEvaluator  # noqa: E402
from kerastp.validation import (  # noqa: E402
    check_output_dir,
    finite_number,
    non_negative_int,
    positive_int,
)

DATA_SOURCES = ("procedural", "mnist", "radar", "arrays")
STRATEGIES = (None, "mirrored", "multi_worker")

#: The radar nowcasting protocol (`../shared/data/radar/README.md`): 6 frames in, 12 out.
RADAR_FRAMES = {"input_frames": 6, "output_frames": 12}


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; written to `<run_dir>/config.json`.

    Args:
        preset: registry preset name.
        data: "procedural" (built-in Moving MNIST digits, no file), "mnist" (real MNIST
            digits) or "radar" (the radar nowcasting events: 6 frames in, 12 out, train on
            the training events, validate and evaluate on the validation events; the model's
            frame counts and size follow unless `overrides` set them).
        mnist_path: MNIST location for `data="mnist"` (see `resolve_mnist_path`).
        radar_path: radar data folder for `data="radar"` (see `resolve_radar_dir`).
        radar_resolution: 64 or 128 pixels per side (None: 64).
        data_path: for `data="arrays"`, the user's file (.npy, .npz, .h5, .zarr, .nc) of
            (N, T, H, W, C) sequences or one (T, H, W, C) series; the model's frame size
            follows the data unless `overrides` set it.
        data_key: array / dataset / variable name inside `data_path` when it holds several.
        normalization: "minmax", "zscore", "log1p" or "none", fitted on the training split
            only; recorded in config.json and every exported artifact's sidecar.
        stride: window stride for `data="arrays"`.
        run_dir: the run's directory; default `runs/<preset>`.
        epochs: None takes the preset's.
        steps_per_epoch: optimizer steps per epoch; None gives 10,000 sequences per epoch
            (the Moving MNIST protocol), or one pass over the training windows (radar).
        batch_size: None takes the preset's.
        learning_rate: peak learning rate; None takes the preset's.
        schedule: "one_cycle" (paper) or "constant".
        val_sequences: sequences of the fixed validation set scored after each epoch.
        eval_sequences: sequences of the fixed test set scored at the end (0 skips); for
            radar, any positive value scores every window of the validation events.
        seed: seeds weights, data and dropout.
        tensorboard: write TensorBoard logs.
        backup_every: None backs up at each epoch end; an int also every that many steps.
        overrides: model constructor arguments replacing the preset's.
        strategy: None (one device), "mirrored" (`tf.distribute.MirroredStrategy`: every
            local GPU, or the CPU) or "multi_worker" (`MultiWorkerMirroredStrategy`, the
            cluster described by the `TF_CONFIG` environment variable). `batch_size` is the
            global batch, split over the replicas; only the chief writes the run directory.
        mixed_precision: None (float32), "bfloat16" or "float16": compute in that precision
            with float32 variables, losses and forecasts (`kerastp.precision`); the saved
            model.keras is float32.
        verbose: Keras verbosity (1 = progress bar).
    """

    preset: str = "stlight_tiny"
    data: str = "procedural"
    mnist_path: str | None = None
    radar_path: str | None = None
    radar_resolution: int | None = None
    data_path: str | None = None
    data_key: str | None = None
    normalization: str = "minmax"
    stride: int = 1
    run_dir: str | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    schedule: str = "one_cycle"
    val_sequences: int = 256
    eval_sequences: int = 1000
    seed: int = 0
    tensorboard: bool = False
    backup_every: int | None = None
    overrides: dict = dataclasses.field(default_factory=dict)
    strategy: str | None = None
    mixed_precision: str | None = None
    verbose: int = 1

    def resolved(self):
        """A copy with every None default filled in from the preset; validates values."""
        preset = registry.get_preset(self.preset)
        training = preset["training"]
        config = dataclasses.replace(self, overrides=dict(self.overrides))
        if config.data not in DATA_SOURCES:
            raise ValueError(
                f"`data` must be one of {', '.join(DATA_SOURCES)}, got data={config.data!r}"
            )
        if config.strategy not in STRATEGIES:
            raise ValueError(
                f"`strategy` must be one of {STRATEGIES}, got strategy={config.strategy!r}"
            )
        precision.policy_name(config.mixed_precision)
        if config.schedule not in ("one_cycle", "constant"):
            raise ValueError(
                f"`schedule` must be 'one_cycle' or 'constant', got schedule={config.schedule!r}"
            )
        config.epochs = training["epochs"] if config.epochs is None else config.epochs
        config.batch_size = (
            training["batch_size"] if config.batch_size is None else config.batch_size
        )
        if config.learning_rate is None:
            config.learning_rate = training["max_learning_rate"]
        if config.data == "radar":
            from kerastp.data import radar

            if config.radar_resolution is None:
                config.radar_resolution = 64
            if config.radar_resolution not in radar.RADAR_RESOLUTIONS:
                raise ValueError(
                    f"`radar_resolution` must be one of {radar.RADAR_RESOLUTIONS}, got "
                    f"radar_resolution={config.radar_resolution!r}"
                )
            radar.resolve_radar_dir(config.radar_path)  # before any model is built
            size = config.radar_resolution
            frames = registry.frame_overrides(config.preset, **RADAR_FRAMES)
            defaults = {**frames, "height": size, "width": size, "channels": 1}
            config.overrides = {**defaults, **config.overrides}
        if config.data == "arrays":
            from kerastp.data import arrays

            if config.data_path is None:
                raise ValueError('data="arrays" needs `data_path` (the file of your frames)')
            if config.normalization not in arrays.NORMALIZATION_METHODS:
                raise ValueError(
                    f"`normalization` must be one of {arrays.NORMALIZATION_METHODS}, got "
                    f"normalization={config.normalization!r}"
                )
        positive_int("batch_size", config.batch_size)
        if config.data == "mnist" and config.mnist_path is not None:
            moving_mnist.resolve_mnist_path(config.mnist_path)  # an explicit path never downloads
        if config.steps_per_epoch is None and config.data not in ("radar", "arrays"):
            config.steps_per_epoch = max(1, 10_000 // config.batch_size)
        if config.run_dir is None:
            config.run_dir = str(Path("runs") / config.preset)
        for name in ("epochs", "batch_size", "steps_per_epoch", "val_sequences"):
            value = getattr(config, name)
            if name == "steps_per_epoch" and value is None and config.data in ("radar", "arrays"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {name}={value!r}")
        if not isinstance(config.eval_sequences, int) or not 0 <= config.eval_sequences <= 10_000:
            raise ValueError(
                f"`eval_sequences` must be an integer in [0, 10000], got {config.eval_sequences!r}"
            )
        if not config.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be positive, got {config.learning_rate!r}")
        finite_number("learning_rate", config.learning_rate)
        if non_negative_int("seed", config.seed) >= 2**32:
            raise ValueError(f"`seed` must be below 2**32, got seed={config.seed!r}")
        positive_int("stride", config.stride)
        if config.backup_every is not None:
            positive_int("backup_every", config.backup_every)
        check_output_dir(config.run_dir, "run_dir")
        return config


def _frame_config(model):
    return {
        "input_frames": model.input_frames,
        "output_frames": model.output_frames,
        "image_size": model.height,
    }


def _check_moving_mnist_model(model):
    if model.height != model.width or model.channels != 1:
        raise ValueError(
            "Moving MNIST has square single-channel frames; the model expects "
            f"{model.height}x{model.width}x{model.channels}"
        )


class _EpochTimer(keras.callbacks.Callback):
    """Adds the epoch's wall time (`epoch_seconds`) to the logs, so history.csv records it."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


def _fit_phases(epoch, step, epochs):
    """`(first_epoch, num_epochs, skip)` of each `fit` a run resuming at (epoch, step) makes.

    A run resuming mid-epoch (`step` > 0) first finishes that epoch (skipping the `step`
    batches it took), then fits the remaining epochs; a run at an epoch start fits once (zero
    epochs when training had finished: the fit then only restores the state).

    Example:
    >>> _fit_phases(1, 2, 3)
    [(1, 1, 2), (2, 1, 0)]
    """
    phases = []
    if step:
        phases.append((epoch, 1, step))
        epoch += 1
    if epoch < epochs or not phases:
        phases.append((epoch, max(epochs - epoch, 0), 0))
    return phases


def train(config=None, callbacks=None, **kwargs):
    """Trains a preset on Moving MNIST with `model.fit`; resumes an interrupted run.

    Running `train` again with the same configuration and run directory after an
    interruption (even a SIGKILL) resumes from the last backup (each epoch end, and every
    `backup_every` steps; `kerastp.checkpointing.TrainingBackup`) at the next step: weights,
    optimizer state and schedule position, the random state of dropout / masking / scheduled
    sampling and the epoch's metric sums continue, and the Moving MNIST stream skips the
    batches already taken, so the run ends with the weights and history.csv of an
    uninterrupted one (bitwise on CPU). Radar and array windows restart their seeded
    reshuffle: the resumed epochs see the same windows in other orders. Every file of the
    run directory is written atomically (temporary file, then rename).

    Args:
        config: a `TrainConfig`; or pass its fields as keyword arguments.
        callbacks: extra Keras callbacks for `fit` (not part of the recorded config).

    Returns:
        dict with `model`, `run_dir`, `history` (per-epoch logs of this call), `metrics`
        (test-set metrics, or None when `eval_sequences=0`), `seconds` (fit wall time) and
        `config` (the resolved config as a dict).

    Example:
    >>> result = train(preset="stlight_tiny", epochs=1, steps_per_epoch=2,
    ...                eval_sequences=16, run_dir="/tmp/run")  # doctest: +SKIP
    """
    config = (config or TrainConfig(**kwargs)).resolved()
    # The strategy first: MultiWorkerMirroredStrategy must exist before TensorFlow runs ops.
    strategy = make_strategy(config.strategy)
    if not is_chief(strategy):
        # Other workers train in lock step and keep their own backups (so that a restarted
        # cluster resumes everywhere from the same epoch) under <run_dir>/workers/.
        resolver = strategy.cluster_resolver
        worker_dir = Path(config.run_dir) / "workers" / f"{resolver.task_type}-{resolver.task_id}"
        config = dataclasses.replace(config, run_dir=str(worker_dir))
    with precision.policy_scope(precision.policy_name(config.mixed_precision)):
        with strategy.scope():
            return _train(config, callbacks, strategy)


def _shard_by_data(dataset):
    """Splits each global batch over the replicas (generator datasets have no files)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def make_strategy(name):
    """The `tf.distribute` strategy for a `TrainConfig.strategy` value."""
    import tensorflow as tf

    if name is None:
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"`strategy` must be one of {STRATEGIES}, got strategy={name!r}")


def is_chief(strategy):
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def _train(config, callbacks, strategy):
    run_dir = Path(config.run_dir)
    keras.utils.set_random_seed(config.seed)

    data_scale = DATA_SCALES.get(config.data)
    if config.data == "arrays":
        from kerastp.data import arrays

        source = arrays.load_array(config.data_path, config.data_key)
        height, width, channels = (int(d) for d in source.shape[-3:])
        shape = {"height": height, "width": width, "channels": channels}
        model = registry.build_model(config.preset, **{**shape, **config.overrides})
        if tuple(model.frame_shape) != (height, width, channels):
            raise ValueError(
                f"{config.data_path} holds {height}x{width}x{channels} frames, the model "
                f"expects {'x'.join(map(str, model.frame_shape))} (drop height/width/channels "
                "from `overrides`)"
            )
        train_data, val_data, steps, normalization = _array_datasets(model, config, source)
        data_scale = {
            "name": "normalization",
            "description": f"{config.normalization} normalisation fitted on the training "
            f"split of {config.data_path}; invert forecasts with it for data units",
            "normalization": normalization.to_config(),
        }
    elif config.data == "radar":
        model = registry.build_model(config.preset, **config.overrides)
        train_data, val_data, steps = _radar_datasets(model, config)
    else:
        model = registry.build_model(config.preset, **config.overrides)
        _check_moving_mnist_model(model)
        steps = config.steps_per_epoch
    total_steps = config.epochs * steps
    resolved = {
        **dataclasses.asdict(config),
        "model_class": type(model).__name__,
        "model_config": model.get_config(),
        "params": registry.count_trainable_params(model),
        "data_scale": data_scale,
    }
    config_file = run_dir / "config.json"
    if config_file.is_file():
        previous = json.loads(config_file.read_text())
        ignored = {"verbose", "eval_sequences", "tensorboard", "backup_every"}
        # JSON turns tuples into lists: compare through a JSON round trip.
        # Keys a run written by an older kerastp lacks are not compared.
        changed = sorted(
            key
            for key in resolved
            if key not in ignored
            and key in previous
            and json.loads(json.dumps(resolved[key], default=str)) != previous[key]
        )
        if changed:
            raise ValueError(
                f"{run_dir} holds a run with a different configuration ({', '.join(changed)} "
                "differ). Resume it with the same settings, or choose another run_dir."
            )

    if config.schedule == "one_cycle" and total_steps < 2:
        raise ValueError(
            "The one-cycle schedule needs at least 2 optimizer steps, got epochs * "
            f"steps_per_epoch = {config.epochs} * {steps}; train longer or "
            "use schedule='constant'"
        )
    model.compile(
        learning_rate=config.learning_rate,
        total_steps=total_steps if config.schedule == "one_cycle" else None,
    )

    backup_dir = run_dir / "backup"
    # (epoch, step): where the last backup stood; the run continues at the next step.
    resume = read_backup(backup_dir)
    initial_epoch, resume_step = (resume["epoch"], resume["step"]) if resume else (0, 0)
    generated = config.data not in ("radar", "arrays")
    if not generated:

        def train_stream(first_epoch, num_epochs):
            # Keras iterates the windows once per epoch; they reshuffle every pass (a resumed
            # run restarts that seeded sequence: the same windows, in other orders).
            return train_data

    else:
        frames = _frame_config(model)

        def train_stream(first_epoch, num_epochs):
            # Epochs first_epoch .. + num_epochs - 1 of the seeded stream, back to back.
            return moving_mnist.moving_mnist_dataset(
                config.data,
                "train",
                batch_size=config.batch_size,
                num_sequences=config.steps_per_epoch * config.batch_size,
                seed=config.seed,
                path=config.mnist_path,
                initial_epoch=first_epoch,
                num_epochs=num_epochs,
                **frames,
            )

        val_data = moving_mnist.moving_mnist_dataset(
            config.data,
            "val",
            batch_size=min(config.batch_size, config.val_sequences),
            num_sequences=config.val_sequences,
            seed=config.seed,
            path=config.mnist_path,
            drop_remainder=False,
            **frames,
        )
    # Everything the run needs exists: only now does the run directory get written, so a
    # failed start leaves nothing that would block the corrected command.
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_file, resolved)
    history_file = run_dir / "history.csv"
    if resume:
        # One row per epoch: rows of epochs the backup does not cover are logged again.
        trim_history(history_file, initial_epoch)
    elif history_file.exists():
        history_file.unlink()  # a fresh run starts a fresh history
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    extra_callbacks = list(callbacks or [])
    best = AtomicCheckpoint(checkpoints / "best.keras", monitor="val_loss")
    callbacks = [
        best,
        AtomicCheckpoint(checkpoints / "last.keras"),
        _EpochTimer(),
        keras.callbacks.CSVLogger(str(history_file), append=True),
    ]
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "logs")))
    # Last of kerastp's: an epoch is backed up once its row and checkpoints are written.
    callbacks.append(
        TrainingBackup(
            backup_dir, steps, save_every=config.backup_every, resume=resume, checkpoints=[best]
        )
    )
    callbacks.extend(extra_callbacks)

    if config.strategy is not None:
        val_data = _shard_by_data(val_data)
    start = time.perf_counter()
    logs = {}
    for first_epoch, num_epochs, skip in _fit_phases(initial_epoch, resume_step, config.epochs):
        # An interrupted epoch skips the batches it took. The Moving MNIST stream holds every
        # epoch of the fit: one iterator for the whole fit.
        data = train_stream(first_epoch, max(num_epochs, 1)).skip(skip)
        if config.strategy is not None:
            data = _shard_by_data(data)
        history = model.fit(
            data,
            initial_epoch=first_epoch,
            epochs=first_epoch + num_epochs,
            steps_per_epoch=steps - skip if generated else None,
            validation_data=val_data,
            callbacks=callbacks,
            shuffle=False,
            verbose=config.verbose,
        )
        for key, values in history.history.items():
            logs.setdefault(key, []).extend(values)
    seconds = time.perf_counter() - start
    with precision.policy_scope("float32"):
        save_keras_atomic(precision.float32_model(model), run_dir / "model.keras")

    metrics = None
    if config.data == "arrays" and config.eval_sequences:
        metrics = evaluate_user_arrays(
            model,
            source,
            normalization,
            key=config.data_key,
            stride=config.stride,
            seed=config.seed,
            batch_size=config.batch_size,
        )
        metrics["train_seconds"] = seconds
        write_json(run_dir / "metrics.json", metrics)
    elif config.data == "radar" and config.eval_sequences:
        metrics = evaluate_radar(
            model,
            path=config.radar_path,
            resolution=config.radar_resolution,
            batch_size=config.batch_size,
        )
        metrics["train_seconds"] = seconds
        write_json(run_dir / "metrics.json", metrics)
    elif config.eval_sequences:
        metrics = evaluate(
            model,
            data=config.data,
            num_sequences=config.eval_sequences,
            mnist_path=config.mnist_path,
            batch_size=config.batch_size,
        )
        metrics["train_seconds"] = seconds
        write_json(run_dir / "metrics.json", metrics)
    # The run is complete (a kill before this line resumes and only redoes the writes above);
    # rerunning it with the same settings starts over.
    shutil.rmtree(backup_dir, ignore_errors=True)
    return {
        "model": model,
        "run_dir": str(run_dir),
        "history": logs,
        "metrics": metrics,
        "seconds": seconds,
        "config": resolved,
    }


#: What the numbers of a model trained on each data source mean (recorded in config.json and,
#: through `kerastp export`, in every artifact's sidecar).
DATA_SCALES = {
    "procedural": {
        "name": "unit",
        "description": "Moving MNIST frames in [0, 1] (uint8 / 255)",
        "range": [0.0, 1.0],
    },
    "radar": {
        "name": "radar_log_rain_rate",
        "description": "x = log1p(R) / log1p(100), R rain rate in mm/h clipped to [0, 100]; "
        "R = expm1(x * log1p(100)) (kerastp.data.radar.to_rain_rate)",
        "range": [0.0, 1.0],
    },
}
DATA_SCALES["mnist"] = DATA_SCALES["procedural"]


def _array_datasets(model, config, source):
    """Training and validation windows of the user's arrays, steps per epoch, normalisation."""
    from kerastp.data import arrays

    common = {
        "input_frames": model.input_frames,
        "output_frames": model.output_frames,
        "stride": config.stride,
        "batch_size": config.batch_size,
        "seed": config.seed,
    }
    train_data, normalization = arrays.array_dataset(
        source, "train", normalization=config.normalization, **common
    )
    val_data, _ = arrays.array_dataset(
        source, "val", normalization=normalization, shuffle=False, **common
    )
    batches = int(train_data.cardinality())
    steps = config.steps_per_epoch or batches
    if steps != batches:
        # Fixed-length epochs of `steps` batches over the (reshuffled) training windows.
        train_data = train_data.repeat().take(steps)
    return train_data, val_data, steps, normalization


def evaluate_user_arrays(model, source, normalization, split="val", key=None, stride=1, seed=0,
                         batch_size=16):  # fmt: skip
    """Errors of a model and of persistence on the windows of the user's own data.

    Args:
        model: a kerastp model trained on `normalization`-scaled data.
        source: the array (or file path) the model was trained on.
        normalization: the fitted `kerastp.data.Normalization` of the training split.
        split: "val" (default) or "test".
        key: array name inside `source`, as in training.
        stride, seed: as in training (they fix the windows and the split).
        batch_size: prediction batch size.

    Returns:
        dict with `model` and `persistence`, each holding `mse` / `mae` per pixel in model
        scale and `mse_data_units` / `mae_data_units` after inverting the normalisation,
        plus `windows` and `split`.
    """
    from kerastp.data import arrays

    positive_int("batch_size", batch_size)
    past, future, _ = arrays.prepare_arrays(
        source,
        split,
        key=key,
        input_frames=model.input_frames,
        output_frames=model.output_frames,
        stride=stride,
        normalization=normalization,
        seed=seed,
    )
    forecast = model.predict(past, batch_size=batch_size, verbose=0)
    persistence = np.repeat(past[:, -1:], model.output_frames, axis=1)
    truth_units = normalization.inverse(future)
    scores = {}
    for name, prediction in (("model", forecast), ("persistence", persistence)):
        units = normalization.inverse(prediction)
        scores[name] = {
            "mse": float(np.mean((prediction - future) ** 2)),
            "mae": float(np.mean(np.abs(prediction - future))),
            "mse_data_units": float(np.mean((units - truth_units) ** 2)),
            "mae_data_units": float(np.mean(np.abs(units - truth_units))),
        }
    return {**scores, "data": "arrays", "split": split, "windows": int(len(past))}


def _radar_datasets(model, config):
    """Training and validation windows of the radar events, and steps per epoch."""
    from kerastp.data import radar

    if model.channels != 1 or model.height != model.width:
        raise ValueError(
            "The radar events are square single-channel fields; the model expects "
            f"{model.height}x{model.width}x{model.channels}"
        )
    if model.height != config.radar_resolution:
        raise ValueError(
            f"The model's frames are {model.height}x{model.width}, the radar data "
            f"{config.radar_resolution}x{config.radar_resolution} (`radar_resolution`)"
        )
    common = {
        "path": config.radar_path,
        "resolution": config.radar_resolution,
        "input_frames": model.input_frames,
        "output_frames": model.output_frames,
        "batch_size": config.batch_size,
    }
    train_data = radar.radar_dataset("train", seed=config.seed, **common)
    val_data = radar.radar_dataset("val", shuffle=False, **common)
    batches = int(train_data.cardinality())
    steps = config.steps_per_epoch or batches
    if steps > batches:
        raise ValueError(
            f"`steps_per_epoch`={steps} exceeds the {batches} batches of radar training "
            f"windows at batch_size={config.batch_size}; leave it unset for one pass"
        )
    if steps < batches:
        train_data = train_data.repeat().take(steps)
    return train_data, val_data, steps


def evaluate_radar(model, split="val", path=None, resolution=None, batch_size=16):
    """Nowcasting scores of a model and of persistence on the windows of radar events.

    Forecasts and truth are compared in model scale (MSE / MAE per pixel) and, through the
    exact inverse transform, in mm/h (MSE, CSI / POD / FAR at 0.5, 1 and 5 mm/h, FSS at
    1 mm/h over 8 pixels), per lead time and over the horizon. Persistence (the last input
    frame repeated) is scored on the same windows.

    Args:
        model: a kerastp model, or the path of a `.keras` file or run directory.
        split: which events ("val" by default: the held-out events of the default split).
        path: radar data folder (see `resolve_radar_dir`).
        resolution: 64 or 128; default the model's frame size.
        batch_size: prediction batch size.

    Returns:
        dict with `model` and `persistence` (each `NowcastingEvaluator.result()`), `events`,
        `windows`, `seconds`.
    """
    from kerastp.data import radar
    from kerastp.metrics import NowcastingEvaluator

    positive_int("batch_size", batch_size)
    if not isinstance(model, keras.Model):
        model = load_model(model)
    resolution = model.height if resolution is None else resolution
    past, future, info = radar.radar_arrays(
        split,
        path=path,
        resolution=resolution,
        input_frames=model.input_frames,
        output_frames=model.output_frames,
        return_info=True,
    )
    start = time.perf_counter()
    forecast = model.predict(past, batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - start
    persistence = np.repeat(past[:, -1:], model.output_frames, axis=1)
    scores = {}
    for name, prediction in (("model", forecast), ("persistence", persistence)):
        evaluator = NowcastingEvaluator(inverse=radar.to_rain_rate)
        evaluator.update(future, prediction)
        scores[name] = evaluator.result()
    return {
        **scores,
        "data": "radar",
        "split": split,
        "events": sorted(set(info["event"])),
        "windows": int(len(past)),
        "seconds": seconds,
    }


def radar_summary(result):
    """Headline horizon scores of `evaluate_radar`'s result, model next to persistence.

    Returns:
        dict {"model": {...}, "persistence": {...}} with `mse`, `mae` (per pixel, model
        scale), `mse_mm_h` (per pixel, (mm/h)^2), `csi_<t>` / `pod_<t>` / `far_<t>` at each
        threshold and `fss`, each over the whole horizon.
    """
    summary = {}
    for name in ("model", "persistence"):
        scores = result[name]
        row = {
            "mse": scores["mse"]["total"],
            "mae": scores["mae"]["total"],
            "mse_mm_h": scores["mse_rain_rate"]["total"],
        }
        for score in ("csi", "pod", "far"):
            for threshold, entry in scores[score].items():
                row[f"{score}_{threshold}"] = entry["total"]
        row["fss"] = scores["fss"]["total"]
        summary[name] = row
    return summary


def load_model(path):
    """Loads a kerastp model from a `.keras` file or a run directory (its model.keras).

    Raises:
        FileNotFoundError: no such file or run directory.
        kerastp.artifacts.CorruptArtifactError: (a `ValueError`) a truncated, corrupted or
            foreign file, or one Keras cannot rebuild; the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"No kerastp model at {path} (expected a .keras file or a run dir)")
    check_keras_archive(path)  # CorruptArtifactError for a truncated or foreign file
    registry.register_serializables()
    try:
        return keras.saving.load_model(path)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise CorruptArtifactError(f"{path} is not a readable .keras model: {error}") from error


def standard_sequences(data="procedural", num_sequences=1000, mnist_path=None):
    """The first `num_sequences` sequences of the fixed, seeded standard test set (uint8)."""
    return moving_mnist.standard_test_set(num_sequences, source=data, path=mnist_path)


def evaluate(model, data="procedural", num_sequences=1000, mnist_path=None, batch_size=16):
    """OpenSTL metrics of a model on the fixed standard test set of Moving MNIST.

    Args:
        model: a kerastp model, or the path of a `.keras` file or run directory.
        data: "procedural" or "mnist" (which digits the test set is drawn from).
        num_sequences: the first n sequences of the 10,000-sequence standard test set.
        mnist_path: MNIST location for `data="mnist"`.
        batch_size: prediction batch size.

    Returns:
        dict of `kerastp.metrics.ForecastEvaluator` results plus `data`, `seconds` and
        `sequences_per_second`.
    """
    positive_int("batch_size", batch_size)
    if positive_int("num_sequences", num_sequences) > 10_000:
        raise ValueError(
            f"`num_sequences` must be at most 10000 (the standard test set), got "
            f"num_sequences={num_sequences!r}"
        )
    if not isinstance(model, keras.Model):
        model = load_model(model)
    _check_moving_mnist_model(model)
    if model.height != 64 or model.input_frames + model.output_frames > 20:
        raise ValueError(
            "The standard Moving MNIST test set has 20 frames of 64x64; the model needs "
            f"{model.input_frames}+{model.output_frames} frames of {model.height}x{model.width}"
        )
    sequences = standard_sequences(data, num_sequences, mnist_path)
    evaluator = ForecastEvaluator()
    start = time.perf_counter()
    chunk = 256
    for i in range(0, len(sequences), chunk):
        past, future = moving_mnist.split_frames(
            np.asarray(sequences[i : i + chunk]), model.input_frames, model.output_frames
        )
        prediction = model.predict(past, batch_size=batch_size, verbose=0)
        evaluator.update(future, prediction)
    seconds = time.perf_counter() - start
    result = evaluator.result()
    result.update(
        {"data": data, "seconds": seconds, "sequences_per_second": len(sequences) / seconds}
    )
    return result
