"""Training on `model.fit`: run directories and resumable runs.

`train(TrainConfig(...))` builds a preset, compiles it with the one-cycle policy of the
STLight paper and fits it on the run's data source (`kerastp.data.sources`: freshly
generated Moving MNIST, radar events or the user's arrays), then scores it with
`kerastp.evaluation.evaluate`. Each run owns a directory (`kerastp.runs`):

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
import time
from pathlib import Path

from kerastp.backend import require_keras

keras = require_keras()

from kerastp import options, precision, registry, runs  # noqa: E402
from kerastp.checkpointing import (  # noqa: E402
    AtomicCheckpoint,
    TrainingBackup,
    read_backup,
    trim_history,
)
from kerastp.data.sources import source_from_config  # noqa: E402
from kerastp.evaluation.evaluate import evaluate  # noqa: E402
from kerastp.saving import remove, save_keras, write_json  # noqa: E402
from kerastp.validation import (  # noqa: E402
    check_output_dir,
    finite_number,
    non_negative_int,
    positive_int,
)


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; written to `<run_dir>/config.json`.

    Args:
        preset: registry preset name, or a pretrained model's name (`kerastp.registry.
            PRETRAINED`: "mmnist", "radar") to fine-tune it: the run starts from the shipped
            model's architecture and weights (its SHA-256 checked and recorded), with its
            fine-tuning defaults (a lower learning rate, a few epochs); `overrides` cannot
            change a pretrained architecture, and the data must fit its frames.
        data: a registered data source (`kerastp.registry.SOURCES`): "procedural"
            (built-in Moving MNIST digits, no file), "mnist" (real MNIST digits), "radar"
            (the radar nowcasting events: 6 frames in, 12 out, train on the training events,
            validate and evaluate on the validation events; the model's frame counts and
            size follow unless `overrides` set them) or "arrays" (your own file). None:
            "procedural", or for a pretrained preset the data it was trained on.
        mnist_path: MNIST location for `data="mnist"` (see `resolve_mnist_path`).
        radar_path: radar data folder for `data="radar"` (see `resolve_radar_dir`).
        radar_resolution: 64 or 128 pixels per side (None: 64).
        data_path: for `data="arrays"`, the user's file (.npy, .npz, .h5, .zarr, .nc) of
            (N, T, H, W, C) sequences or one (T, H, W, C) series; the model's frame size
            follows the data unless `overrides` set it.
        data_key: array / dataset / variable name inside `data_path` when it holds several.
        normalization: "minmax", "zscore", "log1p" or "none", fitted on the training split
            only; recorded in config.json and every exported artifact's sidecar.
        stride: window stride for `data="arrays"` and for the radar training windows (the
            radar validation windows keep the protocol's stride 3).
        augment: "none", "dihedral" or "dihedral_shift": rotations, flips (and shifts) of
            the radar training windows (`kerastp.data.augment.WindowAugmentation`).
        run_dir: the run's directory; default `runs/<preset>`.
        epochs: None takes the preset's.
        steps_per_epoch: optimizer steps per epoch; None gives 10,000 sequences per epoch
            (the Moving MNIST protocol), or one pass over the training windows (radar).
        batch_size: None takes the preset's.
        learning_rate: peak learning rate; None takes the preset's.
        schedule: "one_cycle" (paper) or "constant".
        loss: "auto" (the model's own), "mse", or a rain-aware loss of
            `kerastp.losses.NAMED_LOSSES` ("intensity", "intensity_csi").
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
    data: str | None = None
    mnist_path: str | None = None
    radar_path: str | None = None
    radar_resolution: int | None = None
    data_path: str | None = None
    data_key: str | None = None
    normalization: str = "minmax"
    stride: int = 1
    augment: str = "none"
    run_dir: str | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    schedule: str = "one_cycle"
    loss: str = "auto"
    val_sequences: int = 256
    eval_sequences: int = 1000
    seed: int = 0
    tensorboard: bool = False
    backup_every: int | None = None
    overrides: dict = dataclasses.field(default_factory=dict)
    strategy: str | None = None
    mixed_precision: str | None = None
    verbose: int = 1

    def source(self):
        """The run's `kerastp.data.sources.DataSource`."""
        return source_from_config(dataclasses.asdict(self))

    def resolved(self):
        """A copy with every None default filled in from the preset; validates values."""
        training = registry.training_settings(self.preset)
        config = dataclasses.replace(self, overrides=dict(self.overrides))
        pretrained = config.preset in registry.PRETRAINED
        if config.data is None:  # a pretrained model fine-tunes on its own data by default
            config.data = registry.PRETRAINED[config.preset]["data"] if pretrained else "procedural"
        if pretrained and config.overrides:
            raise ValueError(
                f"preset={config.preset!r} is a pretrained model, whose architecture is fixed: "
                f"`overrides` ({', '.join(sorted(config.overrides))}) cannot change it. "
                "Fine-tune it as it is, or train an architecture preset with overrides."
            )
        options.check_choice("data", config.data, options.DATA_SOURCES)
        options.check_choice("strategy", config.strategy, options.STRATEGIES)
        precision.policy_name(config.mixed_precision)
        options.check_choice("schedule", config.schedule, options.SCHEDULES)
        options.check_choice("loss", config.loss, options.LOSSES)
        options.check_choice("augment", config.augment, options.AUGMENTATIONS)
        config.epochs = training["epochs"] if config.epochs is None else config.epochs
        config.batch_size = (
            training["batch_size"] if config.batch_size is None else config.batch_size
        )
        if config.learning_rate is None:
            config.learning_rate = training["max_learning_rate"]
        source = config.source()
        if config.augment != "none" and not source.augmentable:
            raise ValueError(
                f"`augment`={config.augment!r} is not available for data={config.data!r}: "
                "only windowed sources that declare it (radar) augment their training windows"
            )
        source.check()  # finds the data before any model is built
        # What the data fixes (radar: 6 -> 12 frames of its size) unless `overrides` set it;
        # a pretrained model's frames are its own (`_train` checks that the data fits them).
        if not pretrained:
            config.overrides = {**source.model_overrides(config.preset), **config.overrides}
        config = dataclasses.replace(config, **source.resolved_settings())
        positive_int("batch_size", config.batch_size)
        if config.steps_per_epoch is None:
            config.steps_per_epoch = source.default_steps_per_epoch(config.batch_size)
        if config.run_dir is None:
            config.run_dir = str(Path("runs") / config.preset)
        for name in ("epochs", "batch_size", "steps_per_epoch", "val_sequences"):
            value = getattr(config, name)
            if name == "steps_per_epoch" and value is None and not source.generated:
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
    if keras.backend.backend() != "tensorflow":
        if config.strategy is not None:
            raise ValueError(
                f"strategy={config.strategy!r} is tf.distribute, which needs the TensorFlow "
                f"backend (Keras runs on {keras.backend.backend()!r}); on JAX use "
                "keras.distribution.DataParallel (see the README), or leave strategy unset"
            )
        with precision.policy_scope(precision.policy_name(config.mixed_precision)):
            return _train(config, callbacks, None)
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


