"""Finding and reading MNIST digits: the lookup chain, the offline probe, idx and npz readers.

`resolve_mnist_path` finds MNIST (an explicit path, then the environment variable
`KERASTP_MNIST`, then the Keras cache; see `kerastp.data.locations`), downloading it through
Keras only as a last resort and only when a quick connection probe succeeds. `load_mnist_digits`
reads a keras-layout `mnist.npz` or the official idx files, checking headers, sizes and, for the
official file names, the published MD5.

This module imports only NumPy; Keras is imported only when MNIST has to be downloaded.
"""

import gzip
import hashlib
import pathlib
import socket
import threading

import numpy as np

from kerastp.data.locations import find_location, keras_home, not_found_message
from kerastp.saving import load_npz

__all__ = [
    "DIGIT_SIZE",
    "MNIST_ENV_VAR",
    "MnistUnavailableError",
    "load_mnist_digits",
    "resolve_mnist_path",
]

DIGIT_SIZE = 28

MNIST_ENV_VAR = "KERASTP_MNIST"
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# SHA-256 that `keras.datasets.mnist.load_data()` checks for the file at MNIST_URL.
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

# MD5 of the official (LeCun) gzipped idx image files, checked when a file has this name.
_OFFICIAL_IDX_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
}
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801

_PROBE_HOST = "storage.googleapis.com"
_PROBE_PORT = 443
_PROBE_TIMEOUT_S = 3.0


class MnistUnavailableError(FileNotFoundError):
    """MNIST could not be found locally and could not be downloaded."""


# --------------------------------------------------------------------------------------------
# Locating and reading MNIST
# --------------------------------------------------------------------------------------------


def _idx_candidates(directory, split):
    prefix = _IDX_PREFIX[split]
    names = (
        f"{prefix}-images-idx3-ubyte",
        f"{prefix}-images-idx3-ubyte.gz",
        f"{prefix}-images.idx3-ubyte",
        f"{prefix}-images.idx3-ubyte.gz",
    )
    return [directory / name for name in names]


def _has_idx_images(directory):
    return any(p.is_file() for split in _IDX_PREFIX for p in _idx_candidates(directory, split))


def _default_cache():
    return keras_home() / "datasets" / "mnist.npz"


def _recognise(path):
    """Maps a file or a directory to an MNIST source, or None when it holds no MNIST files."""
    if path.is_file():
        return path
    if path.is_dir():
        npz = path / "mnist.npz"
        if npz.is_file():
            return npz
        if _has_idx_images(path):
            return path
    return None


_EXPECTED = (
    "an MNIST file or a directory holding mnist.npz or the idx image files "
    "(train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz])"
)


