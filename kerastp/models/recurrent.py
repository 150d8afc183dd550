"""The shared frame of kerastp's patch-recurrent baselines (ConvLSTM, PredRNN)."""

import keras  # noqa: E402  (kerastp.models.base checked the backend)
from keras import ops  # noqa: E402

from kerastp.layers.conv_lstm_cell import odd_kernel
from kerastp.models.base import Forecaster
from kerastp.validation import positive_int


def _unit_interval(name, value):
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1], got {name}={value!r}")
    return float(value)


def _hidden_list(num_hidden):
    if isinstance(num_hidden, int | str) or not num_hidden:
        raise ValueError(
            "`num_hidden` must be a non-empty list of positive integers (one per layer), "
            f"got num_hidden={num_hidden!r}"
        )
    return [positive_int(f"num_hidden[{i}]", n) for i, n in enumerate(num_hidden)]


def scheduled_sampling_eta(iterations, start_value, changing_rate, stop_iter):
    """OpenSTL's linear scheduled-sampling probability at optimizer step `iterations`.

    OpenSTL lowers `eta` by `changing_rate` before each update and sets it to 0 from
    `stop_iter` on, so update number `k` (0-based) uses `start_value - (k + 1) * changing_rate`
    (clipped to [0, 1]) while `k < stop_iter`. `eta` is the probability that a decoder step
    is fed the true frame instead of the model's own prediction.
    """
    k = ops.cast(iterations, "float32")
    eta = ops.clip(start_value - (k + 1.0) * changing_rate, 0.0, 1.0)
    return ops.where(k < float(stop_iter), eta, ops.zeros_like(eta))