def _skip(data, batches):
    """The stream without its first `batches` batches (a tf.data dataset or a kerastp
    PyDataset, whose first pass then starts later)."""
    if not batches:
        return data
    if hasattr(data, "skip_batches"):
        data.skip_batches(batches)
        return data
    return data.skip(batches)


def _shard_by_data(dataset):
    """Splits each global batch over the replicas (generator datasets have no files); a
    PyDataset is left to Keras, which builds its tf.data stream."""
    if not hasattr(dataset, "with_options"):
        return dataset
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
    options.check_choice("strategy", name, options.STRATEGIES)


def is_chief(strategy):
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def _pretrained_start(name):
    """A pretrained model rebuilt for training: the shipped model's class and config in the
    current dtype policy (mixed precision applies), its weights copied in.

    Returns:
        (model, init record: the pretrained name and the SHA-256 of its checked file).
    """
    from kerastp import pretrained
    from kerastp.saving import load_model

    path = pretrained.pretrained_file(name, "keras")  # checks the recorded SHA-256
    shipped = load_model(path)
    model_config = shipped.get_config()
    model_config.pop("dtype", None)
    model = type(shipped).from_config(model_config)
    model(keras.ops.zeros((1, *shipped.input_signature_shape[1:])), training=False)
    model.set_weights(shipped.get_weights())
    sha256 = registry.PRETRAINED[name]["files"]["keras"]["sha256"]
    return model, {"pretrained": name, "sha256": sha256}


