"""The user's own data: array readers, normalisation, windows, leakage-free splits, `tf.data`.

Data come as one of two layouts (the last axis is always channels):

* **sequences**, rank 5, `(N, T, H, W, C)`: N independent sequences of T frames each;
* **a series**, rank 4, `(T, H, W, C)`: one long sequence, cut into windows.

A rank-3 array `(T, H, W)` is a single-channel series: `load_array` adds the channel axis,
giving `(T, H, W, 1)`. A rank-4 array is therefore always read as `(T, H, W, C)`; data laid out
as `(N, T, H, W)` must get their channel axis first (`x[..., None]`, saved as rank 5).

Files (`load_array`): `.npy`, `.npz` with NumPy; `.h5` / `.hdf5` with h5py, `.zarr` stores
with zarr and `.nc` with xarray (+ netCDF4 or h5netcdf). The three libraries are optional
extras, imported only when such a file is read:

    pip install "kerastp[hdf5]"     # h5py
    pip install "kerastp[zarr]"     # zarr
    pip install "kerastp[netcdf]"   # xarray + netCDF4

Windows (`array_windows`) are `(past, future)` pairs of `input_frames` then `output_frames`
consecutive frames, started every `stride` frames: inside each sequence for rank-5 data, along
the series for rank-4 data. A window never spans two sequences or two splits.

Splits: sequences are split by whole sequences (`split_sequences`, seeded permutation); a
series by contiguous time blocks (`split_series`: train first, then validation, then test),
and windows are cut inside each block, so no window crosses a split boundary.

Normalisation (`Normalization`) is fitted per channel on the training split only (also when a
dataset of the validation or test split is asked for) and travels as a JSON-safe dict
(`to_config` / `from_config`) so that predictions can be mapped back to data units
(`inverse`).

This module imports only NumPy; the optional readers are imported inside `load_array` and
TensorFlow inside `array_dataset`.
"""

import importlib
import math
import os
import pathlib
import types
import zipfile
import zlib

import numpy as np

from kerastp.data.moving_mnist import _check_int
from kerastp.data.radar import sliding_windows, window_starts, windows_dataset
from kerastp.validation import check_input_path

__all__ = [
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

#: File suffixes `load_array` reads -> (reader library, pip extra or None for NumPy).
ARRAY_SUFFIXES = types.MappingProxyType(
    {
        ".npy": ("numpy", None),
        ".npz": ("numpy", None),
        ".h5": ("h5py", "hdf5"),
        ".hdf5": ("h5py", "hdf5"),
        ".zarr": ("zarr", "zarr"),
        ".nc": ("xarray", "netcdf"),
    }
)

NORMALIZATION_METHODS = ("none", "minmax", "zscore", "log1p")

_SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"validation": "val"}
_UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _describe(file, key):
    return f"{file}" if key is None else f"{file} (key {key!r})"


