"""The user's own arrays: a `.npy`, `.npz`, HDF5, Zarr or netCDF file of `(N, T, H, W, C)`
sequences or one `(T, H, W, C)` series, cut into windows, split and normalised on the
training split only."""

import numpy as np

from kerastp.data import arrays
from kerastp.data.sources.base import DataSource, uses_tf_data
from kerastp.options import NORMALIZATIONS, check_choice
from kerastp.validation import positive_int


class ArraysSource(DataSource):
    """Windows of the user's frames; the model's frame size follows the data.

    Args:
        data_path: the file, or an in-memory array of rank 4 or 5.
        data_key: array / dataset / variable name inside the file when it holds several.
        normalization: a method name ("minmax", "zscore", "log1p", "none"), fitted on the
            training split by `prepare`, or a fitted `Normalization` (a trained model's).
        stride: frames between window starts.
        seed: seeds the sequence split and the shuffle.
    """

    name = "arrays"
    SCALE_NAME = "normalization"
    SCORING = "units"

    def __init__(self, data_path=None, data_key=None, normalization="minmax", stride=1, seed=0):
        super().__init__(seed=seed)
        self.data_path = data_path
        self.data_key = data_key
        self.normalization = normalization
        self.stride = stride
        self._frames = None

    @classmethod
    def from_config(cls, config):
        """From a `TrainConfig` dict, or a run's config.json: a trained run's `data_scale`
        holds the fitted normalisation, which then replaces the method name."""
        normalization = config.get("normalization") or "minmax"
        scale = config.get("data_scale") or {}
        if scale.get("name") == "normalization":
            normalization = arrays.Normalization.from_config(scale["normalization"])
        return cls(
            data_path=config.get("data_path"),
            data_key=config.get("data_key"),
            normalization=normalization,
            stride=config.get("stride") or 1,
            seed=config.get("seed") or 0,
        )

    @property
    def fitted(self):
        """True once the normalisation is fitted (by `prepare`, or given fitted)."""
        return isinstance(self.normalization, arrays.Normalization)

    def check(self):
        if self.data_path is None:
            raise ValueError('data="arrays" needs `data_path` (the file of your frames)')
        if not self.fitted:
            check_choice("normalization", self.normalization, NORMALIZATIONS)
        positive_int("stride", self.stride)

    def frames(self):
        """The user's frames (read once)."""
        if self._frames is None:
            self._frames = arrays.load_array(self.data_path, self.data_key)
        return self._frames

    def frame_shape(self):
        return tuple(int(d) for d in self.frames().shape[-3:])

    def check_model(self, model):
        shape = self.frame_shape()
        if tuple(model.frame_shape) != shape:
            raise ValueError(
                f"{self.data_path} holds {'x'.join(map(str, shape))} frames, the model "
                f"expects {'x'.join(map(str, model.frame_shape))} (drop height/width/channels "
                "from `overrides`; a pretrained model's frames are its own)"
            )

    def _windows(self, model):
        return {
            "input_frames": model.input_frames,
            "output_frames": model.output_frames,
            "stride": self.stride,
            "seed": self.seed,
        }

    def prepare(self, model):
        """Fits the normalisation on the training split (a fitted one is kept)."""
        if not self.fitted:
            _, _, self.normalization = arrays.prepare_frames(
                self.frames(), "train", normalization=self.normalization, **self._windows(model)
            )

    def _fitted(self):
        if not self.fitted:
            raise ValueError(
                "The arrays source has no fitted normalisation yet: call `prepare(model)`, or "
                "build it from a trained run's config.json (its data_scale records it)"
            )
        return self.normalization

    def data_scale(self):
        normalization = self._fitted()
        return {
            "name": "normalization",
            "description": f"{normalization.method} normalisation fitted on the training "
            f"split of {self.data_path}; invert forecasts with it for data units",
            "normalization": normalization.to_config(),
        }

    @property
    def has_units(self):
        return True

    def transform(self, values):
        return self._fitted().transform(np.asarray(values, np.float32))

    def inverse(self, values):
        return self._fitted().inverse(np.asarray(values, np.float32))

    def training_stream(self, model, batch_size, steps_per_epoch, first_epoch=0, num_epochs=1):
        # One stream on every backend: the same seeded windows, batch for batch, whichever
        # backend trains; a resumed run continues at its epoch. The training frames are held
        # once and each batch's windows sliced from them.
        from kerastp.data.pydatasets import WindowsPyDataset

        frames, starts, _ = arrays.prepare_frames(
            self.frames(), "train", normalization=self._fitted(), **self._windows(model)
        )
        stream = WindowsPyDataset.from_frames(
            frames, starts, model.input_frames, model.output_frames, batch_size, seed=self.seed
        )
        stream.steps = steps_per_epoch or stream.steps  # more than one pass wraps around
        stream.epoch = first_epoch
        return stream, stream.steps

    def validation_stream(self, model, batch_size, num_sequences):
        if not uses_tf_data():
            from kerastp.data.pydatasets import WindowsPyDataset

            past, future = self.split_arrays(model, "val")
            return WindowsPyDataset(past, future, batch_size, shuffle=False,
                                    drop_remainder=False)
        dataset, _ = arrays.array_dataset(
            self.frames(),
            "val",
            normalization=self._fitted(),
            shuffle=False,
            batch_size=batch_size,
            **self._windows(model),
        )
        return dataset

    def split_arrays(self, model, split):
        """Every `(past, future)` window of a split, in order, in model scale."""
        past, future, _ = arrays.prepare_arrays(
            self.frames(), split, normalization=self._fitted(), **self._windows(model)
        )
        return past, future

    def calibration_samples(self, model, num_sequences=64):
        return self.split_arrays(model, "train")[0][:num_sequences]

    def held_out(self, model, num_sequences=64):
        past, future = self.split_arrays(model, "val")
        return past[:num_sequences], future[:num_sequences]

    def example(self, model, index=0):
        past, future = self.split_arrays(model, "val")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(past):
            raise ValueError(
                f"`index` must be an integer in [0, {len(past)}) (the validation windows), "
                f"got index={index!r}"
            )
        return past[index], future[index]

    def test_windows(self, model, num_sequences=None, split="val"):
        """Every window of a split of the user's data (the validation split by default)."""
        past, future = self.split_arrays(model, split or "val")
        return [(past, future)], {"split": split or "val", "windows": int(len(past))}

    def __repr__(self):
        return (
            f"ArraysSource(data_path={self.data_path!r}, data_key={self.data_key!r}, "
            f"normalization={self.normalization!r}, stride={self.stride}, seed={self.seed})"
        )
