"""Exact resume of interrupted training runs, and checkpoints written atomically.

`keras.callbacks.BackupAndRestore` saves the weights and the epoch, and restarts an
interrupted epoch from its first batch: a run killed mid-epoch does not end where an
uninterrupted one does. `TrainingBackup` saves everything the next step depends on, in one
file written atomically (a temporary file beside it, then a rename):

- every model variable: the weights and the state of each `keras.random.SeedGenerator`
  (dropout, drop path, USTEP's masking, scheduled sampling);
- every optimizer variable: moments, `iterations` (so the learning-rate schedule position
  and the scheduled-sampling probability), the loss scale of mixed precision;
- the metric accumulators of the epoch in progress (so the resumed epoch logs the loss of
  the whole epoch);
- the position `(epoch, step)`: epoch `epoch`, `step` optimizer steps into it, and the best
  value of each monitored checkpoint.

`kerastp.training.train` reads the position with `read_backup`, fast-forwards the data stream
to it, finishes the interrupted epoch in a `fit` of the remaining steps and continues with the
other epochs: the resumed run takes the same steps on the same batches with the same random
draws as an uninterrupted one.
"""

import csv
import io
import json
from pathlib import Path

import numpy as np

from kerastp.backend import require_keras

require_keras()

import keras  # noqa: E402

from kerastp.artifacts import CorruptArtifactError  # noqa: E402
from kerastp.saving import atomic_write, load_npz, save_keras, save_npz  # noqa: E402

#: The backup file inside a run's backup directory.
BACKUP_FILE = "state.npz"
FORMAT = 1

#: What `keras.callbacks.BackupAndRestore` (kerastp before exact resume) wrote.
_LEGACY_WEIGHTS = "latest.weights.h5"
_LEGACY_METADATA = "training_metadata.json"

_GROUPS = ("model", "optimizer", "metrics")


def resume_position(step, steps_per_epoch):
    """`(epoch, step_in_epoch)` after `step` optimizer steps of `steps_per_epoch`-step epochs.

    Example:
    >>> resume_position(7, 3)
    (2, 1)
    """
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"`step` must be a non-negative integer, got step={step!r}")
    if (
        isinstance(steps_per_epoch, bool)
        or not isinstance(steps_per_epoch, int | np.integer)
        or steps_per_epoch < 1
    ):
        raise ValueError(
            f"`steps_per_epoch` must be a positive integer, got steps_per_epoch={steps_per_epoch!r}"
        )
    return divmod(int(step), int(steps_per_epoch))


def read_backup(backup_dir):
    """The position a run resumes from, or None for a run without a backup.

    Returns:
        None, or a dict with `epoch` (the epoch to run next or in progress), `step` (optimizer
        steps of that epoch already taken), `steps_per_epoch` and `best` (the best monitored
        value of each checkpoint, in order). A backup written by Keras' `BackupAndRestore`
        gives `step` 0 and `legacy` True (such runs resume at an epoch start).

    Raises:
        kerastp.artifacts.CorruptArtifactError: an unreadable backup (the message says which
            file; delete the backup directory to start the run over).
    """
    backup_dir = Path(backup_dir)
    file = backup_dir / BACKUP_FILE
    if file.is_file():
        try:
            meta = json.loads(str(load_npz(file, ["meta"], what="a training backup")["meta"]))
        except ValueError as error:  # zip, JSON and missing-key errors alike
            raise CorruptArtifactError(
                f"{file} is not a readable kerastp training backup ({type(error).__name__}: "
                f"{error}); delete {backup_dir} to start the run over"
            ) from error
        if meta.get("format") != FORMAT:
            raise CorruptArtifactError(
                f"{file} has backup format {meta.get('format')!r}, this kerastp reads {FORMAT}"
            )
        return meta
    metadata = backup_dir / _LEGACY_METADATA
    if metadata.is_file() and (backup_dir / _LEGACY_WEIGHTS).is_file():
        try:
            epoch = int(json.loads(metadata.read_text())["epoch"])
        except (ValueError, KeyError, TypeError) as error:
            raise CorruptArtifactError(f"{metadata} is not readable: {error}") from error
        return {"epoch": epoch, "step": 0, "best": [], "legacy": True}
    return None