def _require(module, file, extra):
    """Imports an optional reader library, or raises ImportError naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"reading '{file}' needs the optional library {module}, which is not installed; "
            f'install it with: pip install "kerastp[{extra}]"'
        ) from error


def _pick_key(file, key, names, kind):
    """The one name to read: `key`, or the only name; ValueError listing names otherwise."""
    names = sorted(names)
    if not names:
        raise ValueError(f"{file}: holds no {kind}s.")
    if key is None:
        if len(names) > 1:
            raise ValueError(
                f"{file}: holds {len(names)} {kind}s {names}; pass key=... to choose one."
            )
        return names[0]
    return key


def _missing_key(file, key, names, kind):
    return ValueError(f"{file}: no {kind} {key!r}; available {kind}s: {sorted(names)}.")


def _read_npy(file, key):
    if key is not None:
        raise ValueError(f"{file}: a .npy file holds a single array; pass key=None, not {key!r}.")
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except _UNREADABLE as error:
        raise ValueError(f"{file}: not a readable .npy array ({error}).") from error


def _read_npz(file, key):
    try:
        archive = np.load(file, allow_pickle=False)
    except _UNREADABLE as error:
        raise ValueError(f"{file}: not a readable .npz archive ({error}).") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{file}: holds a single .npy array, not an .npz archive.")
    with archive:
        name = _pick_key(file, key, archive.files, "array")
        if name not in archive.files:
            raise _missing_key(file, name, archive.files, "array")
        try:
            return archive[name]
        except _UNREADABLE as error:
            raise ValueError(f"{file}: array {name!r} is corrupt ({error}).") from error


def _read_hdf5(file, key):
    h5py = _require("h5py", file, "hdf5")
    try:
        handle = h5py.File(file, "r")
    except OSError as error:
        raise ValueError(f"{file}: not a readable HDF5 file ({error}).") from error
    with handle:
        datasets = []
        handle.visititems(
            lambda name, node: datasets.append(name) if isinstance(node, h5py.Dataset) else None
        )
        name = _pick_key(file, key, datasets, "dataset")
        node = handle.get(name)
        if node is None:
            raise _missing_key(file, name, datasets, "dataset")
        if not isinstance(node, h5py.Dataset):
            raise ValueError(
                f"{file}: {name!r} is an HDF5 group, not a dataset; datasets: {sorted(datasets)}."
            )
        if node.dtype.kind not in "biuf":
            raise ValueError(
                f"{file} (key {name!r}): dtype {node.dtype} is not numeric; expected integer "
                "or floating data."
            )
        try:
            return node[()]
        except (OSError, ValueError) as error:
            raise ValueError(f"{file}: dataset {name!r} is unreadable ({error}).") from error


def _zarr_array_names(group):
    return [name for name, _ in group.arrays()]


def _read_zarr(file, key):
    zarr = _require("zarr", file, "zarr")
    try:
        node = zarr.open(str(file), mode="r")
    except _UNREADABLE as error:
        raise ValueError(f"{file}: not a readable Zarr store ({error}).") from error
    if isinstance(node, zarr.Array):
        if key is not None:
            raise ValueError(
                f"{file}: the Zarr store is a single array; pass key=None, not {key!r}."
            )
        array = node
    else:
        names = _zarr_array_names(node)
        name = _pick_key(file, key, names, "array")
        try:
            array = node[name]
        except KeyError:
            raise _missing_key(file, name, names, "array") from None
        if not isinstance(array, zarr.Array):
            raise ValueError(f"{file}: {name!r} is a Zarr group, not an array; arrays: {names}.")
    try:
        return np.asarray(array[...])
    except _UNREADABLE as error:
        raise ValueError(f"{file}: Zarr array is unreadable ({error}).") from error


def _netcdf_engine(file):
    """The first installed netCDF backend of xarray ("netcdf4", else "h5netcdf")."""
    for module, engine in (("netCDF4", "netcdf4"), ("h5netcdf", "h5netcdf")):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return engine
    raise ImportError(
        f"reading '{file}' needs xarray with the netCDF4 (or h5netcdf) backend, which is not "
        'installed; install it with: pip install "kerastp[netcdf]"'
    )


def _read_netcdf(file, key):
    xarray = _require("xarray", file, "netcdf")
    engine = _netcdf_engine(file)
    try:
        dataset = xarray.open_dataset(file, engine=engine)
    except _UNREADABLE as error:
        raise ValueError(f"{file}: not a readable netCDF file ({error}).") from error
    with dataset:
        names = [str(name) for name in dataset.data_vars]
        name = _pick_key(file, key, names, "variable")
        if name not in names:
            raise _missing_key(file, name, names, "variable")
        try:
            return dataset[name].to_numpy()
        except _UNREADABLE as error:
            raise ValueError(f"{file}: variable {name!r} is unreadable ({error}).") from error


_READERS = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".h5": _read_hdf5,
    ".hdf5": _read_hdf5,
    ".zarr": _read_zarr,
    ".nc": _read_netcdf,
}


def _check_frames(array, name, hint=""):
    """Validates frames and returns them float32 of rank 4 or 5 (rank 3 gains a channel)."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name}: expected a NumPy array; received {type(array).__name__}.")
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{name}: dtype {array.dtype} is not numeric; expected integer or floating data."
        )
    if array.ndim not in (3, 4, 5):
        raise ValueError(
            f"{name}: wrong rank {array.ndim} (shape {array.shape}); expected (T, H, W), "
            "(T, H, W, C) or (N, T, H, W, C)."
        )
    if array.size == 0:
        raise ValueError(f"{name}: the array is empty (shape {array.shape}).")
    if array.ndim == 3:
        array = array[..., None]
    with np.errstate(over="ignore"):  # values beyond float32 become Inf: counted below
        array = np.asarray(array, dtype=np.float32)
    nan = int(np.count_nonzero(np.isnan(array)))
    inf = int(np.count_nonzero(np.isinf(array)))
    if nan or inf:
        raise ValueError(
            f"{name}: holds {nan} NaN and {inf} Inf values (as float32) out of {array.size}; "
            f"clean or fill them first.{hint}"
        )
    return array


