"""ConvLSTM (Shi et al. 2015) in OpenSTL's Moving MNIST configuration."""

import keras  # noqa: E402  (kerastp.models.base checked the backend)

from kerastp.layers.conv_lstm_cell import ConvLSTMCell
from kerastp.models.recurrent import PatchRecurrentForecaster


@keras.saving.register_keras_serializable(package="kerastp")
class ConvLSTM(PatchRecurrentForecaster):
    """ConvLSTM: stacked convolutional LSTM cells over patch-folded frames.

    Layer `i` reads the hidden state of layer `i - 1` (layer 0 the input patches); each
    keeps its own `(h, c)`. A bias-free 1x1 convolution reads the top hidden state out to the
    next frame's patches. Time handling, scheduled sampling and input supervision are
    `PatchRecurrentForecaster`'s (OpenSTL's `ConvLSTM_Model` and training method).

    Args:
        input_frames, output_frames, height, width, channels: the forecasting contract.
        num_hidden: list of int, hidden channels per layer (OpenSTL MMNIST: 4 x 128).
        filter_size: int, odd (5).
        patch_size: int (4: 64x64x1 frames become 16x16x16).
        layer_norm: bool (False).
        scheduled_sampling, sampling_start_value, sampling_changing_rate,
        sampling_stop_iter, supervise_inputs: see `PatchRecurrentForecaster`.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        past: (B, input_frames, height, width, channels) float frames in model scale.
        training: bool.

    Example:
    >>> model = ConvLSTM(input_frames=3, output_frames=2, height=8, width=8, channels=1,
    ...                  num_hidden=[4], filter_size=3, patch_size=2)
    >>> model(keras.ops.zeros((2, 3, 8, 8, 1))).shape
    (2, 2, 8, 8, 1)

    Reference:
        Shi et al., "Convolutional LSTM Network: A Machine Learning Approach for Precipitation
        Nowcasting", NeurIPS 2015; OpenSTL `openstl/models/convlstm_model.py`.
    """

    def make_cells(self):
        return [
            ConvLSTMCell(
                filters,
                kernel_size=self.filter_size,
                layer_norm=self.layer_norm,
                name=f"cell_{i}",
            )
            for i, filters in enumerate(self.num_hidden)
        ]

    def initial_state(self):
        return [(None, None) for _ in self.num_hidden]

    def step(self, x, state, training=None):
        new_state = []
        for cell, (h, c) in zip(self.cells, state, strict=True):
            h, c = cell(x, h, c)
            new_state.append((h, c))
            x = h
        return x, new_state
