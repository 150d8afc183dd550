"""The radar nowcasting source: the events in `../shared/data/radar/` (6 frames in, 12 out),
trained on the training events and scored on the held-out validation events."""

import numpy as np

from kerastp import registry
from kerastp.data import radar
from kerastp.data.augment import WindowAugmentation
from kerastp.data.sources.base import DataSource, uses_tf_data
from kerastp.options import RADAR_RESOLUTIONS, check_choice
from kerastp.validation import check_int

#: The radar nowcasting protocol (`../shared/data/radar/README.md`): 6 frames in, 12 out.
RADAR_FRAMES = {"input_frames": 6, "output_frames": 12}


class RadarSource(DataSource):
    """Radar rain-rate fields, windows split by whole events.

    Models work in `radar.to_model_scale` (log rain rate in [0, 1]); `transform` / `inverse`
    map mm/h to it and back, exactly.

    Args:
        radar_path: radar data folder (see `kerastp.data.radar.resolve_radar_dir`).
        radar_resolution: 64 or 128 pixels per side (None: 64 for a new model, else the
            model's frame size).
        seed: seeds the shuffle of the training windows (and their augmentation).
        stride: stride of the training windows inside an event (1: every window); the
            validation windows keep the protocol's stride 3.
        augment: "none", "dihedral" (the eight rotations and flips of the square) or
            "dihedral_shift" (and translations by up to 8 pixels), one random transform per
            training window and pass, the same for its input and target frames
            (`kerastp.data.augment.WindowAugmentation`).
    """

    name = "radar"
    augmentable = True
    SCALE_NAME = "radar_log_rain_rate"
    SCORING = "nowcasting"
    DATA_SCALE = {
        "name": "radar_log_rain_rate",
        "description": "x = log1p(R) / log1p(100), R rain rate in mm/h clipped to [0, 100]; "
        "R = expm1(x * log1p(100)) (kerastp.data.radar.to_rain_rate)",
        "range": [0.0, 1.0],
    }

    def __init__(self, radar_path=None, radar_resolution=None, seed=0, stride=3, augment="none"):
        super().__init__(seed=seed)
        self.radar_path = radar_path
        self.radar_resolution = radar_resolution
        self.stride = check_int("stride", stride, minimum=1)
        self.augmentation = WindowAugmentation.from_name(augment)
        self.augment = augment

    @classmethod
    def from_config(cls, config):
        return cls(
            radar_path=config.get("radar_path"),
            radar_resolution=config.get("radar_resolution"),
            seed=config.get("seed") or 0,
            stride=config.get("stride") or 3,
            augment=config.get("augment") or "none",
        )

    def check(self):
        if self.radar_resolution is not None:
            check_choice("radar_resolution", self.radar_resolution, RADAR_RESOLUTIONS)
        radar.resolve_radar_dir(self.radar_path)  # before any model is built

    def resolved_settings(self):
        return {"radar_resolution": self.radar_resolution or 64}

    def model_overrides(self, preset):
        size = self.radar_resolution or 64
        frames = registry.frame_overrides(preset, **RADAR_FRAMES)
        return {**frames, "height": size, "width": size, "channels": 1}

    def check_model(self, model):
        if model.channels != 1 or model.height != model.width:
            raise ValueError(
                "The radar events are square single-channel fields; the model expects "
                f"{model.height}x{model.width}x{model.channels}"
            )
        if self.radar_resolution is not None and model.height != self.radar_resolution:
            raise ValueError(
                f"The model's frames are {model.height}x{model.width}, the radar data "
                f"{self.radar_resolution}x{self.radar_resolution} (`radar_resolution`)"
            )

    @property
    def has_units(self):
        return True

    def transform(self, values):
        return radar.to_model_scale(np.asarray(values, np.float32))

    def inverse(self, values):
        # Forecasts leave [0, 1] by small amounts; rain rates outside 0-100 mm/h (the data's
        # range) are not physical, so scores and written forecasts use the clipped field.
        return radar.to_rain_rate(np.asarray(values, np.float32), clip=True)

    def _common(self, model):
        return {
            "path": self.radar_path,
            "resolution": self.radar_resolution or model.height,
            "input_frames": model.input_frames,
            "output_frames": model.output_frames,
        }

    def training_stream(self, model, batch_size, steps_per_epoch, first_epoch=0, num_epochs=1):
        # One stream on every backend (augmented or not): the same seeded windows, batch for
        # batch, whichever backend trains; a resumed run continues at its epoch.
        from kerastp.data.pydatasets import WindowsPyDataset

        common = {**self._common(model), "stride": self.stride}
        past, future = radar.radar_arrays("train", **common)
        stream = WindowsPyDataset(
            past, future, batch_size, seed=self.seed, augmentation=self.augmentation
        )
        if steps_per_epoch and steps_per_epoch > stream.steps:
            raise ValueError(
                f"`steps_per_epoch`={steps_per_epoch} exceeds the {stream.steps} batches "
                f"of radar training windows at batch_size={batch_size}; leave it unset "
                "for one pass"
            )
        stream.steps = steps_per_epoch or stream.steps
        stream.epoch = first_epoch
        return stream, stream.steps

    def validation_stream(self, model, batch_size, num_sequences):
        if not uses_tf_data():
            from kerastp.data.pydatasets import WindowsPyDataset

            past, future = radar.radar_arrays("val", **self._common(model))
            return WindowsPyDataset(past, future, batch_size, shuffle=False,
                                    drop_remainder=False)
        return radar.radar_dataset(
            "val", shuffle=False, batch_size=batch_size, **self._common(model)
        )

    def calibration_samples(self, model, num_sequences=64):
        past = radar.radar_arrays("train", **self._common(model))[0]
        # Spread over every training event, not the first event's first windows.
        chosen = np.linspace(0, len(past) - 1, min(num_sequences, len(past))).round().astype(int)
        return past[np.unique(chosen)]

    def held_out(self, model, num_sequences=64):
        return radar.radar_arrays("val", **self._common(model))

    def example(self, model, index=0):
        past, future = radar.radar_arrays("val", **self._common(model))
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(past):
            raise ValueError(
                f"`index` must be an integer in [0, {len(past)}) (the radar validation "
                f"windows), got index={index!r}"
            )
        return past[index], future[index]

    def test_windows(self, model, num_sequences=None, split="val"):
        """Every window of the split's events (the validation events by default)."""
        past, future, info = radar.radar_arrays(
            split or "val", return_info=True, **self._common(model)
        )
        described = {
            "split": split or "val",
            "events": sorted(set(info["event"])),
            "windows": int(len(past)),
        }
        return [(past, future)], described

    def __repr__(self):
        return (
            f"RadarSource(radar_path={self.radar_path!r}, "
            f"radar_resolution={self.radar_resolution}, seed={self.seed}, "
            f"stride={self.stride}, augment={self.augment!r})"
        )
