"""Group normalisation whose graph keeps every shape static except the batch."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerastp")
class GroupNormalization(keras.layers.GroupNormalization):
    """`keras.layers.GroupNormalization` with the same arguments, weights and mathematics.

    Keras' layer reshapes its result back with `ops.shape(inputs)`, which on a batch-agnostic
    graph is a run-time shape: TFLite then holds a SHAPE and a dynamic RESHAPE per layer,
    which XNNPACK does not run, so every GroupNorm splits the delegated graph in two
    (benchmarks/results/tflite_ops.md: 9 partitions in simvp_tiny). Here the reshape takes
    the static shape with -1 for the batch, whenever the non-batch dimensions are known.

    Example:
    >>> norm = GroupNormalization(groups=2)
    >>> norm(keras.ops.ones((3, 4, 4, 6))).shape
    (3, 4, 4, 6)
    """

    def call(self, inputs):
        static = inputs.shape[1:]
        if any(dim is None for dim in static):
            return super().call(inputs)
        normalized = self._apply_normalization(self._reshape_into_groups(inputs), inputs.shape)
        outputs = ops.reshape(normalized, (-1, *static))
        return ops.cast(outputs, self.compute_dtype)
