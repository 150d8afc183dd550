"""`DataSource`: the one interface training, evaluation, export and pictures ask for data.

A source knows where its `(past, future)` windows come from, what its numbers mean (its data
scale and the transform between the data's units and the model's scale), how a model must be
shaped for it, and how a forecast on it is scored. Training, `evaluate`, quantised export's
calibration, `predict`'s pictures and the CLI ask the source; none of them branches on the
data's name. Sources are registered in `kerastp.registry.SOURCES`; a new source (a user's
own Zarr store, say) is one file subclassing `DataSource` and one line there.
"""


import os
import sys

import numpy as np


def uses_tf_data():
    """True when Keras runs on TensorFlow: Moving MNIST's streams are tf.data datasets there;
    on JAX and PyTorch they are `keras.utils.PyDataset`s yielding the same batches
    (`kerastp.data.pydatasets`). The windowed sources train from a PyDataset everywhere."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend() == "tensorflow"
    return os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"

#: The `TrainConfig` fields (and `config.json` keys) a source may read.
CONFIG_KEYS = (
    "seed",
    "mnist_path",
    "radar_path",
    "radar_resolution",
    "data_path",
    "data_key",
    "normalization",
    "stride",
    "augment",
    "data_scale",
)


class DataSource:
    """Base class of kerastp's data sources.

    Subclasses set `name` (the registry key) and implement the streams and arrays below;
    `from_config` builds one from a `TrainConfig` as a dict or a run's `config.json`.

    Args:
        seed: seeds the training stream, the shuffles and the splits.
    """

    #: The registry name (`kerastp.registry.SOURCES`).
    name = None
    #: True for a stream generated without end (Moving MNIST): a run sets its epoch length.
    generated = False
    #: True when the source takes `augment` (`kerastp.data.augment`) for its training stream.
    augmentable = False
    #: What the model's numbers mean; recorded in config.json and every artifact's sidecar.
    DATA_SCALE = None
    #: The `name` of this source's data scale records (how a sidecar names its source).
    SCALE_NAME = None
    #: How forecasts on this source are scored (`kerastp.evaluation.evaluate.SCORERS`):
    #: "frames" (OpenSTL metrics), "nowcasting" (verification in data units) or "units"
    #: (errors in model scale and in data units).
    SCORING = None

    def __init__(self, seed=0):
        self.seed = seed

    @classmethod
    def from_config(cls, config):
        """A source from a run configuration (a `TrainConfig` dict or a run's config.json);
        reads only the keys it uses."""
        return cls(seed=config.get("seed") or 0)

    # -- before any model is built ---------------------------------------------------------

    def check(self):
        """Checks the data can be found and read; raises before anything is built."""

    def resolved_settings(self):
        """`TrainConfig` fields whose None default this source fills in (recorded)."""
        return {}

    def model_overrides(self, preset):
        """Model arguments this data fixes for `preset` (recorded with the run's overrides)."""
        return {}

    def frame_shape(self):
        """(height, width, channels) the data holds when the model must follow it, else None."""
        return None

    def check_model(self, model):
        """Raises a ValueError naming the mismatch when `model` cannot forecast this data."""

    def default_steps_per_epoch(self, batch_size):
        """Steps per epoch when the user sets none (None: one pass over the windows)."""
        return None

    # -- what the numbers mean -------------------------------------------------------------

    def data_scale(self):
        """The `data_scale` record: what the model's numbers mean."""
        return self.DATA_SCALE

    @property
    def has_units(self):
        """True when inputs and forecasts map to data units other than the model's scale."""
        return False

    def transform(self, values):
        """Data units -> model scale (identity unless the source has units)."""
        return np.asarray(values, np.float32)

    def inverse(self, values):
        """Model scale -> data units (identity unless the source has units)."""
        return np.asarray(values, np.float32)

    # -- streams and arrays ----------------------------------------------------------------

    def prepare(self, model):
        """Does what depends on the training split (fitting a normalisation); call before
        `data_scale` is recorded."""

    def training_stream(self, model, batch_size, steps_per_epoch, first_epoch=0, num_epochs=1):
        """`(dataset, steps_per_epoch)`: batches of `(past, future)` for `model.fit`.

        A generated source yields epochs `first_epoch .. first_epoch + num_epochs - 1` back
        to back; a windows source yields its (reshuffled) training windows per epoch.
        """
        raise NotImplementedError

    def validation_stream(self, model, batch_size, num_sequences):
        """A dataset of `(past, future)` batches scored after each epoch."""
        raise NotImplementedError

    def calibration_samples(self, model, num_sequences=64):
        """Training-split inputs `(N, T_in, H, W, C)` in model scale (int8 calibration)."""
        raise NotImplementedError

    def held_out(self, model, num_sequences=64):
        """Held-out `(past, future)` in model scale, to judge quantised exports."""
        raise NotImplementedError

    def example(self, model, index=0):
        """One held-out `(past, truth)` pair in model scale, for pictures."""
        raise NotImplementedError

    def test_windows(self, model, num_sequences=None, split=None):
        """The test protocol's windows: `(batches, info)`, where `batches` yields `(past,
        future)` NumPy chunks in model scale and `info` says what they are (`split`,
        `events`, ...). `kerastp.evaluation.evaluate` scores forecasts of them the way
        `SCORING` names."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(seed={self.seed})"