def _probe_connection(host=_PROBE_HOST, port=_PROBE_PORT, timeout=_PROBE_TIMEOUT_S):
    """True when a TCP connection to `host:port` opens within about `timeout` seconds.

    The connection is attempted in a daemon thread so that a hanging DNS lookup (which
    `socket` timeouts do not cover) cannot block the caller for longer than `timeout`.
    """
    result = {"ok": False}

    def attempt():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result["ok"] = True
        except OSError:
            pass

    thread = threading.Thread(target=attempt, name="kerastp-mnist-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return result["ok"]


def _download_mnist():
    """Downloads mnist.npz into the Keras cache (as `keras.datasets.mnist.load_data` does).

    Returns the path of the downloaded file. Uses `keras.utils.get_file` with the same origin
    and SHA-256 as `keras.datasets.mnist.load_data()`, which returns the arrays, not the path.
    """
    from kerastp.backend import require_keras

    keras = require_keras()
    return pathlib.Path(
        keras.utils.get_file(fname="mnist.npz", origin=MNIST_URL, file_hash=MNIST_SHA256)
    )


def _unavailable(reason, candidates):
    """The `MnistUnavailableError` listing where MNIST was looked for and how to provide it."""
    cache = _default_cache()
    advice = (
        "Provide them in one of these ways:\n"
        "  1. pass path=... in Python, or --mnist-path ... on the command line (a keras-layout "
        "mnist.npz, an idx file such as t10k-images-idx3-ubyte.gz, or a directory holding "
        "them);\n"
        f"  2. set the environment variable {MNIST_ENV_VAR}=/path/to/mnist.npz;\n"
        f"  3. put mnist.npz in the Keras cache, {cache} "
        "(~/.keras/datasets/mnist.npz unless KERAS_HOME is set);\n"
        f"  4. connect to the internet so that Keras can download {MNIST_URL}.\n"
        "Or use the built-in digits, which need no file and no network: "
        'source="procedural" in Python, --data procedural on the command line.'
    )
    message = not_found_message(
        "MNIST digits",
        argument="path",
        env_var=MNIST_ENV_VAR,
        candidates=candidates,
        reason=f" locally and not downloaded ({reason})",
        advice=advice,
    )
    return MnistUnavailableError(message)


def resolve_mnist_path(path=None, *, allow_download=True):
    """Finds MNIST on disk, downloading it only as a last resort.

    Resolution order:
    1. `path`: an `.npz` or idx file, or a directory holding `mnist.npz` or idx image files.
    2. The environment variable `KERASTP_MNIST` (same forms as `path`).
    3. The Keras cache, `$KERAS_HOME/datasets/mnist.npz` (`KERAS_HOME` defaults to `~/.keras`).
    4. A download through Keras, attempted only when `storage.googleapis.com:443` answers a
       connection probe within a few seconds.

    An explicit `path` or `KERASTP_MNIST` that points at nothing raises immediately; it never
    falls through to the later options.

    Args:
        path: optional file or directory (str or path-like).
        allow_download: when False, step 4 is skipped (offline use and tests).

    Returns:
        `pathlib.Path` of an `.npz` file, an idx file, or a directory holding idx image files.

    Raises:
        FileNotFoundError: `path` or `KERASTP_MNIST` names a missing file or a directory
            without MNIST files.
        MnistUnavailableError: (a `FileNotFoundError`) nothing found and the download was
            disabled, unreachable or failed; the message lists every way to provide MNIST.

    Example:

    >>> resolve_mnist_path("../shared/data/mnist")  # doctest: +SKIP
    PosixPath('../shared/data/mnist/mnist.npz')
    """
    candidates = [_default_cache()]
    found = find_location(
        path,
        argument="path",
        env_var=MNIST_ENV_VAR,
        candidates=candidates,
        recognise=_recognise,
        expected=_EXPECTED,
    )
    if found is not None:
        return found
    if not allow_download:
        raise _unavailable("downloading disabled", candidates)
    if not _probe_connection():
        raise _unavailable(
            f"no connection to {_PROBE_HOST}:{_PROBE_PORT} within {_PROBE_TIMEOUT_S:g} s",
            candidates,
        )
    try:
        return _download_mnist()
    except Exception as error:  # any download failure becomes the same actionable error
        raise _unavailable(f"download failed: {error}", candidates) from error


def _check_split(split):
    if split not in _IDX_PREFIX:
        raise ValueError(f"split must be 'train' or 'test'; received split={split!r}.")


def _md5(path):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_idx_images(file):
    """Reads an idx3-ubyte image file (optionally gzipped) into a uint8 (N, 28, 28) array."""
    expected_md5 = _OFFICIAL_IDX_MD5.get(file.name)
    if expected_md5 is not None:
        actual = _md5(file)
        if actual != expected_md5:
            raise ValueError(
                f"{file}: MD5 {actual} does not match the official {file.name} "
                f"({expected_md5}); the file is corrupt or not the official MNIST file."
            )
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rb") as f:
                raw = f.read()
        else:
            raw = file.read_bytes()
    except (OSError, EOFError) as error:
        raise ValueError(f"{file}: cannot read the idx file ({error}).") from error
    if len(raw) < 16:
        raise ValueError(f"{file}: too short for an idx3 header ({len(raw)} bytes).")
    magic = int.from_bytes(raw[0:4], "big")
    if magic == _IDX_LABELS_MAGIC:
        raise ValueError(f"{file}: this is an idx1 label file; pass the images-idx3 file.")
    if magic != _IDX_IMAGES_MAGIC:
        raise ValueError(
            f"{file}: bad idx magic number 0x{magic:08x}; expected 0x{_IDX_IMAGES_MAGIC:08x} "
            "(unsigned-byte images with 3 dimensions)."
        )
    count, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    if (rows, cols) != (DIGIT_SIZE, DIGIT_SIZE):
        raise ValueError(f"{file}: images are {rows}x{cols}; expected 28x28.")
    if len(raw) - 16 != count * rows * cols:
        raise ValueError(
            f"{file}: header announces {count} images ({count * rows * cols} bytes) but the "
            f"file holds {len(raw) - 16} data bytes (truncated or corrupt)."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows, cols).copy()


def _read_npz_images(file, split):
    key = f"x_{split}"
    images = load_npz(file, [key], what="a keras-layout mnist.npz")[key]
    if images.dtype != np.uint8:
        raise ValueError(f"{file}: '{key}' has dtype {images.dtype}; expected uint8.")
    if images.ndim != 3 or images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or len(images) == 0:
        raise ValueError(f"{file}: '{key}' has shape {images.shape}; expected (N, 28, 28), N>0.")
    return images


def _idx_split_of(name):
    for split, prefix in _IDX_PREFIX.items():
        if name.startswith(f"{prefix}-"):
            return split
    return None


def load_mnist_digits(split="train", path=None, *, allow_download=True):
    """Loads MNIST digit images as uint8 (N, 28, 28).

    Reads a keras-layout `mnist.npz` (`x_train`, `x_test`) or the official idx files
    (`train-images-idx3-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`, or a directory holding
    them). The idx magic number, header and size are verified, and the MD5 of an official
    `*-images-idx3-ubyte.gz` file is checked against the published value.

    Args:
        split: "train" (60,000 digits) or "test" (10,000 digits).
        path: optional file or directory; see `resolve_mnist_path` for the lookup order.
        allow_download: passed to `resolve_mnist_path`.

    Returns:
        uint8 array (N, 28, 28), white digits on black.

    Raises:
        ValueError: bad `split`, or a file that is corrupt or not MNIST.
        FileNotFoundError: see `resolve_mnist_path`.

    Example:

    >>> x = load_mnist_digits("test", path="../shared/data/mnist")  # doctest: +SKIP
    >>> x.shape, x.dtype
    ((10000, 28, 28), dtype('uint8'))
    """
    _check_split(split)
    source = resolve_mnist_path(path, allow_download=allow_download)
    if source.is_dir():
        npz = source / "mnist.npz"
        if npz.is_file():
            return _read_npz_images(npz, split)
        candidates = _idx_candidates(source, split)
        for candidate in candidates:
            if candidate.is_file():
                return _read_idx_images(candidate)
        raise FileNotFoundError(
            f"'{source}' holds no {split} images; looked for "
            f"{', '.join(c.name for c in candidates)} and mnist.npz."
        )
    if source.suffix == ".npz":
        return _read_npz_images(source, split)
    file_split = _idx_split_of(source.name)
    if file_split is not None and file_split != split:
        raise ValueError(
            f"'{source}' holds the {file_split} split but split={split!r} was requested; pass "
            "the matching file or a directory holding both."
        )
    return _read_idx_images(source)
