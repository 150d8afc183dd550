"""Every choice list kerastp accepts, in one place: the library validates against these and
the CLI offers them, so no list is written twice.

Importing this module imports neither TensorFlow nor Keras (only the registries, which
resolve their entries lazily), so `kerastp --help` stays instant.
"""

from kerastp import registry

#: Keras backends kerastp's models and training run on (TensorFlow also exports).
BACKENDS = ("tensorflow", "jax", "torch")
#: Registered data sources (`kerastp.registry.SOURCES`): "procedural", "mnist", "radar", ...
DATA_SOURCES = tuple(registry.SOURCES)
#: The sources made of Moving MNIST digits (the fixed standard test set exists for these).
MOVING_MNIST_SOURCES = ("procedural", "mnist")

#: Learning-rate schedules of `TrainConfig.schedule`.
SCHEDULES = ("one_cycle", "constant")
#: `TrainConfig.strategy`: one device, `tf.distribute.MirroredStrategy`, or multi-worker.
STRATEGIES = (None, "mirrored", "multi_worker")
#: `TrainConfig.mixed_precision` (None computes in float32).
MIXED_PRECISIONS = ("bfloat16", "float16")

#: Training losses by name (`Forecaster.compile(loss=...)`, `kerastp train --loss`): "auto" is
#: each model's own (MSE; TAU adds its divergence term); the others are
#: `kerastp.losses.NAMED_LOSSES` (the rain-aware ones assume the radar model scale).
LOSSES = ("auto", "mse", "intensity", "intensity_csi")

#: Augmentations of windowed training data (`kerastp.data.augment.WindowAugmentation`).
AUGMENTATIONS = ("none", "dihedral", "dihedral_shift")

#: Normalisations of the user's own arrays, fitted on the training split only.
NORMALIZATIONS = ("none", "minmax", "zscore", "log1p")
#: Radar frame sizes shipped with the events (pixels per side).
RADAR_RESOLUTIONS = (64, 128)

#: Export formats of `kerastp export`.
EXPORT_FORMATS = ("keras", "saved_model", "tflite")
#: TFLite quantisations.
QUANTIZATIONS = ("none", "fp16", "dynamic", "int8", "int8_io")
#: The quantisations judged on held-out sequences (integer arithmetic).
INTEGER_QUANTIZATIONS = ("dynamic", "int8", "int8_io")
#: The quantisations that need representative (calibration) data.
CALIBRATED_QUANTIZATIONS = ("int8", "int8_io")

#: Integer conversions may raise the held-out MSE by at most this much (relative) by default.
MAX_METRIC_INCREASE = 0.10

#: Runtimes `kerastp bench` times.
RUNTIMES = ("keras_eager", "keras_xla", "saved_model", "tflite", "onnxruntime")


def check_choice(name, value, choices):
    """Returns `value` if it is one of `choices`; else a ValueError naming both."""
    if value not in choices:
        shown = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"`{name}` must be one of {shown}, got {name}={value!r}")
    return value
