"""Data: generators and readers that feed (past, future) pairs to the models."""

from kerastp.data.array_files import ARRAY_SUFFIXES, load_array
from kerastp.data.arrays import (
    array_dataset,
    array_windows,
    prepare_arrays,
    split_sequences,
    split_series,
)
from kerastp.data.glyphs import procedural_digits
from kerastp.data.mnist_files import MnistUnavailableError, load_mnist_digits, resolve_mnist_path
from kerastp.data.moving_mnist import MovingMNIST, moving_mnist_dataset, split_frames
from kerastp.data.normalization import NORMALIZATION_METHODS, Normalization
from kerastp.data.radar import (
    DEFAULT_SPLIT,
    EXTRA_EVENTS,
    RADAR_ENV_VAR,
    RADAR_RESOLUTIONS,
    RAIN_RATE_MAX,
    THRESHOLDS_MM_H,
    THRESHOLDS_MODEL_SCALE,
    VALIDATION_EVENTS,
    RadarEvent,
    list_events,
    load_event,
    radar_arrays,
    radar_dataset,
    resolve_radar_dir,
    sliding_windows,
    split_events,
    to_model_scale,
    to_rain_rate,
    window_starts,
)
from kerastp.data.standard_set import load_mnist_test_seq, standard_test_set

__all__ = [
    "MnistUnavailableError",
    "MovingMNIST",
    "load_mnist_digits",
    "load_mnist_test_seq",
    "moving_mnist_dataset",
    "procedural_digits",
    "resolve_mnist_path",
    "split_frames",
    "standard_test_set",
    # radar
    "DEFAULT_SPLIT",
    "EXTRA_EVENTS",
    "RADAR_ENV_VAR",
    "RADAR_RESOLUTIONS",
    "RAIN_RATE_MAX",
    "THRESHOLDS_MM_H",
    "THRESHOLDS_MODEL_SCALE",
    "VALIDATION_EVENTS",
    "RadarEvent",
    "list_events",
    "load_event",
    "radar_arrays",
    "radar_dataset",
    "resolve_radar_dir",
    "sliding_windows",
    "split_events",
    "to_model_scale",
    "to_rain_rate",
    "window_starts",
    # arrays (the user's own data)
    "ARRAY_SUFFIXES",
    "NORMALIZATION_METHODS",
    "Normalization",
    "array_dataset",
    "array_windows",
    "load_array",
    "prepare_arrays",
    "split_sequences",
    "split_series",
]
