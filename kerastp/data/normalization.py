"""Per-channel normalisation of the user's data, fitted on the training split, with its inverse.

`Normalization` maps data to the model scale ("none", "minmax", "zscore", "log1p"; see the
class docstring) and back (`inverse`), and travels as a JSON-safe dict (`to_config` /
`from_config`) so that predictions of a trained model can be mapped back to data units.

This module imports only NumPy.
"""

import math

import numpy as np

from kerastp import options
from kerastp.validation import check_int

__all__ = ["NORMALIZATION_METHODS", "Normalization"]

NORMALIZATION_METHODS = options.NORMALIZATIONS

#: Statistics each method stores, in `to_config` order.
_STATISTICS = {"none": (), "minmax": ("min", "max"), "zscore": ("mean", "std"), "log1p": ("max",)}


class Normalization:
    """Per-channel normalisation fitted on training data, with its exact inverse.

    Methods (statistics per channel c, computed over every axis but the last):

    * "none": `x' = x`.
    * "minmax": `x' = (x - min_c) / (max_c - min_c)`, training data map to [0, 1].
    * "zscore": `x' = (x - mean_c) / std_c` with the population std (ddof=0).
    * "log1p": `x' = log1p(x) / log1p(max_c)`, training data (which must be >= 0) map to
      [0, 1]; inverse `x = expm1(x' * log1p(max_c))`. Data to transform must be >= 0.

    A channel that is constant in the training data (max = min, std = 0, or max = 0 for
    log1p) cannot be scaled: `fit` raises ValueError naming it (no epsilon is added). Drop the
    channel or use method="none".

    Statistics are Python floats (float64), so `to_config()` is JSON-safe and
    `from_config(json.loads(json.dumps(config)))` restores them exactly. Store the config
    with a trained model (e.g. in its export sidecar) and call `inverse` on its predictions.

    Args:
        method: one of `NORMALIZATION_METHODS`.

    Example:

    >>> train = np.array([[0.0, 10.0], [4.0, 30.0]], np.float32)  # 2 samples, 2 channels
    >>> norm = Normalization("minmax").fit(train)
    >>> norm.transform(train).tolist()
    [[0.0, 0.0], [1.0, 1.0]]
    >>> norm.to_config()
    {'method': 'minmax', 'channels': 2, 'min': [0.0, 10.0], 'max': [4.0, 30.0]}
    """

    def __init__(self, method="minmax"):
        if method not in NORMALIZATION_METHODS:
            raise ValueError(
                f"method must be one of {NORMALIZATION_METHODS}; received method={method!r}."
            )
        self.method = method
        self.channels = None
        self.statistics = {}

    @property
    def fitted(self):
        return self.channels is not None

    def fit(self, array):
        """Computes the per-channel statistics from `array` (the TRAINING data only).

        Args:
            array: numeric array whose last axis is channels, e.g. (N, T, H, W, C).

        Returns:
            self.

        Raises:
            ValueError: empty, non-numeric, NaN / Inf, a negative value for "log1p" (the
                message names the minimum and its channel), a constant channel.
        """
        x = _numeric(array, "fit")
        if x.ndim < 1 or x.size == 0:
            raise ValueError(f"fit: the array is empty (shape {x.shape}).")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"fit: the array holds {np.count_nonzero(~np.isfinite(x))} NaN/Inf.")
        axes = tuple(range(x.ndim - 1))
        channels = int(x.shape[-1])
        stats = {}
        if self.method in ("minmax", "log1p"):
            low = np.min(x, axis=axes).astype(np.float64)
            high = np.max(x, axis=axes).astype(np.float64)
        if self.method == "minmax":
            stats = {"min": low, "max": high}
            _check_scale(high - low, "max - min", self.method)
        elif self.method == "zscore":
            mean = np.mean(x, axis=axes, dtype=np.float64)
            std = np.std(x, axis=axes, dtype=np.float64)
            stats = {"mean": mean, "std": std}
            _check_scale(std, "std", self.method)
        elif self.method == "log1p":
            if np.min(low) < 0:
                channel = int(np.argmin(low))
                raise ValueError(
                    f"log1p needs non-negative data; the training data's minimum is "
                    f"{low[channel]:g} (channel {channel})."
                )
            stats = {"max": high}
            _check_scale(high, "max", self.method)
        self.channels = channels
        self.statistics = {name: [float(v) for v in values] for name, values in stats.items()}
        return self

    def _arrays(self, x, caller):
        if not self.fitted and self.method != "none":
            raise ValueError(f"{caller}: this Normalization({self.method!r}) is not fitted.")
        if self.method != "none" and (x.ndim < 1 or x.shape[-1] != self.channels):
            raise ValueError(
                f"{caller}: expected {self.channels} channels (last axis); received shape "
                f"{x.shape}."
            )
        return {k: np.asarray(v, dtype=x.dtype) for k, v in self.statistics.items()}

    def transform(self, x):
        """Maps data to the model scale (see the class docstring).

        Args:
            x: array with `channels` channels on its last axis.

        Returns:
            Array of the same shape; float64 inputs stay float64, others become float32.

        Raises:
            ValueError: not fitted, wrong channel count, negative values for "log1p".
        """
        x = _as_float(x, "transform")
        s = self._arrays(x, "transform")
        if self.method == "minmax":
            return (x - s["min"]) / (s["max"] - s["min"])
        if self.method == "zscore":
            return (x - s["mean"]) / s["std"]
        if self.method == "log1p":
            low = float(np.min(x)) if x.size else 0.0
            if low < 0:
                raise ValueError(f"transform: log1p needs non-negative data; minimum is {low:g}.")
            return np.log1p(x) / np.log1p(s["max"])
        return x.copy()

    def inverse(self, x):
        """Maps model-scale values (e.g. predictions) back to data units.

        Args:
            x: array with `channels` channels on its last axis.

        Returns:
            Array of the same shape; float64 inputs stay float64, others become float32.
        """
        x = _as_float(x, "inverse")
        s = self._arrays(x, "inverse")
        if self.method == "minmax":
            return x * (s["max"] - s["min"]) + s["min"]
        if self.method == "zscore":
            return x * s["std"] + s["mean"]
        if self.method == "log1p":
            return np.expm1(x * np.log1p(s["max"]))
        return x.copy()

    def to_config(self):
        """A JSON-safe dict: method, channels (when fitted) and per-channel float lists."""
        config = {"method": self.method}
        if self.fitted:
            config["channels"] = self.channels
            config.update({k: list(v) for k, v in self.statistics.items()})
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuilds a Normalization from `to_config()` output (e.g. read back from JSON).

        Raises:
            ValueError: not a dict, unknown method, missing or unexpected keys, statistics of
                the wrong length or not finite, a scale that is zero or negative.
        """
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict; received {type(config).__name__}.")
        norm = cls(config.get("method"))
        stats = _STATISTICS[norm.method]
        if set(config) == {"method"}:
            return norm
        expected = {"method", "channels", *stats}
        if set(config) != expected:
            raise ValueError(
                f"config for method {norm.method!r} must have keys {sorted(expected)} (or only "
                f"'method' when unfitted); received {sorted(config)}."
            )
        channels = config["channels"]
        check_int("channels", channels, minimum=1)
        values = {}
        for name in stats:
            entry = config[name]
            if not isinstance(entry, list | tuple) or len(entry) != channels:
                raise ValueError(
                    f"config[{name!r}] must be a list of {channels} numbers; received {entry!r}."
                )
            floats = []
            for v in entry:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ValueError(f"config[{name!r}] holds {v!r}, not a finite number.")
                floats.append(float(v))
            values[name] = floats
        scale = {
            "minmax": lambda v: np.subtract(v["max"], v["min"]),
            "zscore": lambda v: np.asarray(v["std"]),
            "log1p": lambda v: np.asarray(v["max"]),
        }
        if norm.method in scale:
            _check_scale(scale[norm.method](values), "scale", norm.method)
        norm.channels = int(channels)
        norm.statistics = values
        return norm

    def __eq__(self, other):
        return isinstance(other, Normalization) and self.to_config() == other.to_config()

    def __repr__(self):
        return f"Normalization.from_config({self.to_config()!r})"


def _numeric(array, caller):
    x = np.asarray(array)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{caller}: dtype {x.dtype} is not numeric.")
    return x


def _as_float(array, caller):
    x = _numeric(array, caller)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def _check_scale(scale, what, method):
    bad = np.flatnonzero(~(np.asarray(scale) > 0))
    if bad.size:
        raise ValueError(
            f"{method} cannot scale channel(s) {bad.tolist()}: {what} is not positive (the "
            "channel is constant, or all zero for log1p, in the training data); drop the "
            "channel or use method='none'."
        )