def trim_history(path, epoch):
    """Keeps only the rows of epochs before `epoch` in a CSVLogger file (rewritten atomically).

    A run killed after logging an epoch but before backing it up redoes that epoch; trimming
    first keeps one row per epoch. Rows cut short by the kill are dropped too.
    """
    path = Path(path)
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, kept = rows[0], []
    for row in rows[1:]:
        if len(row) != len(header):
            continue
        try:
            if int(row[0]) < epoch:
                kept.append(row)
        except ValueError:
            continue
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(kept)
    atomic_write(path, buffer.getvalue())


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the model as `.keras` at each epoch end, atomically (`kerastp.saving.save_keras`).

    Unlike `keras.callbacks.ModelCheckpoint`, which writes in place, a save that fails or is
    killed leaves the previous checkpoint loadable.

    Args:
        path: destination ending in `.keras`.
        monitor: None saves every epoch; a log name (such as "val_loss") saves only when it
            improves on `best`.
        mode: "min" or "max", for `monitor`.
    """

    def __init__(self, path, monitor=None, mode="min"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got mode={mode!r}")
        self.path = Path(path)
        self.monitor = monitor
        self.mode = mode
        self.best = None

    def _improves(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None or not np.isfinite(value) or not self._improves(float(value)):
                return
            self.best = float(value)
        save_keras(self.model, self.path)


class TrainingBackup(keras.callbacks.Callback):
    """Backs up the whole training state atomically; restores it for an exact resume.

    Writes `<backup_dir>/state.npz` at every epoch end and, with `save_every`, every that many
    optimizer steps inside an epoch (see the module docstring for what it holds). With
    `resume` (what `read_backup` returned), the state is restored when the first `fit` starts,
    and the metric accumulators when the resumed epoch begins; that `fit` must then start at
    epoch `resume["epoch"]` and run `steps_per_epoch - resume["step"]` steps of it.

    Args:
        backup_dir: the backup directory.
        steps_per_epoch: optimizer steps per epoch.
        save_every: None (epoch ends only) or a positive int.
        resume: None, or the dict `read_backup` returned.
        checkpoints: `AtomicCheckpoint`s whose best values are backed up and restored.
    """

    def __init__(self, backup_dir, steps_per_epoch, save_every=None, resume=None, checkpoints=()):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.steps_per_epoch = int(steps_per_epoch)
        if save_every is not None and (
            isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1
        ):
            raise ValueError(f"`save_every` must be None or a positive int, got {save_every!r}")
        self.save_every = save_every
        self.resume = resume
        self.checkpoints = list(checkpoints)
        self._restored = resume is None
        self._metrics_pending = False
        self._epoch = 0
        self._offset = 0
        self._step = 0
        resumes_mid_epoch = (
            resume is not None and not resume.get("legacy") and int(resume["step"]) > 0
        )
        if save_every is None and not resumes_mid_epoch:
            self._drop_batch_hook()

    def _drop_batch_hook(self):
        """Leaves `on_train_batch_end` to Keras' default (marked as such). One callback with a
        batch hook makes Keras call all batch hooks in step with training, after each step,
        waiting for the step's logs; backups at epoch ends need none."""
        self.on_train_batch_end = keras.callbacks.Callback.on_train_batch_end.__get__(self)

    @property
    def path(self):
        return self.backup_dir / BACKUP_FILE

    def _variables(self):
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        return {
            "model": list(self.model.variables),
            "optimizer": list(optimizer.variables) if optimizer is not None else [],
            "metrics": list(self.model.metrics_variables),
        }

    # -- saving ---------------------------------------------------------------------------

    def save(self, epoch, step):
        """Writes the current state as position (`epoch`, `step`)."""
        groups = self._variables()
        arrays = {}
        for group in _GROUPS:
            for i, variable in enumerate(groups[group]):
                arrays[f"{group}_{i:06d}"] = np.asarray(keras.ops.convert_to_numpy(variable))
        meta = {
            "format": FORMAT,
            "epoch": int(epoch),
            "step": int(step),
            "steps_per_epoch": self.steps_per_epoch,
            "counts": {group: len(groups[group]) for group in _GROUPS},
            "best": [checkpoint.best for checkpoint in self.checkpoints],
        }
        arrays["meta"] = np.array(json.dumps(meta))
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        save_npz(self.path, **arrays)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._offset = int(self.resume["step"]) if self._metrics_pending else 0
        self._step = self._offset

    def on_train_batch_end(self, batch, logs=None):
        if self._metrics_pending:
            self._merge_metrics()
        step = self._offset + int(batch) + 1
        crossed = self.save_every is not None and (
            step // self.save_every > self._step // self.save_every
        )
        self._step = step
        # A backup at the epoch's last step would only precede the epoch-end one.
        if crossed and step < self.steps_per_epoch:
            self.save(self._epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1, 0)

    # -- restoring ------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self._restored:
            return
        self._restored = True
        if self.resume.get("legacy"):
            self._variables()  # builds the optimizer, whose variables the file holds
            self.model.load_weights(self.backup_dir / _LEGACY_WEIGHTS)
        else:
            self._arrays = load_npz(self.path, what="a training backup")
            self._assign("model")
            self._assign("optimizer")
            self._metrics_pending = int(self.resume["step"]) > 0
            if not self._metrics_pending:
                self._arrays = None
        for checkpoint, best in zip(self.checkpoints, self.resume.get("best", []), strict=False):
            checkpoint.best = best

    def _merge_metrics(self):
        """Adds the interrupted epoch's metric accumulators to those of its first resumed step.

        Keras creates the compiled metrics while tracing the first step, so they cannot be
        assigned before it. kerastp's training metrics are means (a total and a count, both
        sums), so adding the saved accumulators gives what an uninterrupted epoch holds (the
        same sums: float addition is commutative). A metric with other state is left as is:
        the epoch's logged training metrics then cover the resumed steps only.
        """
        self._metrics_pending = False
        if self.save_every is None:
            self._drop_batch_hook()  # the next `fit` dispatches batch callbacks asynchronously
        variables = self._variables()["metrics"]
        additive = all(v.path.split("/")[-1] in ("total", "count") for v in variables)
        if additive and len(variables) == int(self.resume["counts"]["metrics"]):
            for i, variable in enumerate(variables):
                saved = self._arrays[f"metrics_{i:06d}"]
                if tuple(saved.shape) == tuple(variable.shape):
                    variable.assign(keras.ops.convert_to_numpy(variable) + saved)
        self._arrays = None

    def _assign(self, group):
        variables = self._variables()[group]
        count = int(self.resume["counts"][group])
        if count != len(variables):
            raise ValueError(
                f"{self.path} holds {count} {group} variables, the model being trained has "
                f"{len(variables)}: it belongs to another model; delete {self.backup_dir} to "
                "start the run over"
            )
        for i, variable in enumerate(variables):
            value = self._arrays[f"{group}_{i:06d}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"{self.path}: {group} variable {i} ({variable.path}) has shape "
                    f"{tuple(variable.shape)}, the backup {tuple(value.shape)}"
                )
            variable.assign(value)
