"""The convolutional gated update that links temporal segments in USTEP."""

import keras
from keras import ops

from kerastp.validation import positive_ints


@keras.saving.register_keras_serializable(package="kerastp")
class GatedUpdate(keras.layers.Layer):
    """`h' = g * c + (1 - g) * h`, with `g = sigmoid(Conv([u, h]))`, `c = tanh(Conv([u, h]))`.

    A GRU-like convex blend of the previous state `h` and a candidate computed from the new
    segment's features `u` and `h`. The gate and candidate convolutions share one Conv2D with
    `2 * dim` output channels (identical to two convolutions of `dim` channels).

    Args:
        dim: int, channels of `u`, `h` and the output.
        kernel_size: int, convolution kernel (3 in kerastp's USTEP).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: tuple `(u, h)`, both (B, h, w, dim).

    Example:
    >>> update = GatedUpdate(dim=4)
    >>> update((keras.ops.ones((1, 5, 5, 4)), keras.ops.zeros((1, 5, 5, 4)))).shape
    (1, 5, 5, 4)
    """

    def __init__(self, dim, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        positive_ints(dim=dim, kernel_size=kernel_size)
        self.dim = dim
        self.kernel_size = kernel_size
        self.gates = keras.layers.Conv2D(
            2 * dim,
            kernel_size,
            padding="same",
            kernel_initializer="glorot_uniform",
            name="gates",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        u_shape, h_shape = input_shape
        if u_shape[-1] != self.dim or h_shape[-1] != self.dim:
            raise ValueError(
                f"GatedUpdate(dim={self.dim}) needs u and h with {self.dim} channels, got "
                f"{tuple(u_shape)} and {tuple(h_shape)}"
            )
        self.gates.build((*u_shape[:-1], 2 * self.dim))

    def call(self, inputs):
        u, h = inputs
        gate, candidate = ops.split(self.gates(ops.concatenate([u, h], axis=-1)), 2, axis=-1)
        gate = ops.sigmoid(gate)
        return gate * ops.tanh(candidate) + (1.0 - gate) * h

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "kernel_size": self.kernel_size})
        return config