def load_array(path, key=None):
    """Reads frames from a `.npy`, `.npz`, HDF5, Zarr or netCDF file and checks them.

    Formats (by suffix, case-insensitive):

    * `.npy`: memory-mapped with NumPy; `key` must be None.
    * `.npz`: the array `key`; may be omitted when the archive holds exactly one array.
    * `.h5`, `.hdf5` (h5py, extra `hdf5`): the dataset at path `key` (e.g. "group/frames");
      may be omitted when the file holds exactly one dataset.
    * `.zarr` (zarr, extra `zarr`): a store directory holding one array (`key` None) or a
      group (`key` names an array in it; may be omitted when it holds exactly one).
    * `.nc` (xarray with netCDF4 or h5netcdf, extra `netcdf`): the data variable `key`; may
      be omitted when the file holds exactly one. The variable's dimensions are taken in their
      stored order (no transposition); fill values are read as NaN and so rejected.

    Args:
        path: the file or Zarr directory (str or path-like).
        key: array / dataset / variable name, see above.

    Returns:
        float32 array `(T, H, W, C)` or `(N, T, H, W, C)`. A rank-3 array `(T, H, W)` gets a
        channel axis, `(T, H, W, 1)`. A float32 `.npy` comes back as a read-only memory map.

    Raises:
        FileNotFoundError: `path` does not exist.
        PermissionError: `path` is not readable.
        ValueError: unknown suffix (the message lists the supported ones); an unreadable
            file; a missing or ambiguous key (the message lists the available ones); wrong
            rank; non-numeric dtype; an empty array; NaN or Inf values (counted). Every
            message names the file.
        ImportError: the optional library for the format is missing (the message names the
            pip extra).

    Example:

    >>> np.save("frames.npy", np.zeros((30, 64, 64), np.uint8))  # doctest: +SKIP
    >>> load_array("frames.npy").shape  # doctest: +SKIP
    (30, 64, 64, 1)
    """
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"path must be a str or path-like; received path={path!r}.")
    if key is not None and not isinstance(key, str):
        raise ValueError(f"key must be a str or None; received key={key!r}.")
    file = pathlib.Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"Array file '{file}' not found.")
    check_input_path(file, "path", directory_ok=True)  # PermissionError if unreadable
    suffix = file.suffix.lower()
    if suffix not in _READERS:
        supported = ", ".join(
            f"{s} ({lib})" if extra is None else f"{s} ({lib}, extra '{extra}')"
            for s, (lib, extra) in ARRAY_SUFFIXES.items()
        )
        raise ValueError(f"{file}: unknown suffix {file.suffix!r}; supported: {supported}.")
    raw = _READERS[suffix](file, key)
    hint = " netCDF fill values (_FillValue) are read as NaN." if suffix == ".nc" else ""
    return _check_frames(raw, _describe(file, key), hint)


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

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
        _check_int("channels", channels, minimum=1)
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


# --------------------------------------------------------------------------------------------
# Windows and splits
# --------------------------------------------------------------------------------------------


