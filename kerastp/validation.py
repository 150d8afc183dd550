"""Argument checks shared by kerastp's layers, models, loaders, runners and the CLI.

Every check raises an error that names the argument and the value received: `ValueError`
for a wrong value, `FileNotFoundError` / `PermissionError` / `NotADirectoryError` /
`IsADirectoryError` for a path that cannot serve. This module imports only NumPy (the
LiteRT runner uses it on machines without TensorFlow).
"""

import math
import os
import pathlib

import numpy as np


def positive_int(name, value):
    """Returns `value` as int, or raises `ValueError` if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {name}={value!r}")
    return int(value)


def positive_ints(**values):
    """`positive_int` over keyword arguments, in order."""
    return [positive_int(name, value) for name, value in values.items()]


def non_negative_int(name, value):
    """Returns `value` as int, or raises `ValueError` if it is not an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {name}={value!r}")
    return int(value)


def check_int(name, value, minimum=None):
    """Returns `value` as int, or raises `ValueError` if it is not an integer (bools are not)
    or is below `minimum`. The data loaders' check: "seed must be >= 0; received seed=-1."."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int; received {name}={value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; received {name}={value!r}.")
    return int(value)


def finite_number(name, value, minimum=None, *, strict=False):
    """Returns `value` as float, or raises `ValueError` if it is not a finite real number
    (NaN, Inf, a string or a bool), or is below `minimum` (at or below it with `strict`)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"`{name}` must be a finite number, got {name}={value!r}")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {name}={value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"`{name}` must be {relation} {minimum}, got {name}={value!r}")
    return float(value)


def check_frames(frames, name, shape, *, hint=""):
    """Checks a NumPy batch of frames and returns it as a float32 array.

    Args:
        frames: array-like.
        name: the argument's name, used in every message.
        shape: expected shape; `None` entries (such as the batch) take any size >= 1.
        hint: appended to the message of a wrong rank or shape.

    Raises:
        ValueError: not an array of real numbers (strings, objects, ragged lists); wrong rank
            or shape; an empty batch; integer, unsigned or boolean frames (frames are float
            in model scale; uint8 pixels must be divided by 255 first); NaN or Inf values.
    """
    try:
        frames = np.asarray(frames)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise ValueError(f"`{name}` must be an array of frames: {error}") from error
    expected = ", ".join("B" if d is None else str(d) for d in shape)
    if frames.ndim != len(shape):
        raise ValueError(
            f"`{name}` must have shape ({expected}){hint}, rank {len(shape)}; got shape "
            f"{frames.shape} (rank {frames.ndim})"
        )
    if frames.size == 0:
        raise ValueError(f"`{name}` is empty: shape {frames.shape}")
    for got, want in zip(frames.shape, shape, strict=True):
        if want is not None and got != want:
            raise ValueError(f"`{name}` must have shape ({expected}){hint}; got {frames.shape}")
    if not np.issubdtype(frames.dtype, np.floating):
        advice = " (divide uint8 frames by 255 first)" if frames.dtype == np.uint8 else ""
        raise ValueError(
            f"`{name}` must hold floating-point frames in model scale, got dtype "
            f"{frames.dtype}{advice}"
        )
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes Inf: counted
        frames = frames.astype(np.float32, copy=False)
    bad = int(frames.size - np.count_nonzero(np.isfinite(frames)))
    if bad:
        raise ValueError(
            f"`{name}` holds {bad} NaN or Inf values (as float32) out of {frames.size} "
            f"(shape {frames.shape})"
        )
    return frames


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


def _nearest_existing(path):
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return pathlib.Path.cwd()


def _check_creatable(path, name):
    """Raises if `path` (absent) could not be created: a file stands where a folder must be
    (NotADirectoryError), or the nearest existing folder is not writable (PermissionError)."""
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise NotADirectoryError(
            f"`{name}`={str(path)!r} cannot be created: '{ancestor}' is a file, not a directory"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(
            f"`{name}`={str(path)!r} cannot be created: directory '{ancestor}' is not writable"
        )


def check_output_dir(path, name):
    """Checks that `path` is, or can be created as, a writable directory; returns a Path.

    Raises:
        NotADirectoryError: `path` or one of its parents is a file.
        PermissionError: the directory (or its nearest existing parent) is not writable.
    """
    path = pathlib.Path(path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(
                f"`{name}` must be a directory, got {name}={str(path)!r}, which is a file"
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"`{name}`={str(path)!r} is not a writable directory")
        return path
    _check_creatable(path, name)
    return path


def check_output_file(path, name):
    """Checks that a file can be written at `path` (parents are created); returns a Path.

    Raises:
        IsADirectoryError: `path` is an existing directory.
        NotADirectoryError: one of its parents is a file.
        PermissionError: the file or its directory is not writable.
    """
    path = pathlib.Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(
            f"`{name}` must be a file path, got {name}={str(path)!r}, which is a directory"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"`{name}`={str(path)!r} is not writable")
    _check_creatable(path, name)
    return path


def check_saved_model_target(path, name="SavedModel directory"):
    """Checks that a SavedModel may be written at `path`, replacing only an earlier SavedModel;
    returns it as a Path.

    A SavedModel is a directory that an export replaces whole, so an existing directory that is
    not a SavedModel (a pretrained model's folder, a run, the user's own files) is refused
    rather than deleted.

    Raises:
        FileExistsError: a file, or a non-empty directory without `saved_model.pb`, at `path`.
        NotADirectoryError / PermissionError: as `check_output_file`.
    """
    path = pathlib.Path(path).expanduser()
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        if entries and "saved_model.pb" not in entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise FileExistsError(
                f"{name} {str(path)!r} exists and is not a SavedModel (it holds {shown}); "
                "kerastp replaces only an earlier SavedModel there: choose another directory "
                "or name"
            )
        if not os.access(path, os.W_OK | os.X_OK) or not os.access(path.parent, os.W_OK):
            raise PermissionError(f"{name} {str(path)!r} cannot be replaced (not writable)")
        return path
    if path.exists() or path.is_symlink():
        raise FileExistsError(f"{name} {str(path)!r} exists and is a file, not a SavedModel")
    _check_creatable(path, name)
    return path


def check_input_path(path, name, *, directory_ok=False):
    """Checks that `path` exists and can be read; returns it as a Path.

    Raises:
        ValueError: `path` is not a str or path-like.
        FileNotFoundError: nothing at `path`.
        IsADirectoryError: a directory where a file is needed (unless `directory_ok`).
        PermissionError: not readable (for a directory: not listable).
    """
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"`{name}` must be a str or path-like, got {name}={path!r}")
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"`{name}`: '{path}' not found")
    if path.is_dir():
        if not directory_ok:
            raise IsADirectoryError(f"`{name}` must be a file, got '{path}', a directory")
        mode = os.R_OK | os.X_OK
    else:
        mode = os.R_OK
    if not os.access(path, mode):
        raise PermissionError(f"`{name}`: '{path}' is not readable (permission denied)")
    return path
