"""PredRNN (Wang et al. 2017) in OpenSTL's Moving MNIST configuration."""

import keras  # noqa: E402  (kerastp.models.base checked the backend)

from kerastp.layers.st_lstm_cell import SpatioTemporalLSTMCell
from kerastp.models.recurrent import PatchRecurrentForecaster


@keras.saving.register_keras_serializable(package="kerastp")
class PredRNN(PatchRecurrentForecaster):
    """PredRNN: stacked spatio-temporal LSTM cells with a zig-zag memory flow.

    Each layer keeps its own hidden state `h` and temporal memory `c`; one spatio-temporal
    memory `m` travels up the stack inside a time step and from the top layer to the bottom
    layer of the next step. Time handling, scheduled sampling and input supervision are
    `PatchRecurrentForecaster`'s (OpenSTL's `PredRNN_Model` and training method).

    Args:
        input_frames, output_frames, height, width, channels: the forecasting contract.
        num_hidden: list of int, hidden channels per layer; all equal, since `m` passes
            through every layer (OpenSTL MMNIST: 4 x 128).
        filter_size: int, odd (5).
        patch_size: int (4).
        layer_norm: bool (False).
        forget_bias: float, added to both forget gates (1.0).
        scheduled_sampling, sampling_start_value, sampling_changing_rate,
        sampling_stop_iter, supervise_inputs: see `PatchRecurrentForecaster`.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        past: (B, input_frames, height, width, channels) float frames in model scale.
        training: bool.

    Example:
    >>> model = PredRNN(input_frames=3, output_frames=2, height=8, width=8, channels=1,
    ...                 num_hidden=[4, 4], filter_size=3, patch_size=2)
    >>> model(keras.ops.zeros((2, 3, 8, 8, 1))).shape
    (2, 2, 8, 8, 1)

    Reference:
        Wang, Long, Wang, Gao, Yu, "PredRNN: Recurrent Neural Networks for Predictive Learning
        using Spatiotemporal LSTMs", NeurIPS 2017; OpenSTL `openstl/models/predrnn_model.py`.
    """

    default_learning_rate = 5e-4
    cell_states = 3

    def __init__(self, *args, forget_bias=1.0, **kwargs):
        self.forget_bias = float(forget_bias)
        hidden = kwargs.get("num_hidden", (128, 128, 128, 128))
        if not isinstance(hidden, int | str) and len(set(hidden)) > 1:
            raise ValueError(
                "PredRNN's spatio-temporal memory passes through every layer, so `num_hidden` "
                f"must hold one value repeated, got num_hidden={list(hidden)!r}"
            )
        super().__init__(*args, **kwargs)

    def make_cells(self):
        return [
            SpatioTemporalLSTMCell(
                filters,
                kernel_size=self.filter_size,
                forget_bias=self.forget_bias,
                layer_norm=self.layer_norm,
                name=f"cell_{i}",
            )
            for i, filters in enumerate(self.num_hidden)
        ]

    def initial_state(self):
        return [(None, None) for _ in self.num_hidden], None

    def step(self, x, state, training=None):
        layers, memory = state
        new_layers = []
        for cell, (h, c) in zip(self.cells, layers, strict=True):
            h, c, memory = cell(x, h, c, memory)
            new_layers.append((h, c))
            x = h
        return x, (new_layers, memory)

    def get_config(self):
        config = super().get_config()
        config["forget_bias"] = self.forget_bias
        return config