def array_windows(array, input_frames, output_frames, stride=1):
    """Cuts a series or a batch of sequences into (past, future) windows.

    * Rank 4, a series `(T, H, W, C)`: `kerastp.data.radar.sliding_windows`, windows starting
      at 0, stride, 2 * stride, ... (`window_starts`).
    * Rank 5, sequences `(N, T, H, W, C)`: the same windows inside every sequence (never
      across two), sequence-major: the windows of sequence 0, then of sequence 1, ... Each
      sequence gives `(T - input_frames - output_frames) // stride + 1` windows; with
      T == input_frames + output_frames that is the one window of the whole sequence.

    Args:
        array: frames of rank 4 or 5.
        input_frames: frames in each `past` (>= 1).
        output_frames: frames in each `future`, right after `past` (>= 1).
        stride: frames between window starts (>= 1).

    Returns:
        (past, future): (M, input_frames, H, W, C) and (M, output_frames, H, W, C) copies of
        the array's dtype.

    Raises:
        ValueError: wrong rank, too few frames for one window, a bad argument.

    Example:

    >>> past, future = array_windows(np.zeros((4, 20, 8, 8, 1)), 6, 12, stride=1)
    >>> past.shape, future.shape
    ((12, 6, 8, 8, 1), (12, 12, 8, 8, 1))
    """
    array = np.asarray(array)
    if array.ndim == 4:
        return sliding_windows(array, input_frames, output_frames, stride)
    if array.ndim != 5:
        raise ValueError(
            f"array must have rank 4, (T, H, W, C), or rank 5, (N, T, H, W, C); received "
            f"shape {array.shape} (rank {array.ndim})."
        )
    input_frames = _check_int("input_frames", input_frames, minimum=1)
    output_frames = _check_int("output_frames", output_frames, minimum=1)
    length = input_frames + output_frames
    if array.shape[1] < length:
        raise ValueError(
            f"sequences have {array.shape[1]} frames; one window of input_frames + "
            f"output_frames = {input_frames} + {output_frames} needs {length}."
        )
    starts = window_starts(array.shape[1], input_frames, output_frames, stride)
    index = starts[:, None] + np.arange(length)
    windows = array[:, index].reshape(-1, length, *array.shape[2:])
    return windows[:, :input_frames], windows[:, input_frames:]


def _check_fractions(validation_fraction, test_fraction):
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a number in [0, 1); received {name}={value!r}.")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            f"validation_fraction + test_fraction must be < 1 to leave training data; received "
            f"{validation_fraction} + {test_fraction}."
        )


def _split_sizes(n, validation_fraction, test_fraction, unit):
    """(train, val, test) counts: round(n * fraction), at least 1 for a fraction > 0."""

    def size(fraction):
        return max(1, math.floor(n * fraction + 0.5)) if fraction > 0 else 0

    val, test = size(validation_fraction), size(test_fraction)
    train = n - val - test
    if train < 1:
        raise ValueError(
            f"{n} {unit} are too few to split off validation_fraction={validation_fraction} "
            f"and test_fraction={test_fraction} ({val} + {test}) and keep training data."
        )
    return train, val, test


def split_sequences(n, validation_fraction=0.1, test_fraction=0.0, seed=0):
    """Splits N independent sequences into train / val / test index sets (seeded, disjoint).

    Indices are a `np.random.default_rng(seed)` permutation of range(n): the first `val`
    go to validation, the next `test` to test, the rest to training; each set is returned
    sorted. Sizes: `round(n * fraction)`, at least 1 for a fraction > 0. Sequences are
    assumed independent; if they are consecutive chunks of one recording, neighbours
    correlate and a random split leaks: save them as one series and use `split_series`.

    Args:
        n: number of sequences (>= 1).
        validation_fraction, test_fraction: fractions in [0, 1), sum < 1.
        seed: non-negative int.

    Returns:
        dict "train", "val", "test" -> sorted int64 index arrays.

    Example:

    >>> {k: v.tolist() for k, v in split_sequences(10, 0.2, seed=0).items()}
    {'train': [0, 1, 2, 3, 5, 7, 8, 9], 'val': [4, 6], 'test': []}
    """
    n = _check_int("n", n, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    _check_fractions(validation_fraction, test_fraction)
    _, val, test = _split_sizes(n, validation_fraction, test_fraction, "sequences")
    order = np.random.default_rng(seed).permutation(n)
    return {
        "train": np.sort(order[val + test :]),
        "val": np.sort(order[:val]),
        "test": np.sort(order[val : val + test]),
    }


def split_series(num_frames, validation_fraction=0.1, test_fraction=0.0):
    """Splits one series into contiguous time blocks: train, then validation, then test.

    The blocks are `[0, a)`, `[a, b)`, `[b, num_frames)` with block sizes
    `round(num_frames * fraction)` (at least 1 for a fraction > 0). Windows are cut inside each
    block, so no window crosses a boundary and later frames never train the model that is
    validated on them. Deterministic (no seed).

    Args:
        num_frames: frames in the series (>= 1).
        validation_fraction, test_fraction: fractions in [0, 1), sum < 1.

    Returns:
        dict "train", "val", "test" -> (start, stop) frame ranges; an empty block has
        start == stop.

    Example:

    >>> split_series(100, 0.2, 0.1)
    {'train': (0, 70), 'val': (70, 90), 'test': (90, 100)}
    """
    num_frames = _check_int("num_frames", num_frames, minimum=1)
    _check_fractions(validation_fraction, test_fraction)
    train, val, _ = _split_sizes(num_frames, validation_fraction, test_fraction, "frames")
    return {
        "train": (0, train),
        "val": (train, train + val),
        "test": (train + val, num_frames),
    }


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def _check_split_name(split):
    key = _SPLIT_ALIASES.get(split, split)
    if key not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}; received split={split!r}.")
    return key


