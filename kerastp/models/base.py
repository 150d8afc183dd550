"""The forecasting contract shared by every kerastp model (SPEC §1)."""

import numpy as np

from kerastp.backend import require_keras

require_keras()

import keras  # noqa: E402
from keras import ops  # noqa: E402

_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


from kerastp.validation import check_frames, positive_int  # noqa: E402


def check_frames_array(frames, *, name, frames_per_sequence, height, width, channels):
    """Validates a NumPy batch of frames against a model's contract.

    Raises `ValueError` naming `name` for a wrong rank, an empty batch, a wrong frame count,
    frame size or channel count, a non-floating dtype, and for NaN or Inf values.

    Returns:
        The array as float32.
    """
    return check_frames(
        frames,
        name,
        (None, frames_per_sequence, height, width, channels),
        hint=" (batch, time, height, width, channels)",
    )


def _is_eager_tensor(value):
    """A backend tensor whose values exist now (not symbolic: not traced, not Keras')."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return isinstance(value, tf.Tensor) and tf.executing_eagerly() and hasattr(value, "numpy")
    if backend == "jax":
        import jax

        try:
            from jax.core import Tracer
        except ImportError:  # moved in newer JAX
            from jax._src.core import Tracer
        return isinstance(value, jax.Array) and not isinstance(value, Tracer)
    if backend == "torch":
        import torch

        return isinstance(value, torch.Tensor) and value.device.type != "meta"
    return False


def _is_numeric_nest(value):
    """True for nested lists of numbers (one array written as lists), not lists of arrays."""
    while isinstance(value, list | tuple):
        if not value:
            return True
        value = value[0]
    return isinstance(value, int | float | np.number)


class Forecaster(keras.Model):
    """Base class of kerastp models: `past` (B, T_in, H, W, C) -> `future` (B, T_out, H, W, C).

    A subclass implements `forward(window, training)`, mapping the last `input_frames`
    frames to the next `frames_per_step` frames. `call()` validates the input, then rolls
    the forecast out inside the graph: when `output_frames` exceeds what one forward pass
    gives, predictions are fed back as inputs (a Python loop over a static count, so the
    rollout unrolls into SavedModel and TFLite graphs); surplus frames are cropped.

    Args:
        input_frames: int, T_in.
        output_frames: int, T_out (smaller or larger than T_in).
        height: int, frame height H.
        width: int, frame width W.
        channels: int, channels per frame C.
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).
    """

    #: Peak learning rate that `compile(total_steps=...)` uses when none is given.
    default_learning_rate = 1e-3

    #: What a full-int8 TFLite export keeps in float unless told otherwise
    #: (`kerastp.export.export_tflite`): operator types and layer names, chosen per model
    #: from the quantisation debugger's per-layer errors and held-out MSE
    #: (benchmarks/results/int8.md). Empty: fully integer.
    int8_float_ops = ()
    int8_float_layers = ()

    def __init__(self, input_frames, output_frames, height, width, channels, **kwargs):
        super().__init__(**kwargs)
        self.input_frames = positive_int("input_frames", input_frames)
        self.output_frames = positive_int("output_frames", output_frames)
        self.height = positive_int("height", height)
        self.width = positive_int("width", width)
        self.channels = positive_int("channels", channels)

    @property
    def frames_per_step(self):
        """Frames one forward pass predicts; by default min(T_in, T_out)."""
        return min(self.input_frames, self.output_frames)

    @property
    def frame_shape(self):
        return (self.height, self.width, self.channels)

    @property
    def input_signature_shape(self):
        """(None, T_in, H, W, C): the serving input shape with a dynamic batch."""
        return (None, self.input_frames, *self.frame_shape)

    def forward(self, window, training=None):
        """Maps (B, T_in, H, W, C) to the next (B, frames_per_step, H, W, C)."""
        raise NotImplementedError(f"{type(self).__name__} must implement `forward()`")

    def _check_symbolic(self, past):
        if not hasattr(past, "shape") or not hasattr(past, "dtype"):
            raise ValueError(
                f"{type(self).__name__} expects `past` as one array or tensor of shape "
                f"(B, {self.input_frames}, {', '.join(map(str, self.frame_shape))}), got "
                f"{type(past).__name__}"
            )
        shape = tuple(past.shape)
        expected = (self.input_frames, *self.frame_shape)
        if len(shape) != 5:
            raise ValueError(
                f"{type(self).__name__} expects `past` of rank 5 (batch, time, height, width, "
                f"channels) = (B, {', '.join(map(str, expected))}), got shape {shape}"
            )
        for axis, (got, want) in enumerate(zip(shape[1:], expected, strict=True), start=1):
            if got is not None and got != want:
                raise ValueError(
                    f"{type(self).__name__} expects `past` of shape "
                    f"(B, {', '.join(map(str, expected))}) (time, height, width, channels), "
                    f"got {shape}: axis {axis} is {got}, expected {want}"
                )
        if shape[0] == 0:
            raise ValueError(f"{type(self).__name__} got an empty batch: `past` of shape {shape}")
        try:
            dtype = keras.backend.standardize_dtype(past.dtype)
        except ValueError:  # NumPy strings, objects, ...
            dtype = str(past.dtype)
        if dtype not in _FLOAT_DTYPES:
            hint = " (divide uint8 frames by 255 first)" if dtype == "uint8" else ""
            raise ValueError(
                f"{type(self).__name__} expects `past` to hold floating-point frames in model "
                f"scale, got dtype {dtype}{hint}"
            )

    def __call__(self, *args, **kwargs):
        """Checks `past` before Keras sees it: a user's mistake gets kerastp's `ValueError`
        (naming `past`, the shape or dtype received and the one expected), not an error from
        deep inside TensorFlow. Eager inputs (NumPy arrays, eager tensors) are also checked
        for NaN and Inf; symbolic ones (inside `fit`, `predict`, exports) for shape and dtype.
        """
        past = args[0] if args else kwargs.get("past", kwargs.get("inputs"))
        if isinstance(past, list | tuple) and _is_numeric_nest(past):
            past = check_frames(past, "past", (None, self.input_frames, *self.frame_shape))
            args, kwargs = (past, *args[1:]), {k: v for k, v in kwargs.items() if k != "past"}
        if isinstance(past, np.ndarray):
            if past.dtype == object:
                raise ValueError(
                    f"{type(self).__name__} expects `past` of real numbers, got an array of "
                    f"Python objects (dtype object, shape {past.shape})"
                )
            self._check_symbolic(past)
            check_frames_array(
                past,
                name="past",
                frames_per_sequence=self.input_frames,
                height=self.height,
                width=self.width,
                channels=self.channels,
            )
        elif args or "past" in kwargs:
            self._check_symbolic(past)
            if _is_eager_tensor(past) and not bool(ops.all(ops.isfinite(past))):
                bad = int(ops.sum(ops.cast(ops.logical_not(ops.isfinite(past)), "int32")))
                raise ValueError(
                    f"`past` holds {bad} NaN or Inf values (shape {tuple(past.shape)})"
                )
        return super().__call__(*args, **kwargs)

    def call(self, past, training=None):
        self._check_symbolic(past)
        past = ops.cast(past, self.compute_dtype)
        window = past
        outputs = []
        produced = 0
        while produced < self.output_frames:
            step = self.forward(window, training=training)
            outputs.append(step)
            produced += self.frames_per_step
            if produced < self.output_frames:
                window = ops.concatenate([window, step], axis=1)[:, -self.input_frames :]
        future = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=1)
        if produced > self.output_frames:
            future = future[:, : self.output_frames]
        # Under a mixed-precision policy the forecast leaves in the variables' dtype (float32),
        # so losses, metrics and exported signatures stay float32.
        return ops.cast(future, self.dtype_policy.variable_dtype)

    if keras.backend.backend() == "tensorflow":
        # tf.distribute's multi-worker reduction; the JAX and PyTorch trainers' steps have
        # other signatures and need nothing of the kind.

        def train_step(self, data):
            return self._multi_worker_logs(super().train_step(data))

        def test_step(self, data):
            return self._multi_worker_logs(super().test_step(data))

    def _multi_worker_logs(self, logs):
        """Gives scalar logs a length-1 axis under a multi-worker strategy.

        Keras' TensorFlow trainer reduces each log across workers with
        `strategy.reduce("MEAN", value, axis=0)`, which fails for the scalar losses and
        metrics of every model; a (1,) value reduces to the global mean.
        """
        strategy = getattr(self, "_distribute_strategy", None)
        extended = getattr(strategy, "extended", None)
        multi_worker = getattr(extended, "_in_multi_worker_mode", lambda: False)()
        if not multi_worker:
            return logs
        return {name: ops.reshape(value, (1,)) for name, value in logs.items()}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Builds the model, its optimizer and metrics from the known shapes, without data.

        Keras' TensorFlow trainer otherwise peeks at a batch of the dataset (opening one more
        iterator on the training data; under `MultiWorkerMirroredStrategy` it reduces that
        batch across replicas, which cannot be done eagerly), or leaves the optimizer's
        variables to the first traced step, which then traces twice.
        """
        if data_batch is not None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        past = np.zeros((1, self.input_frames, *self.frame_shape), "float32")
        future = np.zeros((1, self.output_frames, *self.frame_shape), "float32")
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None:
            return self._symbolic_build(data_batch=(past, future))
        with strategy.scope():
            self._symbolic_build(data_batch=(past, future))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_frames, *self.frame_shape)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`, with array and eager-tensor input checked against the
        contract first (rank, shape, empty batch, dtype, NaN / Inf: `ValueError` naming
        `past`). Values are not range-checked: a model does not know its data's range."""
        if _is_eager_tensor(x):
            x = ops.convert_to_numpy(x)
        if isinstance(x, np.ndarray) or (isinstance(x, list | tuple) and _is_numeric_nest(x)):
            x = check_frames_array(
                x,
                name="past",
                frames_per_sequence=self.input_frames,
                height=self.height,
                width=self.width,
                channels=self.channels,
            )
        return super().predict(x, *args, **kwargs)

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        metrics="auto",
        *,
        learning_rate=None,
        total_steps=None,
        **kwargs,
    ):
        """`keras.Model.compile` with defaults suited to forecasting.

        Args:
            optimizer: `"auto"` gives Adam (epsilon 1e-8). With `total_steps`, it runs
                the one-cycle policy of the STLight paper (learning rate and beta_1 cycled,
                see `kerastp.optimizers.one_cycle_adam`) peaking at `learning_rate`;
                without, a constant `learning_rate`. Anything Keras accepts is passed on.
            loss: `"auto"` is the model's `default_loss()` (the mean squared error unless a
                model's paper trains with more, e.g. TAU); a name of
                `kerastp.losses.NAMED_LOSSES` ("intensity", "intensity_csi": the rain-aware
                `IntensityWeightedLoss`) builds that loss; anything Keras accepts is passed on.
            metrics: `"auto"` gives `FrameMSE` and `FrameMAE` (OpenSTL's per-frame sums).
            learning_rate: float; default `default_learning_rate` of the model class.
            total_steps: int, optimizer steps of the run (epochs * steps per epoch), which
                turns on the one-cycle schedule.
            **kwargs: other `keras.Model.compile` arguments.
        """
        from kerastp import losses as kerastp_losses
        from kerastp import metrics as kerastp_metrics
        from kerastp.optimizers import ScheduledAdam, one_cycle_adam

        if isinstance(optimizer, str) and optimizer == "auto":
            peak = self.default_learning_rate if learning_rate is None else learning_rate
            if total_steps is not None:
                optimizer = one_cycle_adam(peak, int(total_steps))
            else:
                optimizer = ScheduledAdam(learning_rate=peak, epsilon=1e-8)
        if isinstance(loss, str) and loss == "auto":
            loss = self.default_loss()
        elif isinstance(loss, str) and loss in kerastp_losses.NAMED_LOSSES:
            loss = kerastp_losses.get(loss)
        if isinstance(metrics, str) and metrics == "auto":
            metrics = [kerastp_metrics.FrameMSE(), kerastp_metrics.FrameMAE()]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def default_loss(self):
        """The training loss `compile(loss="auto")` uses: the mean squared error."""
        return keras.losses.MeanSquaredError()

    def compile_from_config(self, config):
        """Restores the compiled state saved in a `.keras` file (optimizer, loss, metrics)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        """The constructor arguments (plus Keras' `name`, `trainable` and `dtype`)."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "input_frames": self.input_frames,
            "output_frames": self.output_frames,
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)
