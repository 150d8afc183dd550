"""Training losses of kerastp models beyond the mean squared error."""

import math

import keras
from keras import ops


def differential_divergence(y_true, y_pred, temperature=0.1, epsilon=1e-12):
    """TAU's differential divergence regulariser (OpenSTL's `diff_div_reg`).

    The frame-to-frame differences of the forecast and of the truth are turned into
    distributions over pixels with a softmax at `temperature`, and the KL divergence
    `p * log(p / (q + eps) + eps)` of the forecast's from the truth's is averaged over
    sequences, frame gaps and pixels. Sequences of two frames or fewer give 0.

    Args:
        y_true: (B, T, H, W, C).
        y_pred: (B, T, H, W, C).
        temperature: float, softmax temperature (OpenSTL: 0.1).
        epsilon: float, OpenSTL's stabiliser.

    Returns:
        Per-sequence values, shape (B,).
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    shape = tuple(y_pred.shape)
    if len(shape) != 5 or any(d is None for d in shape[1:]):
        raise ValueError(
            "differential_divergence expects (B, T, H, W, C) with static T, H, W, C, got "
            f"shape {shape}"
        )
    if shape[1] <= 2:
        return ops.zeros_like(y_pred[:, 0, 0, 0, 0])
    gaps, pixels = shape[1] - 1, math.prod(shape[2:])

    def distribution(y):
        gap = ops.reshape(y[:, 1:] - y[:, :-1], (-1, gaps, pixels))
        return ops.softmax(gap / temperature, axis=-1)

    p = distribution(y_pred)
    q = distribution(y_true)
    divergence = p * ops.log(p / (q + epsilon) + epsilon)
    return ops.mean(divergence, axis=(1, 2))


@keras.saving.register_keras_serializable(package="kerastp")
class MSEWithDifferentialDivergence(keras.losses.Loss):
    """TAU's training loss: `MSE + weight * differential_divergence` (OpenSTL's `alpha`).

    Args:
        weight: float, weight of the regulariser (TAU: 0.1).
        temperature: float, its softmax temperature (0.1).
        **kwargs: base `keras.losses.Loss` arguments.

    Example:
    >>> loss = MSEWithDifferentialDivergence(weight=0.1)
    >>> y = keras.ops.ones((2, 4, 8, 8, 1))
    >>> float(loss(y, y))
    0.0
    """

    def __init__(
        self, weight=0.1, temperature=0.1, name="mse_with_differential_divergence", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        if not float(weight) >= 0.0:
            raise ValueError(f"`weight` must be >= 0, got weight={weight!r}")
        if not float(temperature) > 0.0:
            raise ValueError(f"`temperature` must be > 0, got temperature={temperature!r}")
        self.weight = float(weight)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        rank = len(y_pred.shape)
        mse = ops.mean(ops.square(y_pred - y_true), axis=tuple(range(1, rank)))
        if not self.weight:
            return mse
        return mse + self.weight * differential_divergence(y_true, y_pred, self.temperature)

    def get_config(self):
        config = super().get_config()
        config.update({"weight": self.weight, "temperature": self.temperature})
        return config