def _empty_split(name, split):
    argument = "validation_fraction" if split == "val" else "test_fraction"
    return ValueError(f"{name}: split {split!r} is empty ({argument}=0); pass {argument} > 0.")


def _prepare(
    source,
    split,
    key,
    input_frames,
    output_frames,
    stride,
    normalization,
    validation_fraction,
    test_fraction,
    seed,
):
    """Loads, splits and normalises; returns (frames (F, H, W, C), window starts, norm).

    `frames` concatenates the split's sequences (or its block of the series); `starts` index
    the first frame of every window in it, none crossing a sequence.
    """
    split = _check_split_name(split)
    seed = _check_int("seed", seed, minimum=0)
    input_frames = _check_int("input_frames", input_frames, minimum=1)
    output_frames = _check_int("output_frames", output_frames, minimum=1)
    stride = _check_int("stride", stride, minimum=1)
    length = input_frames + output_frames
    if isinstance(source, np.ndarray):
        if key is not None:
            raise ValueError(f"key applies to files only; received key={key!r} with an array.")
        name = "array"
        array = _check_frames(source, name)
    elif isinstance(source, str | os.PathLike):
        array = load_array(source, key)
        name = _describe(pathlib.Path(source).expanduser(), key)
    else:
        raise ValueError(
            f"source must be a file path or a NumPy array; received {type(source).__name__}."
        )
    if isinstance(normalization, str):
        normalization = Normalization(normalization)
    elif not isinstance(normalization, Normalization):
        raise ValueError(
            f"normalization must be one of {NORMALIZATION_METHODS} or a Normalization; "
            f"received normalization={normalization!r}."
        )
    if normalization.fitted and normalization.method != "none":
        if normalization.channels != array.shape[-1]:
            raise ValueError(
                f"{name}: has {array.shape[-1]} channels but the given Normalization was "
                f"fitted on {normalization.channels}."
            )

    if array.ndim == 5:
        num_frames = array.shape[1]
        if num_frames < length:
            raise ValueError(
                f"{name}: sequences have {num_frames} frames, too few for one window of "
                f"input_frames + output_frames = {input_frames} + {output_frames} = {length}."
            )
        indices = split_sequences(array.shape[0], validation_fraction, test_fraction, seed)
        if not len(indices[split]):
            raise _empty_split(name, split)
        if not normalization.fitted:
            normalization.fit(array[indices["train"]])
        chosen = normalization.transform(array[indices[split]])
        per_sequence = window_starts(num_frames, input_frames, output_frames, stride)
        offsets = np.arange(len(chosen))[:, None] * num_frames
        starts = (offsets + per_sequence).reshape(-1)
        frames = chosen.reshape(-1, *chosen.shape[2:])
        return frames, starts, normalization

    num_frames = array.shape[0]
    if num_frames < length:
        raise ValueError(
            f"{name}: the series has {num_frames} frames, too few for one window of "
            f"input_frames + output_frames = {input_frames} + {output_frames} = {length}."
        )
    blocks = split_series(num_frames, validation_fraction, test_fraction)
    start, stop = blocks[split]
    if stop == start:
        raise _empty_split(name, split)
    if stop - start < length:
        raise ValueError(
            f"{name}: the {split!r} block of the series (frames {start} to {stop}) has "
            f"{stop - start} frames, too few for one window of input_frames + output_frames = "
            f"{length}; use a longer series or other validation_fraction / test_fraction."
        )
    if not normalization.fitted:
        normalization.fit(array[slice(*blocks["train"])])
    frames = normalization.transform(array[start:stop])
    starts = window_starts(stop - start, input_frames, output_frames, stride)
    return frames, starts, normalization


