"""The user's own data: windows, leakage-free splits and the `tf.data` pipeline.

Data come as one of two layouts (the last axis is always channels):

* **sequences**, rank 5, `(N, T, H, W, C)`: N independent sequences of T frames each;
* **a series**, rank 4, `(T, H, W, C)`: one long sequence, cut into windows.

A rank-3 array `(T, H, W)` is a single-channel series: `load_array` adds the channel axis,
giving `(T, H, W, 1)`. A rank-4 array is therefore always read as `(T, H, W, C)`; data laid out
as `(N, T, H, W)` must get their channel axis first (`x[..., None]`, saved as rank 5).

Files are read by `kerastp.data.array_files.load_array` (`.npy`, `.npz`, HDF5, Zarr, netCDF)
and scaled by `kerastp.data.normalization.Normalization`; both are importable from here too.

Windows (`array_windows`) are `(past, future)` pairs of `input_frames` then `output_frames`
consecutive frames, started every `stride` frames: inside each sequence for rank-5 data, along
the series for rank-4 data. A window never spans two sequences or two splits.

Splits: sequences are split by whole sequences (`split_sequences`, seeded permutation); a
series by contiguous time blocks (`split_series`: train first, then validation, then test),
and windows are cut inside each block, so no window crosses a split boundary.

Normalisation is fitted per channel on the training split only (also when a dataset of the
validation or test split is asked for), so that predictions can be mapped back to data units
(`Normalization.inverse`).

This module imports only NumPy; the optional readers are imported inside `load_array` and
TensorFlow inside `array_dataset`.
"""

import math
import os
import pathlib

import numpy as np

from kerastp.data.array_files import as_frames, describe_source, load_array
from kerastp.data.normalization import NORMALIZATION_METHODS, Normalization
from kerastp.data.radar import sliding_windows, window_starts, windows_dataset
from kerastp.validation import check_int

__all__ = [
    "array_dataset",
    "array_windows",
    "prepare_arrays",
    "split_sequences",
    "split_series",
]

_SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"validation": "val"}


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
    input_frames = check_int("input_frames", input_frames, minimum=1)
    output_frames = check_int("output_frames", output_frames, minimum=1)
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
    n = check_int("n", n, minimum=1)
    seed = check_int("seed", seed, minimum=0)
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
    num_frames = check_int("num_frames", num_frames, minimum=1)
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


def prepare_frames(
    source,
    split="train",
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
    """A split's normalised frames, held once, and where its windows start in them.

    The loading, split and normalisation behind `prepare_arrays` and `array_dataset`:
    `frames` concatenates the split's sequences (or its block of the series); the windows
    are `frames[s : s + input_frames + output_frames]` for each `s` in `starts`, none crossing
    a sequence (what `kerastp.data.pydatasets.WindowsPyDataset.from_frames` slices per batch).

    Returns:
        (frames, starts, normalization): float32 (F, H, W, C), int (M,) and the
        `Normalization` used (fitted on the training split).
    """
    split = _check_split_name(split)
    seed = check_int("seed", seed, minimum=0)
    input_frames = check_int("input_frames", input_frames, minimum=1)
    output_frames = check_int("output_frames", output_frames, minimum=1)
    stride = check_int("stride", stride, minimum=1)
    length = input_frames + output_frames
    if isinstance(source, np.ndarray):
        if key is not None:
            raise ValueError(f"key applies to files only; received key={key!r} with an array.")
        name = "array"
        array = as_frames(source, name)
    elif isinstance(source, str | os.PathLike):
        array = load_array(source, key)
        name = describe_source(pathlib.Path(source).expanduser(), key)
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
    frames, starts, norm = prepare_frames(
        source,
        split,
        key,
        input_frames=input_frames,
        output_frames=output_frames,
        stride=stride,
        normalization=normalization,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        seed=seed,
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
    batch_size = check_int("batch_size", batch_size, minimum=1)
    frames, starts, norm = prepare_frames(
        source,
        split,
        key,
        input_frames=input_frames,
        output_frames=output_frames,
        stride=stride,
        normalization=normalization,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    if shuffle is None:
        shuffle = _check_split_name(split) == "train"
    dataset = windows_dataset(
        frames, starts, input_frames, output_frames, batch_size,
        shuffle=shuffle, seed=seed, cache=cache, drop_remainder=drop_remainder,
    )  # fmt: skip
    return dataset, norm
