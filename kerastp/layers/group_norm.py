"""Group normalisation whose graph keeps every shape static except the batch and whose
statistics are two cheap reductions."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerastp")
class GroupNormalization(keras.layers.GroupNormalization):
    """`keras.layers.GroupNormalization` with the same arguments, weights and mathematics.

    Keras' layer reshapes its result back with `ops.shape(inputs)`, which on a batch-agnostic
    graph is a run-time shape: TFLite then holds a SHAPE and a dynamic RESHAPE per layer,
    which XNNPACK does not run, so every GroupNorm splits the delegated graph in two
    (benchmarks/results/tflite_ops.md: 9 partitions in simvp_tiny). And it reduces the
    (B, H, W, groups, C / groups) view over three non-adjacent axes, which LiteRT runs slowly
    (benchmarks/results/tflite_ops.md, ustep_tiny at 1 thread: 1.29 ms per GroupNorm on a
    (64, 64, 16) input, where a 3x3 convolution of that input takes 0.25 ms; 0.60 ms in the
    form below, the same day).

    Here, for channels-last inputs with static non-batch dimensions, each statistic is the
    mean over the spatial axes per channel (one reduction over adjacent axes, a global
    average pooling to XNNPACK), then the mean of those within each group, broadcast back to
    the group's channels: the same numbers, since every channel of a group holds as many
    values (the variance is the mean of squared deviations from the group mean, as
    `tf.nn.moments` computes it). Other layouts keep Keras' computation, with a static
    reshape where the shape allows it.

    Example:
    >>> norm = GroupNormalization(groups=2)
    >>> norm(keras.ops.ones((3, 4, 4, 6))).shape
    (3, 4, 4, 6)
    """

    def _channels_last(self, inputs):
        rank = len(inputs.shape)
        return rank >= 3 and self.axis in (-1, rank - 1)

    def _group_mean(self, per_channel):
        """(B, 1, ..., 1, C) per-channel means -> their group's mean on every channel."""
        channels = per_channel.shape[-1]
        size = channels // self.groups
        grouped = ops.reshape(per_channel, (-1, self.groups, size))
        grouped = ops.mean(grouped, axis=-1, keepdims=True)
        # Broadcast by a product with ones: int8 TFLite keeps it in XNNPACK (an ADD of
        # zeros, whose quantisation scale is 0, falls out of it).
        grouped = grouped * ops.ones((self.groups, size), grouped.dtype)
        return ops.reshape(grouped, (-1, *per_channel.shape[1:]))

    def call(self, inputs):
        static = inputs.shape[1:]
        if any(dim is None for dim in static):
            return super().call(inputs)
        if not self._channels_last(inputs):
            normalized = self._apply_normalization(
                self._reshape_into_groups(inputs), inputs.shape
            )
            outputs = ops.reshape(normalized, (-1, *static))
            return ops.cast(outputs, self.compute_dtype)
        # As Keras: statistics and the affine map in float32 for 16-bit inputs.
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        spatial = tuple(range(1, len(inputs.shape) - 1))
        mean = self._group_mean(ops.mean(x, axis=spatial, keepdims=True))
        deviation = x - mean
        # d * d rather than square: int8 TFLite then has a MUL, which XNNPACK runs, where
        # the converter would fuse a SQUARED_DIFFERENCE that it does not.
        variance = self._group_mean(
            ops.mean(deviation * deviation, axis=spatial, keepdims=True)
        )
        inv = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            inv = inv * ops.cast(self.gamma, x.dtype)
        shift = -mean * inv
        if self.center:
            shift = shift + ops.cast(self.beta, x.dtype)
        return ops.cast(x * inv + shift, self.compute_dtype)