def prepare_arrays(
    source,
    split="val",
    key=None,
    *,
    input_frames,
    output_frames,
    stride=1,
    normalization="minmax",
    validation_fraction=0.1,
    test_fraction=0.0,
    seed=0,
):
    """All (past, future) windows of a split as NumPy arrays, in order, for evaluation.

    Same loading, split and normalisation as `array_dataset` (same arguments give the same
    windows, unshuffled): windows sequence-major for rank-5 data, in time order for a series.

    Returns:
        (past, future, normalization): float32 (M, input_frames, H, W, C) and
        (M, output_frames, H, W, C) in the normalised scale, and the `Normalization` used
        (fitted on the training split), whose `inverse` maps predictions back to data units.

    Example:

    >>> past, future, norm = prepare_arrays("frames.npy", "val", input_frames=6,
    ...                                     output_frames=12)  # doctest: +SKIP
    """
    frames, starts, norm = _prepare(
        source,
        split,
        key,
        input_frames,
        output_frames,
        stride,
        normalization,
        validation_fraction,
        test_fraction,
        seed,
    )
    index = starts[:, None] + np.arange(input_frames + output_frames)
    windows = frames[index]
    return windows[:, :input_frames], windows[:, input_frames:], norm


def array_dataset(
    source,
    split="train",
    key=None,
    *,
    input_frames,
    output_frames,
    stride=1,
    batch_size=16,
    normalization="minmax",
    validation_fraction=0.1,
    test_fraction=0.0,
    seed=0,
    shuffle=None,
    cache=False,
    drop_remainder=False,
):
    """A `tf.data.Dataset` of (past, future) windows of the user's own data, and its scaling.

    The data (a file read by `load_array`, or an in-memory array) are split (rank 5: whole
    sequences, `split_sequences`; rank 4: contiguous time blocks, `split_series`), the
    normalisation is fitted on the TRAINING split only (also for split="val" / "test", so
    every split shares one scale) and applied, and windows are sliced from the normalised
    frames held once in memory (see `array_windows`).

    Args:
        source: path of a file (see `load_array`) or a NumPy array (T, H, W[, C]) or
            (N, T, H, W, C).
        split: "train", "val" ("validation") or "test".
        key: array / dataset / variable in the file; see `load_array`.
        input_frames, output_frames, stride: the windows (keyword-only, required: there is
            no natural default for the user's data).
        batch_size: windows per batch (>= 1).
        normalization: a method name of `NORMALIZATION_METHODS`, or a `Normalization`; a
            fitted one (e.g. `Normalization.from_config` of a trained model's sidecar) is used
            as is, an unfitted one is fitted on the training split.
        validation_fraction, test_fraction: split sizes, see `split_sequences` / `split_series`.
        seed: non-negative int; seeds the sequence split and the shuffle.
        shuffle: shuffle the windows each pass; default True for "train", False otherwise.
        cache: cache the sliced windows after the first pass. Off by default: the frames are
            in memory already and cached windows overlap, costing up to
            (input_frames + output_frames) / stride times their memory.
        drop_remainder: drop the last, smaller batch.

    Returns:
        (dataset, normalization): a `tf.data.Dataset` of float32 (B, input_frames, H, W, C)
        and (B, output_frames, H, W, C) with a known cardinality, prefetched; and the fitted
        `Normalization` (save `normalization.to_config()` with the model).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: see `load_array`, `Normalization.fit`; too few frames for one window (in
            the sequences, the series or a split's block); an empty split; a bad argument.

    Example:

    >>> frames = np.random.default_rng(0).random((8, 20, 16, 16, 1))  # (N, T, H, W, C)
    >>> ds, norm = array_dataset(frames, input_frames=10, output_frames=10, batch_size=4)
    >>> [tuple(s.shape) for s in ds.element_spec]
    [(None, 10, 16, 16, 1), (None, 10, 16, 16, 1)]
    """
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    frames, starts, norm = _prepare(
        source,
        split,
        key,
        input_frames,
        output_frames,
        stride,
        normalization,
        validation_fraction,
        test_fraction,
        seed,
    )
    if shuffle is None:
        shuffle = _check_split_name(split) == "train"
    dataset = windows_dataset(
        frames, starts, input_frames, output_frames, batch_size,
        shuffle=shuffle, seed=seed, cache=cache, drop_remainder=drop_remainder,
    )  # fmt: skip
    return dataset, norm