def _train(config, callbacks, strategy):
    run_dir = Path(config.run_dir)
    keras.utils.set_random_seed(config.seed)

    source = config.source()
    shape = source.frame_shape()  # the user's arrays: the model's frames follow the data
    follow = {} if shape is None else dict(zip(("height", "width", "channels"), shape, strict=True))
    init = None
    if config.preset in registry.PRETRAINED:
        model, init = _pretrained_start(config.preset)
    else:
        model = registry.build_model(config.preset, **{**follow, **config.overrides})
    source.check_model(model)
    source.prepare(model)  # fits what depends on the training split (a normalisation)
    data_scale = source.data_scale()
    train_data, steps = source.training_stream(
        model, config.batch_size, config.steps_per_epoch, 0, config.epochs
    )
    total_steps = config.epochs * steps
    resolved = {
        **dataclasses.asdict(config),
        "model_class": type(model).__name__,
        "model_config": model.get_config(),
        "params": registry.count_trainable_params(model),
        "data_scale": data_scale,
        "backend": keras.backend.backend(),
    }
    if init is not None:
        resolved["init"] = init
    config_file = run_dir / runs.CONFIG_FILE
    if config_file.is_file():
        previous = json.loads(config_file.read_text())
        # Where the run and the data sets lie is not a setting (`runs.LOCATION_SETTINGS`): a
        # run directory moved to another machine (back from a GPU box) resumes there.
        ignored = {"verbose", "eval_sequences", "tensorboard", "backup_every"}
        ignored.update(runs.LOCATION_SETTINGS)
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
        loss=config.loss,
        learning_rate=config.learning_rate,
        total_steps=total_steps if config.schedule == "one_cycle" else None,
    )

    backup_dir = run_dir / runs.BACKUP_DIR
    # (epoch, step): where the last backup stood; the run continues at the next step.
    resume = read_backup(backup_dir)
    initial_epoch, resume_step = (resume["epoch"], resume["step"]) if resume else (0, 0)
    val_data = source.validation_stream(model, config.batch_size, config.val_sequences)
    # Everything the run needs exists: only now does the run directory get written, so a
    # failed start leaves nothing that would block the corrected command.
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_file, resolved)
    history_file = run_dir / runs.HISTORY_FILE
    if resume:
        # One row per epoch: rows of epochs the backup does not cover are logged again.
        trim_history(history_file, initial_epoch)
    elif history_file.exists():
        history_file.unlink()  # a fresh run starts a fresh history
    checkpoints = run_dir / runs.CHECKPOINTS_DIR
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
        # An interrupted epoch skips the batches it took. A generated stream holds every
        # epoch of the fit: one iterator for the whole fit.
        data, _ = source.training_stream(
            model, config.batch_size, config.steps_per_epoch, first_epoch, max(num_epochs, 1)
        )
        data = _skip(data, skip)
        if config.strategy is not None:
            data = _shard_by_data(data)
        history = model.fit(
            data,
            initial_epoch=first_epoch,
            epochs=first_epoch + num_epochs,
            steps_per_epoch=steps - skip if source.generated else None,
            validation_data=val_data,
            callbacks=callbacks,
            shuffle=False,
            verbose=config.verbose,
        )
        for key, values in history.history.items():
            logs.setdefault(key, []).extend(values)
    seconds = time.perf_counter() - start
    with precision.policy_scope("float32"):
        save_keras(precision.float32_model(model), run_dir / runs.MODEL_FILE)

    metrics = None
    if config.eval_sequences:
        metrics = evaluate(
            model, num_sequences=config.eval_sequences, batch_size=config.batch_size, source=source
        )
        metrics["train_seconds"] = seconds
        write_json(run_dir / runs.METRICS_FILE, metrics)
    # The run is complete (a kill before this line resumes and only redoes the writes above);
    # rerunning it with the same settings starts over.
    remove(backup_dir)
    return {
        "model": model,
        "run_dir": str(run_dir),
        "history": logs,
        "metrics": metrics,
        "seconds": seconds,
        "config": resolved,
    }