class PatchRecurrentForecaster(Forecaster):
    """Base of ConvLSTM and PredRNN: a stack of recurrent cells over patch-folded frames.

    Frames are folded into patches (`space_to_depth(patch_size)`, OpenSTL's `reshape_patch`:
    64x64x1 with patch 4 becomes 16x16x16). The stack runs `T_in + T_out - 1` steps; step `t`
    reads input frame `t` while `t < T_in`, afterwards the frame it predicted at step `t - 1`,
    and a bias-free 1x1 convolution reads the top hidden state out to the next frame. The last
    `T_out` predictions are the forecast. The loop is a Python loop over a static count, so
    the recurrence unrolls into SavedModel and TFLite graphs.

    Training follows OpenSTL:

    - scheduled sampling (`scheduled_sampling=True`): in training, each decoder input is
      the true future frame with probability `eta` and the model's own prediction otherwise,
      drawn per sequence and step; `eta` falls linearly from `sampling_start_value` by
      `sampling_changing_rate` per optimizer step and is 0 from `sampling_stop_iter` on (see
      `scheduled_sampling_eta`). TensorFlow draws the teacher inputs in `train_step`; JAX
      and PyTorch in `compute_loss`, which recomputes the forecast with them (the step
      count is the sampling seed's state, advanced by one per step). Inference
      (`training=False`, `predict`, exports) always feeds predictions back;
    - `supervise_inputs=True`: OpenSTL's loss is the MSE over all `T_in + T_out - 1`
      predicted frames, including the one-step predictions of input frames 2..T_in. Those
      are added with `add_loss` (MSE, weight `(T_in - 1) / T_out`, so that the total is
      proportional to OpenSTL's loss) when `training=True`.

    Subclasses create `self.cells` and implement `initial_state()` and
    `step(x, state, training)`.

    Args:
        input_frames, output_frames, height, width, channels: the forecasting contract.
        num_hidden: list of int, hidden channels per layer.
        filter_size: int, odd convolution size of the cells.
        patch_size: int, frames are folded into `patch_size x patch_size` patches.
        layer_norm: bool, LayerNorm inside the cells.
        scheduled_sampling: bool.
        sampling_start_value: float, `eta` before the first update.
        sampling_changing_rate: float, decrease of `eta` per update.
        sampling_stop_iter: int, update from which `eta` is 0.
        supervise_inputs: bool.
        **kwargs: base `keras.Model` arguments.
    """

    def __init__(
        self,
        input_frames=10,
        output_frames=10,
        height=64,
        width=64,
        channels=1,
        num_hidden=(128, 128, 128, 128),
        filter_size=5,
        patch_size=4,
        layer_norm=False,
        scheduled_sampling=True,
        sampling_start_value=1.0,
        sampling_changing_rate=2e-5,
        sampling_stop_iter=50000,
        supervise_inputs=True,
        **kwargs,
    ):
        super().__init__(input_frames, output_frames, height, width, channels, **kwargs)
        self.num_hidden = _hidden_list(num_hidden)
        self.filter_size = odd_kernel("filter_size", filter_size)
        self.patch_size = positive_int("patch_size", patch_size)
        for arg, value in (("height", self.height), ("width", self.width)):
            if value % self.patch_size:
                raise ValueError(
                    f"`{arg}` must be divisible by patch_size={self.patch_size}, got {arg}={value}"
                )
        self.layer_norm = bool(layer_norm)
        self.scheduled_sampling = bool(scheduled_sampling)
        self.sampling_start_value = _unit_interval("sampling_start_value", sampling_start_value)
        self.sampling_changing_rate = float(sampling_changing_rate)
        if not self.sampling_changing_rate >= 0.0:
            raise ValueError(
                "`sampling_changing_rate` must be >= 0, got "
                f"sampling_changing_rate={sampling_changing_rate!r}"
            )
        if (
            isinstance(sampling_stop_iter, bool)
            or not isinstance(sampling_stop_iter, int)
            or sampling_stop_iter < 0
        ):
            raise ValueError(
                "`sampling_stop_iter` must be a non-negative integer, got "
                f"sampling_stop_iter={sampling_stop_iter!r}"
            )
        self.sampling_stop_iter = sampling_stop_iter
        self.supervise_inputs = bool(supervise_inputs)
        self.patch_height = self.height // self.patch_size
        self.patch_width = self.width // self.patch_size
        self.patch_channels = self.patch_size**2 * self.channels
        self.cells = self.make_cells()
        self.readout = keras.layers.Conv2D(
            self.patch_channels,
            1,
            use_bias=False,
            kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            name="readout",
        )
        self.sampling_seed = keras.random.SeedGenerator(0)
        # Set by `train_step` while Keras traces the training step: (true future patches,
        # per-sequence-and-step mask). Never part of the model's state.
        object.__setattr__(self, "_teacher", None)
        self.build(self.input_signature_shape)

    @property
    def frames_per_step(self):
        # The recurrence produces the whole horizon itself.
        return self.output_frames

    def make_cells(self):
        """The list of recurrent cells, bottom to top."""
        raise NotImplementedError(f"{type(self).__name__} must implement `make_cells()`")

    def initial_state(self):
        """The state before the first step, with None for each (zero) tensor: the cells skip
        the convolutions of a zero state, exactly."""
        raise NotImplementedError(f"{type(self).__name__} must implement `initial_state()`")

    def step(self, x, state, training=None):
        """One time step: input patches (B, h, w, P) -> (top hidden state, new state)."""
        raise NotImplementedError(f"{type(self).__name__} must implement `step()`")

    def build(self, input_shape=None):
        if self.built:
            return
        shape = (None, self.patch_height, self.patch_width, self.patch_channels)
        for cell, filters in zip(self.cells, self.num_hidden, strict=True):
            state = (*shape[:-1], filters)
            cell.build(shape, state, state, *([state] if self.cell_states == 3 else []))
            shape = state
        self.readout.build(shape)

    #: Recurrent tensors per cell call besides the input: 2 (h, c) or 3 (h, c, m).
    cell_states = 2

    def patchify(self, frames):
        """(B, T, H, W, C) -> (B, T, H/p, W/p, p*p*C), OpenSTL's `reshape_patch` order."""
        t = frames.shape[1]
        x = ops.reshape(frames, (-1, self.height, self.width, self.channels))
        x = ops.space_to_depth(x, self.patch_size)
        return ops.reshape(x, (-1, t, self.patch_height, self.patch_width, self.patch_channels))

    def unpatchify(self, patches):
        """The inverse of `patchify`."""
        t = patches.shape[1]
        x = ops.reshape(patches, (-1, self.patch_height, self.patch_width, self.patch_channels))
        x = ops.depth_to_space(x, self.patch_size)
        return ops.reshape(x, (-1, t, self.height, self.width, self.channels))

    def sampling_eta(self, iterations):
        """The scheduled-sampling probability at optimizer step `iterations`."""
        return scheduled_sampling_eta(
            iterations,
            self.sampling_start_value,
            self.sampling_changing_rate,
            self.sampling_stop_iter,
        )

    def teacher_inputs(self, future, iterations):
        """(true future patches, mask (B, T_out - 1)) for one scheduled-sampling step.

        Returns None when scheduled sampling is off or there is nothing to feed back.
        """
        if not self.scheduled_sampling or self.output_frames < 2:
            return None
        expected = (self.output_frames, *self.frame_shape)
        shape = tuple(future.shape)
        if len(shape) != 5 or any(
            got is not None and got != want for got, want in zip(shape[1:], expected, strict=True)
        ):
            raise ValueError(
                f"{type(self).__name__} expects targets `future` of shape "
                f"(B, {', '.join(map(str, expected))}), got {shape}"
            )
        future = ops.cast(future, self.compute_dtype)
        batch = ops.shape(future)[0]
        # The draws of step k depend only on k: a run resumed from a backup (which restores
        # the optimizer's step count but not a generator's position) draws what an
        # uninterrupted run draws, and so does every replica of a distributed run.
        state = self.sampling_seed.state
        step = ops.cast(iterations, state.dtype)
        state.assign(ops.stack([ops.zeros_like(step), step]))
        draws = keras.random.uniform(
            (batch, self.output_frames - 1), seed=self.sampling_seed, dtype="float32"
        )
        mask = ops.cast(draws < self.sampling_eta(iterations), self.compute_dtype)
        return self.patchify(future[:, :-1]), mask

    if keras.backend.backend() != "tensorflow":
        # JAX and PyTorch: the loss recomputes the forecast with the teacher inputs (the
        # targets are known there, not in `call`). The step count comes from the sampling
        # seed's state, which each step's draw advances by exactly one (Keras' ordered
        # seed increment), so eta and the draws follow the optimizer steps as on TensorFlow.

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            if training and y is not None:
                # A copy: PyTorch's variable is updated in place by the draw.
                steps = ops.copy(self.sampling_seed.state.value)[1]
                teacher = self.teacher_inputs(y, steps)
                if teacher is not None:
                    object.__setattr__(self, "_teacher", teacher)
                    try:
                        y_pred = self(x, training=True)
                    finally:
                        object.__setattr__(self, "_teacher", None)
            return super().compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )

    if keras.backend.backend() == "tensorflow":
        # Scheduled sampling needs the targets before the forward pass: Keras' TensorFlow
        # train step with the teacher inputs drawn first.

        def train_step(self, data):
            """Keras' train step with OpenSTL's scheduled sampling on the decoder inputs."""
            x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
            teacher = None
            if y is not None and self.optimizer is not None:
                teacher = self.teacher_inputs(y, self.optimizer.iterations)
            object.__setattr__(self, "_teacher", teacher)
            try:
                return super().train_step(data)
            finally:
                object.__setattr__(self, "_teacher", None)

    def forward(self, window, training=None):
        frames = self.patchify(window)
        teacher = self._teacher if training else None
        state = self.initial_state()
        predictions = []
        prediction = None
        step_shape = (-1, self.patch_height, self.patch_width, self.patch_channels)
        for t in range(self.input_frames + self.output_frames - 1):
            if t < self.input_frames:
                # A slice that keeps its time axis, then a reshape: XNNPACK delegates both,
                # where `frames[:, t]` (a 5-D slice dropping an axis) ran on LiteRT's kernels.
                x = ops.reshape(frames[:, t : t + 1], step_shape)
            elif teacher is not None:
                future, mask = teacher
                keep = mask[:, t - self.input_frames][:, None, None, None]
                x = keep * future[:, t - self.input_frames] + (1.0 - keep) * prediction
            else:
                x = prediction
            top, state = self.step(x, state, training=training)
            prediction = self.readout(top)
            predictions.append(prediction)
        if training and self.supervise_inputs and self.input_frames > 1:
            fitted = ops.stack(predictions[: self.input_frames - 1], axis=1)
            weight = (self.input_frames - 1) / self.output_frames
            error = ops.mean(ops.square(ops.cast(fitted - frames[:, 1:], "float32")))
            self.add_loss(weight * error)
        return self.unpatchify(ops.stack(predictions[self.input_frames - 1 :], axis=1))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_hidden": list(self.num_hidden),
                "filter_size": self.filter_size,
                "patch_size": self.patch_size,
                "layer_norm": self.layer_norm,
                "scheduled_sampling": self.scheduled_sampling,
                "sampling_start_value": self.sampling_start_value,
                "sampling_changing_rate": self.sampling_changing_rate,
                "sampling_stop_iter": self.sampling_stop_iter,
                "supervise_inputs": self.supervise_inputs,
            }
        )
        return config
