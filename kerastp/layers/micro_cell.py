"""USTEP's micro-temporal recurrent cell, for `keras.layers.RNN(cell, unroll=True)`."""

import keras
from keras import ops

from kerastp.layers.gated_update import GatedUpdate
from kerastp.layers.gsta import GSTABlock
from kerastp.validation import positive_ints


@keras.saving.register_keras_serializable(package="kerastp")
class MicroTemporalCell(keras.layers.Layer):
    """One step of USTEP's micro-temporal recurrence over stacked-frame segments.

    Input of a step: a micro segment of `dt` encoded frames stacked on channels,
    (B, h, w, in_channels). The cell computes `u = F_micro(segment)` (a 1x1 projection to
    `dim`, then `num_blocks` gSTA large-kernel blocks) and updates the hidden state with a
    `GatedUpdate`: `h' = g * c + (1 - g) * h`. Output and new state are `h'`.

    Args:
        dim: int, hidden channels (`hid_T`).
        height: int, latent height (needed for the state shape).
        width: int, latent width.
        num_blocks: int, gSTA blocks in `F_micro`.
        kernel_size: int, gSTA large kernel.
        mlp_ratio: float, gSTA MLP expansion.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: (B, h, w, in_channels) segment.
        states: list with the state (B, h, w, dim).
        training: bool.

    Example:
    >>> cell = MicroTemporalCell(dim=8, height=4, width=4, num_blocks=1, kernel_size=5)
    >>> rnn = keras.layers.RNN(cell, unroll=True, return_sequences=True)
    >>> rnn(keras.ops.zeros((2, 3, 4, 4, 6))).shape
    (2, 3, 4, 4, 8)
    """

    def __init__(self, dim, height, width, num_blocks=2, kernel_size=21, mlp_ratio=4.0, **kwargs):
        super().__init__(**kwargs)
        positive_ints(dim=dim, height=height, width=width, kernel_size=kernel_size)
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 0:
            raise ValueError(f"`num_blocks` must be a non-negative integer, got {num_blocks!r}")
        self.dim = dim
        self.height = height
        self.width = width
        self.num_blocks = num_blocks
        self.kernel_size = kernel_size
        self.mlp_ratio = float(mlp_ratio)
        self.state_size = [(height, width, dim)]
        self.output_size = (height, width, dim)
        dtype = self.dtype_policy
        self.projection = keras.layers.Conv2D(dim, 1, name="projection", dtype=dtype)
        self.blocks = [
            GSTABlock(
                dim, kernel_size=kernel_size, mlp_ratio=mlp_ratio, name=f"gsta_{i}", dtype=dtype
            )
            for i in range(num_blocks)
        ]
        self.update = GatedUpdate(dim, name="update", dtype=dtype)

    def build(self, input_shape):
        shape = (None, self.height, self.width, self.dim)
        self.projection.build(tuple(input_shape))
        for block in self.blocks:
            block.build(shape)
        self.update.build((shape, shape))

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, self.height, self.width, self.dim), dtype=self.compute_dtype)
        ]

    def features(self, inputs, training=None):
        """`F_micro`: the segment's features `u` (B, h, w, dim)."""
        u = self.projection(inputs)
        for block in self.blocks:
            u = block(u, training=training)
        return u

    def call(self, inputs, states, training=None):
        state = states[0] if isinstance(states, list | tuple) else states
        new_state = self.update((self.features(inputs, training=training), state))
        return new_state, [new_state]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dim": self.dim,
                "height": self.height,
                "width": self.width,
                "num_blocks": self.num_blocks,
                "kernel_size": self.kernel_size,
                "mlp_ratio": self.mlp_ratio,
            }
        )
        return config
