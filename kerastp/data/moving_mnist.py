"""Moving MNIST: digit sources, the bouncing-digits generator and `tf.data` pipelines.

The protocol follows OpenSTL's Moving MNIST generator (itself the Srivastava et al. 2015
bouncing-digits recipe): two 28x28 digits on a 64x64 canvas, 20 frames, per digit a uniform
start position and direction in the unit square, 0.1 step per frame, move then bounce, pixel
offset `int(36 * position)`, overlap by element-wise max. See SPEC.md section 6.

Digits come from real MNIST (`source="mnist"`: a keras-layout `mnist.npz` or the official idx
files, found by `resolve_mnist_path`) or from `procedural_digits` (`source="procedural"`), which
renders digits with Pillow's bundled font and needs no file and no network.

This module imports only NumPy and Pillow; TensorFlow is imported inside
`moving_mnist_dataset` and Keras only when MNIST has to be downloaded.
"""

import functools
import gzip
import hashlib
import os
import pathlib
import socket
import tempfile
import threading
import warnings
import zipfile
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

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
]

DIGIT_SIZE = 28
MNIST_ENV_VAR = "KERASTP_MNIST"
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# SHA-256 that `keras.datasets.mnist.load_data()` checks for the file at MNIST_URL.
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
MNIST_TEST_SEQ_URL = "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy"
_TEST_SEQ_SHAPE = (20, 10000, 64, 64)  # official file: time-major uint8

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

# Standard test set: total size, chunking and cache-file naming. `_STANDARD_TOTAL` is private so
# that tests can shrink it; the public contract is "the full set has 10,000 sequences".
_STANDARD_TOTAL = 10000
_STANDARD_CHUNK = 1000
_STANDARD_FRAMES = 20
_STANDARD_IMAGE_SIZE = 64
_PROTOCOL_VERSION = 1

# Streaming datasets generate sequences in chunks of this many; chunk c of epoch e uses
# `np.random.default_rng([seed, e, c, stream])`, so the data do not depend on the batch size.
_DATASET_CHUNK = 256
# Per-split stream tags. They must be non-zero: `SeedSequence` pads its entropy with zeros to
# four words, so `[seed, e, c]` would equal the standard test set's `[seed, c']` key
# (`[seed, c', 0]`) whenever c = 0, and "val" would replay part of the test set.
_SPLIT_STREAM = {"train": 1, "val": 2, "test": 3}

# Procedural digit pools used by `source="procedural"` (fixed, like MNIST's train/test split).
_PROCEDURAL_POOL_SIZE = 10000
_PROCEDURAL_TRAIN_SEED = 0
_PROCEDURAL_TEST_SEED = 1

_SOURCES = ("mnist", "procedural")
_DATASET_SPLITS = ("train", "val", "test")


class MnistUnavailableError(FileNotFoundError):
    """MNIST could not be found locally and could not be downloaded."""


# --------------------------------------------------------------------------------------------
# Locating and reading MNIST
# --------------------------------------------------------------------------------------------


def _keras_home():
    """Returns the Keras cache root: `$KERAS_HOME`, else `~/.keras`."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return pathlib.Path(home).expanduser()
    return pathlib.Path("~/.keras").expanduser()


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


def _check_location(path, origin):
    """Maps an explicit location (file or directory) to an MNIST source or raises."""
    path = pathlib.Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        npz = path / "mnist.npz"
        if npz.is_file():
            return npz
        if _has_idx_images(path):
            return path
        raise FileNotFoundError(
            f"{origin}: directory '{path}' holds neither mnist.npz nor the idx image files "
            "(train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz])."
        )
    raise FileNotFoundError(f"{origin}: '{path}' does not exist.")


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
    import keras

    return pathlib.Path(
        keras.utils.get_file(fname="mnist.npz", origin=MNIST_URL, file_hash=MNIST_SHA256)
    )


def _unavailable_message(reason):
    cache = _keras_home() / "datasets" / "mnist.npz"
    return (
        f"MNIST digits not found locally and not downloaded ({reason}). Provide them in one of "
        "these ways:\n"
        "  1. pass path=... (a keras-layout mnist.npz, an idx file such as "
        "t10k-images-idx3-ubyte.gz, or a directory holding them);\n"
        f"  2. set the environment variable {MNIST_ENV_VAR}=/path/to/mnist.npz;\n"
        f"  3. put mnist.npz in the Keras cache, {cache} "
        "(~/.keras/datasets/mnist.npz unless KERAS_HOME is set);\n"
        f"  4. connect to the internet so that Keras can download {MNIST_URL}.\n"
        'Or use the built-in digits, which need no file and no network: source="procedural".'
    )


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
    if path is not None:
        return _check_location(path, "path")
    env = os.environ.get(MNIST_ENV_VAR)
    if env:
        return _check_location(env, f"environment variable {MNIST_ENV_VAR}")
    cached = _keras_home() / "datasets" / "mnist.npz"
    if cached.is_file():
        return cached
    if not allow_download:
        raise MnistUnavailableError(_unavailable_message("downloading disabled"))
    if not _probe_connection():
        raise MnistUnavailableError(
            _unavailable_message(
                f"no connection to {_PROBE_HOST}:{_PROBE_PORT} within {_PROBE_TIMEOUT_S:g} s"
            )
        )
    try:
        return _download_mnist()
    except Exception as error:  # any download failure becomes the same actionable error
        raise MnistUnavailableError(_unavailable_message(f"download failed: {error}")) from error


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
    unreadable = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)
    try:
        archive = np.load(file, allow_pickle=False)
    except unreadable as error:
        raise ValueError(f"{file}: not a readable .npz archive ({error}).") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{file}: holds a single array, not a keras-layout .npz archive.")
    with archive:
        if key not in archive.files:
            raise ValueError(
                f"{file}: no array '{key}' (keras mnist.npz layout expected); "
                f"found {sorted(archive.files)}."
            )
        try:
            images = archive[key]
        except unreadable as error:
            raise ValueError(f"{file}: array '{key}' is corrupt ({error}).") from error
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


# --------------------------------------------------------------------------------------------
# Procedural digits
# --------------------------------------------------------------------------------------------

_GLYPH_CANVAS = 144  # high-resolution glyph canvas (4x the 28-pixel digit scale, plus margin)
_GLYPH_HEIGHT = 80  # digit height in the glyph canvas: 20 px at 28x28, like MNIST's 20x20 box
_GLYPH_STROKES = (-3, 0, 3, 5)  # MinFilter(3) for -3, none for 0, MaxFilter(k) for k > 0
_GLYPH_BLURS = (1.5, 2.5)  # Gaussian radius at 4x: anti-aliasing plus a slight softening


def _render_glyph(char):
    """Renders `char` white on black, cropped to its ink and scaled to `_GLYPH_HEIGHT` rows."""
    try:
        font = ImageFont.load_default(size=_GLYPH_HEIGHT * 5 // 4)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: bitmap font
        font = ImageFont.load_default()
    image = Image.new("L", (4 * _GLYPH_HEIGHT, 4 * _GLYPH_HEIGHT), 0)
    ImageDraw.Draw(image).text((_GLYPH_HEIGHT // 2, _GLYPH_HEIGHT // 2), char, fill=255, font=font)
    box = image.getbbox()
    if box is None:
        raise RuntimeError(f"Pillow's default font rendered no ink for {char!r}.")
    glyph = image.crop(box)
    width = max(1, round(glyph.width * _GLYPH_HEIGHT / glyph.height))
    # Bitmap fallback glyphs are ~11 px tall: bicubic upscaling keeps them smooth enough.
    return glyph.resize((width, _GLYPH_HEIGHT), Image.Resampling.BICUBIC)


@functools.lru_cache(maxsize=1)
def _glyph_pool():
    """Returns (glyphs float32 (10, S, B, P, P) in [0, 1]) centred by centre of mass."""
    size = _GLYPH_CANVAS
    pool = np.zeros((10, len(_GLYPH_STROKES), len(_GLYPH_BLURS), size, size), np.float32)
    for digit in range(10):
        glyph = _render_glyph(str(digit))
        arr = np.asarray(glyph, dtype=np.float64)
        rows, cols = np.indices(arr.shape)
        mass = arr.sum()
        com_r, com_c = (rows * arr).sum() / mass, (cols * arr).sum() / mass
        canvas = Image.new("L", (size, size), 0)
        canvas.paste(glyph, (round(size / 2 - com_c), round(size / 2 - com_r)))
        for i, stroke in enumerate(_GLYPH_STROKES):
            if stroke < 0:
                thick = canvas.filter(ImageFilter.MinFilter(-stroke))
            elif stroke > 0:
                thick = canvas.filter(ImageFilter.MaxFilter(stroke))
            else:
                thick = canvas
            for j, radius in enumerate(_GLYPH_BLURS):
                blurred = thick.filter(ImageFilter.GaussianBlur(radius))
                pool[digit, i, j] = np.asarray(blurred, dtype=np.float32) / 255.0
    pool.setflags(write=False)
    return pool


def _sample_affine(pool, glyph, inverse, centre_out, chunk=2048):
    """Bilinear-samples `pool[glyph[k]]` at 28x28 points mapped by per-sample affines.

    `pool` is (G, P, P); input point = glyph centre + inverse[k] @ (output point - centre_out[k]).
    """
    n, size = len(glyph), pool.shape[-1]
    grid = np.arange(DIGIT_SIZE, dtype=np.float64) + 0.5
    out = np.empty((n, DIGIT_SIZE, DIGIT_SIZE), np.float32)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        m = inverse[sl]
        dr = grid[None, :, None] - centre_out[sl, 0, None, None]  # (b, 28, 1)
        dc = grid[None, None, :] - centre_out[sl, 1, None, None]  # (b, 1, 28)
        r = size / 2 + m[:, 0, 0, None, None] * dr + m[:, 0, 1, None, None] * dc - 0.5
        c = size / 2 + m[:, 1, 0, None, None] * dr + m[:, 1, 1, None, None] * dc - 0.5
        # The glyph canvas has an empty margin, so clamping equals zero padding.
        r = np.clip(r, 0.0, size - 1.001)
        c = np.clip(c, 0.0, size - 1.001)
        r0 = r.astype(np.intp)
        c0 = c.astype(np.intp)
        fr = (r - r0).astype(np.float32)
        fc = (c - c0).astype(np.float32)
        g = glyph[sl, None, None]
        top = pool[g, r0, c0] * (1 - fc) + pool[g, r0, c0 + 1] * fc
        bottom = pool[g, r0 + 1, c0] * (1 - fc) + pool[g, r0 + 1, c0 + 1] * fc
        out[sl] = top * (1 - fr) + bottom * fr
    return out


@functools.lru_cache(maxsize=8)
def _procedural_cached(n, seed):
    pool = _glyph_pool()
    rng = np.random.default_rng(seed)
    # Random draws, in this order (each a vector of length n):
    digit = rng.integers(0, 10, n)
    stroke = rng.integers(0, pool.shape[1], n)
    blur = rng.integers(0, pool.shape[2], n)
    angle = np.deg2rad(rng.uniform(-12.0, 12.0, n))
    shear = rng.uniform(-0.45, 0.15, n)  # negative leans the top to the right, like handwriting
    height = rng.uniform(15.5, 20.5, n)  # output pixels; MNIST fits digits into 20x20
    aspect = rng.uniform(0.8, 1.15, n)  # width scale relative to height
    shift = rng.uniform(-1.0, 1.0, (n, 2))
    gain = rng.uniform(1.2, 1.8, n)

    # Output-to-glyph map: scale @ inverse(aspect) @ inverse(shear) @ rotation(-angle).
    scale = _GLYPH_HEIGHT / height
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
    unshear = np.zeros((n, 2, 2))
    unshear[:, 0, 0] = unshear[:, 1, 1] = 1.0
    unshear[:, 1, 0] = -shear
    unaspect = np.zeros((n, 2, 2))
    unaspect[:, 0, 0] = 1.0
    unaspect[:, 1, 1] = 1.0 / aspect
    inverse = scale[:, None, None] * (unaspect @ unshear @ rot)
    centre = DIGIT_SIZE / 2 + shift

    glyph = np.ravel_multi_index((digit, stroke, blur), pool.shape[:3])
    images = _sample_affine(pool.reshape(-1, *pool.shape[3:]), glyph, inverse, centre)
    images = np.clip(images * gain[:, None, None].astype(np.float32), 0.0, 1.0)
    result = np.rint(images * 255.0).astype(np.uint8)
    result.setflags(write=False)
    return result


def procedural_digits(n=10000, seed=0):
    """Renders MNIST-like digits with Pillow's bundled font; needs no file and no network.

    Each digit is one of '0'..'9' (uniform) drawn with Pillow's default font
    (`ImageFont.load_default(size=...)`, a FreeType font in Pillow >= 10.1; the bitmap font
    otherwise), with a random stroke thickness, blur, rotation (+-12 degrees), shear, height
    (15.5-20.5 px), aspect and sub-pixel shift, white on black and centred by centre of mass
    in 28x28 like MNIST. A pool of 80 glyph variants (10 digits x 4 strokes x 2 blurs) is
    rendered once at 4x resolution; the affine jitter is applied per digit with vectorised
    bilinear sampling. The result is deterministic for a seed (for a given Pillow and
    FreeType) and cached in memory.

    Args:
        n: number of digits (positive int).
        seed: non-negative int seed for `np.random.default_rng`.

    Returns:
        uint8 array (n, 28, 28); a fresh, writable copy.

    Example:

    >>> digits = procedural_digits(100, seed=0)
    >>> digits.shape, digits.dtype
    ((100, 28, 28), dtype('uint8'))
    """
    n = _check_int("n", n, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    return _procedural_cached(n, seed).copy()


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


def _check_int(name, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int; received {name}={value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; received {name}={value!r}.")
    return int(value)


class MovingMNIST:
    """Bouncing-digits sequence generator (the OpenSTL / Srivastava et al. protocol).

    Per digit slot: position x, y ~ U[0, 1), angle theta ~ U[0, 2 pi), velocity
    (v_x, v_y) = (cos theta, sin theta). For every frame the digit first moves
    (y += v_y * step_length, x += v_x * step_length), then bounces (if x <= 0: x = 0 and v_x
    flips; if x >= 1: x = 1 and v_x flips; the same for y), then the position is recorded. Pixel
    offsets are `int(canvas * position)` with canvas = image_size - 28 (row offset from y,
    column offset from x), and the digit, chosen uniformly from `digits`, is pasted with an
    element-wise max. Values are the uint8 digits' (the float model scale is value / 255).

    Random numbers: `generate(n, rng)` makes exactly one draw,
    `u = rng.random((n, num_digits, 4))`, whose last axis holds, per sequence and digit slot,
    x, y, theta / (2 pi) and the digit choice (`index = floor(u * len(digits))`). Because the
    draw is sequence-major, `generate(k, rng_a)` equals `generate(n, rng_b)[:k]` for two
    generators built from the same seed.

    Args:
        digits: uint8 array (N, s, s) of square digit images (s = 28 for MNIST).
        image_size: canvas side in pixels; must exceed the digit side.
        num_digits: digits per sequence (>= 1).
        num_frames: frames per sequence (>= 1).
        step_length: distance moved per frame in the unit square (> 0).

    Example:

    >>> gen = MovingMNIST(procedural_digits(100))
    >>> gen.generate(4, np.random.default_rng(0)).shape
    (4, 20, 64, 64, 1)
    """

    def __init__(self, digits, image_size=64, num_digits=2, num_frames=20, step_length=0.1):
        digits = np.asarray(digits)
        if digits.dtype != np.uint8:
            raise ValueError(f"digits must have dtype uint8; received dtype {digits.dtype}.")
        if digits.ndim != 3 or digits.shape[1] != digits.shape[2] or len(digits) == 0:
            raise ValueError(
                f"digits must have shape (N, s, s) with N > 0; received shape {digits.shape}."
            )
        self.digits = digits
        self.digit_size = digits.shape[1]
        self.image_size = _check_int("image_size", image_size)
        if self.image_size <= self.digit_size:
            raise ValueError(
                f"image_size must exceed the digit size {self.digit_size}; "
                f"received image_size={image_size!r}."
            )
        self.num_digits = _check_int("num_digits", num_digits, minimum=1)
        self.num_frames = _check_int("num_frames", num_frames, minimum=1)
        if not np.isfinite(step_length) or step_length <= 0:
            raise ValueError(f"step_length must be > 0; received step_length={step_length!r}.")
        self.step_length = float(step_length)

    def trajectories(self, u):
        """Pixel offsets for the draws `u` (n, num_digits, 4) described in the class docstring.

        Args:
            u: float array (n, num_digits, >=3) of U[0, 1) draws (x, y, theta / 2 pi, ...).

        Returns:
            (top, left): int32 arrays (n, num_frames, num_digits), each in [0, canvas].
        """
        canvas = self.image_size - self.digit_size
        x = u[..., 0].astype(np.float64)
        y = u[..., 1].astype(np.float64)
        theta = u[..., 2] * 2 * np.pi
        v_y, v_x = np.sin(theta), np.cos(theta)
        pos_y = np.empty((self.num_frames, *x.shape))
        pos_x = np.empty_like(pos_y)
        for t in range(self.num_frames):
            y = y + v_y * self.step_length
            x = x + v_x * self.step_length
            for pos, vel in ((x, v_x), (y, v_y)):
                low = pos <= 0
                pos[low] = 0.0
                vel[low] = -vel[low]
                high = pos >= 1.0
                pos[high] = 1.0
                vel[high] = -vel[high]
            pos_y[t] = y
            pos_x[t] = x
        top = (canvas * pos_y).astype(np.int32).transpose(1, 0, 2)
        left = (canvas * pos_x).astype(np.int32).transpose(1, 0, 2)
        return top, left

    def generate(self, n, rng):
        """Generates `n` sequences.

        Args:
            n: number of sequences (>= 0).
            rng: `np.random.Generator` (or an int seed for `np.random.default_rng`).

        Returns:
            uint8 array (n, num_frames, image_size, image_size, 1).
        """
        n = _check_int("n", n, minimum=0)
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        u = rng.random((n, self.num_digits, 4))
        top, left = self.trajectories(u)
        index = np.minimum((u[..., 3] * len(self.digits)).astype(np.intp), len(self.digits) - 1)
        size, frames = self.image_size, self.num_frames
        video = np.zeros((n, frames, size, size), np.uint8)
        windows = np.lib.stride_tricks.sliding_window_view(
            video, (self.digit_size, self.digit_size), axis=(2, 3), writeable=True
        )
        block = 256  # bounds the temporary patch memory
        t = np.arange(frames)[None, :]
        for start in range(0, n, block):
            sl = slice(start, min(start + block, n))
            b = np.arange(sl.start, sl.stop)[:, None]
            for d in range(self.num_digits):
                rows, cols = top[sl, :, d], left[sl, :, d]
                patch = windows[b, t, rows, cols]  # (b, frames, s, s) copy
                np.maximum(patch, self.digits[index[sl, d]][:, None], out=patch)
                windows[b, t, rows, cols] = patch
        return video[..., None]


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def _digits_for(source, split, path):
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}; received source={source!r}.")
    if source == "mnist":
        return load_mnist_digits("train" if split == "train" else "test", path)
    seed = _PROCEDURAL_TRAIN_SEED if split == "train" else _PROCEDURAL_TEST_SEED
    return _procedural_cached(_PROCEDURAL_POOL_SIZE, seed)


def moving_mnist_dataset(
    source="mnist",
    split="train",
    batch_size=16,
    input_frames=10,
    output_frames=10,
    image_size=64,
    num_sequences=10000,
    seed=0,
    path=None,
    drop_remainder=True,
    *,
    initial_epoch=0,
    num_digits=2,
    fresh_each_epoch=None,
    num_epochs=None,
):
    """Streams freshly generated Moving MNIST batches as a `tf.data.Dataset`.

    One pass over the dataset is one epoch of `num_sequences` sequences. Each new iteration
    (Keras re-iterates a finite dataset every epoch) draws the next epoch: epoch e is built in
    chunks of 256 sequences, chunk c from `np.random.default_rng([seed, e, c, stream])` with
    stream 1, 2, 3 for "train", "val", "test", so the data depend only on (seed, split, e),
    not on the batch size, and never repeat `standard_test_set`'s sequences (whose keys are
    `[seed, c]`). The first iteration is epoch `initial_epoch`; pass the epoch to resume from
    to continue the same stream. `Model.fit` opens one iterator per epoch, so training epoch
    k sees data epoch `initial_epoch + k`; any other iterator opened on the same dataset
    object (a manual loop, or Keras peeking at a batch to build an unbuilt model) consumes an
    epoch number too.

    Digits: `source="mnist"` uses MNIST's 60,000 train digits for split "train" and the 10,000
    test digits for "val"/"test" (found by `resolve_mnist_path(path)`); `source="procedural"`
    uses `procedural_digits` pools with different seeds for train and val/test.

    Args:
        source: "mnist" or "procedural".
        split: "train", "val" or "test".
        batch_size: sequences per batch (>= 1).
        input_frames: frames given to the model (>= 1).
        output_frames: frames to predict (>= 1); the generator makes input + output frames.
        image_size: canvas side in pixels (> 28).
        num_sequences: sequences per epoch (>= 1).
        seed: non-negative int seed of the stream.
        path: MNIST location for `source="mnist"`; see `resolve_mnist_path`.
        drop_remainder: drop a final partial batch; the batch dimension is then static.
        initial_epoch: epoch number of the first iteration (>= 0).
        num_digits: digits per sequence (>= 1).
        num_epochs: None, or an int >= 1: every iteration then yields epochs
            `initial_epoch` .. `initial_epoch + num_epochs - 1` back to back (the same stream
            whatever the number of iterators; fit it with `steps_per_epoch`).
        fresh_each_epoch: whether each iteration draws a new epoch. Defaults to True for
            "train" and False for "val"/"test", whose every iteration then repeats epoch
            `initial_epoch` so that validation losses compare across epochs.

    Returns:
        `tf.data.Dataset` of (past, future): float32 (B, input_frames, H, W, 1) and
        (B, output_frames, H, W, 1) in [0, 1], prefetched.

    Example:

    >>> ds = moving_mnist_dataset("procedural", batch_size=2, num_sequences=4)
    >>> [tuple(s.shape) for s in ds.element_spec]
    [(2, 10, 64, 64, 1), (2, 10, 64, 64, 1)]
    """
    if split not in _DATASET_SPLITS:
        raise ValueError(f"split must be one of {_DATASET_SPLITS}; received split={split!r}.")
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    input_frames = _check_int("input_frames", input_frames, minimum=1)
    output_frames = _check_int("output_frames", output_frames, minimum=1)
    num_sequences = _check_int("num_sequences", num_sequences, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    initial_epoch = _check_int("initial_epoch", initial_epoch, minimum=0)
    if num_epochs is not None:
        num_epochs = _check_int("num_epochs", num_epochs, minimum=1)
    if drop_remainder and num_sequences < batch_size:
        raise ValueError(
            f"num_sequences={num_sequences} is smaller than batch_size={batch_size} with "
            "drop_remainder=True, which would leave the dataset empty."
        )
    image_size = _check_int("image_size", image_size)
    if image_size <= DIGIT_SIZE:
        raise ValueError(f"image_size must exceed 28; received image_size={image_size}.")
    if fresh_each_epoch is None:
        fresh_each_epoch = split == "train"
    frames = input_frames + output_frames
    stream = _SPLIT_STREAM[split]
    digits = _digits_for(source, split, path)
    generator = MovingMNIST(digits, image_size, num_digits, frames)

    from kerastp.backend import require_tensorflow

    tf = require_tensorflow()
    state = {"epoch": initial_epoch}
    lock = threading.Lock()

    def batches():
        if num_epochs is not None:
            # A fixed run of epochs in one pass: every iterator yields the same stream, so an
            # extra iterator (tf.distribute's peek at a batch) shifts nothing.
            for epoch in range(initial_epoch, initial_epoch + num_epochs):
                yield from epoch_batches(epoch)
            return
        with lock:
            epoch = state["epoch"]
            if fresh_each_epoch:
                state["epoch"] += 1
        yield from epoch_batches(epoch)

    def epoch_batches(epoch):
        pending = []
        pending_count = 0
        for chunk, start in enumerate(range(0, num_sequences, _DATASET_CHUNK)):
            rng = np.random.default_rng([seed, epoch, chunk, stream])
            sequences = generator.generate(_DATASET_CHUNK, rng)[: num_sequences - start]
            pending.append(sequences)
            pending_count += len(sequences)
            if pending_count < batch_size:
                continue
            block = np.concatenate(pending) if len(pending) > 1 else pending[0]
            full = (len(block) // batch_size) * batch_size
            for i in range(0, full, batch_size):
                yield block[i : i + batch_size]
            pending = [block[full:]] if full < len(block) else []
            pending_count = len(block) - full
        if pending_count and not drop_remainder:
            yield np.concatenate(pending)

    shape = (batch_size if drop_remainder else None, frames, image_size, image_size, 1)
    dataset = tf.data.Dataset.from_generator(
        batches, output_signature=tf.TensorSpec(shape, tf.uint8)
    )
    # A known length lets Keras show progress and stop an epoch without an "ran out of data"
    # warning; assert_cardinality also fails loudly should the generator ever disagree.
    num_batches = num_sequences // batch_size if drop_remainder else -(-num_sequences // batch_size)
    if num_epochs is not None:
        num_batches *= num_epochs
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))

    def to_pair(video):
        video = tf.cast(video, tf.float32) / 255.0
        return video[:, :input_frames], video[:, input_frames:]

    dataset = dataset.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def split_frames(sequences, input_frames=10, output_frames=10):
    """Splits uint8 sequences into model-scale (past, future) float32 arrays in [0, 1].

    Args:
        sequences: uint8 array (N, T, H, W, C) with T >= input_frames + output_frames.
        input_frames: leading frames returned as `past` (>= 1).
        output_frames: frames after them returned as `future` (>= 1).

    Returns:
        (past, future): float32 (N, input_frames, H, W, C) and (N, output_frames, H, W, C),
        the uint8 values divided by 255.

    Example:

    >>> past, future = split_frames(np.zeros((2, 20, 64, 64, 1), np.uint8))
    >>> past.shape, future.dtype
    ((2, 10, 64, 64, 1), dtype('float32'))
    """
    input_frames = _check_int("input_frames", input_frames, minimum=1)
    output_frames = _check_int("output_frames", output_frames, minimum=1)
    sequences = np.asarray(sequences)
    if sequences.dtype != np.uint8 or sequences.ndim != 5:
        raise ValueError(
            "sequences must be uint8 with shape (N, T, H, W, C); received dtype "
            f"{sequences.dtype} and shape {sequences.shape}."
        )
    if sequences.shape[1] < input_frames + output_frames:
        raise ValueError(
            f"sequences have {sequences.shape[1]} frames, fewer than input_frames + "
            f"output_frames = {input_frames + output_frames}."
        )
    past = sequences[:, :input_frames].astype(np.float32) / 255.0
    future = sequences[:, input_frames : input_frames + output_frames].astype(np.float32)
    return past, future / 255.0


# --------------------------------------------------------------------------------------------
# The fixed test set
# --------------------------------------------------------------------------------------------


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _standard_chunks(generator, seed, count):
    """Yields (start, sequences) for the first `count` sequences of the standard set."""
    for chunk, start in enumerate(range(0, count, _STANDARD_CHUNK)):
        sequences = generator.generate(_STANDARD_CHUNK, np.random.default_rng([seed, chunk]))
        yield start, sequences[: count - start]


def _load_verified(npy, sha_file, shape):
    """Loads the cached set if it exists and verifies; returns None when it must be rebuilt."""
    if not npy.is_file():
        return None
    try:
        recorded = sha_file.read_text().split()[0]
    except (OSError, IndexError):
        recorded = None
    if recorded is None or _sha256(npy) != recorded:
        warnings.warn(
            f"Cached Moving MNIST test set {npy} is missing its checksum or fails it; "
            "regenerating it.",
            stacklevel=3,
        )
        return None
    try:
        data = np.load(npy, mmap_mode="r")
    except (OSError, ValueError) as error:
        warnings.warn(f"Cannot read {npy} ({error}); regenerating it.", stacklevel=3)
        return None
    if data.shape != shape or data.dtype != np.uint8:
        warnings.warn(f"{npy} has shape {data.shape}; regenerating it.", stacklevel=3)
        return None
    return data


def _write_cache(npy, sha_file, generator, seed, shape):
    """Generates the full set straight into a temporary .npy, then moves it into place."""
    npy.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".npy.tmp", dir=npy.parent)
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        for start, sequences in _standard_chunks(generator, seed, shape[0]):
            out[start : start + len(sequences)] = sequences
        out.flush()
        del out
        digest = _sha256(tmp)
        sha_tmp = tmp.with_suffix(".sha256.tmp")
        sha_tmp.write_text(f"{digest}  {npy.name}\n")
        os.replace(tmp, npy)  # data first: a stale checksum only triggers a rebuild
        os.replace(sha_tmp, sha_file)
    finally:
        for leftover in (tmp, tmp.with_suffix(".sha256.tmp")):
            leftover.unlink(missing_ok=True)


def standard_test_set(num_sequences=10000, source="mnist", path=None, cache_dir=None, seed=0):
    """Our fixed, seeded equivalent of the official `mnist_test_seq.npy`.

    Protocol: `MovingMNIST` defaults (64x64, two digits, 20 frames, step 0.1) on the MNIST
    TEST digits (`source="mnist"`) or the procedural test pool (`source="procedural"`),
    generated in chunks of 1,000 with chunk c drawn from `np.random.default_rng([seed, c])`:
    the first n sequences are the same for every `num_sequences` >= n.

    The full set (10,000 sequences, 819 MB) is generated once and cached as
    `{cache_dir}/moving_mnist_test_v1_{source}_seed{seed}_n10000.npy` with a `.sha256` file
    beside it, written atomically; later calls memory-map it after verifying the checksum (a
    mismatch warns and regenerates). Smaller subsets are generated in memory, uncached. If
    the cache directory is not writable, the set is returned in memory with a warning.

    Args:
        num_sequences: 1 to 10,000.
        source: "mnist" or "procedural".
        path: MNIST location for `source="mnist"`; see `resolve_mnist_path`.
        cache_dir: cache directory; defaults to `$KERAS_HOME/datasets/kerastp`
            (`~/.keras/datasets/kerastp`).
        seed: non-negative int seed.

    Returns:
        uint8 array (num_sequences, 20, 64, 64, 1); read-only memory map for the full set.

    Example:

    >>> test = standard_test_set(8, source="procedural")
    >>> past, future = split_frames(test)
    >>> past.shape
    (8, 10, 64, 64, 1)
    """
    num_sequences = _check_int("num_sequences", num_sequences, minimum=1)
    if num_sequences > _STANDARD_TOTAL:
        raise ValueError(
            f"num_sequences must be <= {_STANDARD_TOTAL}; received num_sequences={num_sequences}."
        )
    seed = _check_int("seed", seed, minimum=0)
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}; received source={source!r}.")
    size = _STANDARD_IMAGE_SIZE
    shape = (num_sequences, _STANDARD_FRAMES, size, size, 1)

    def make_generator():  # digits are loaded only when sequences must be generated
        return MovingMNIST(_digits_for(source, "test", path))

    if num_sequences == _STANDARD_TOTAL:
        cache_dir = (
            _keras_home() / "datasets" / "kerastp"
            if cache_dir is None
            else pathlib.Path(cache_dir).expanduser()
        )
        stem = f"moving_mnist_test_v{_PROTOCOL_VERSION}_{source}_seed{seed}_n{_STANDARD_TOTAL}"
        npy = cache_dir / f"{stem}.npy"
        sha_file = cache_dir / f"{stem}.sha256"
        data = _load_verified(npy, sha_file, shape)
        if data is not None:
            return data
        generator = make_generator()
        try:
            _write_cache(npy, sha_file, generator, seed, shape)
        except OSError as error:
            warnings.warn(
                f"Cannot write the test-set cache in {cache_dir} ({error}); returning it "
                "in memory.",
                stacklevel=2,
            )
        else:
            return np.load(npy, mmap_mode="r")
    else:
        generator = make_generator()
    out = np.empty(shape, np.uint8)
    for start, sequences in _standard_chunks(generator, seed, num_sequences):
        out[start : start + len(sequences)] = sequences
    return out


def load_mnist_test_seq(path):
    """Reads the official Moving MNIST test set, `mnist_test_seq.npy`, sequence-major.

    The file (Srivastava et al. 2015) stores uint8 (20, 10000, 64, 64), time-major; it is
    memory-mapped and transposed to (10000, 20, 64, 64, 1) without copying.

    Args:
        path: the `.npy` file, or a directory holding `mnist_test_seq.npy`.

    Returns:
        uint8 array (10000, 20, 64, 64, 1), a read-only view of the memory-mapped file.

    Raises:
        FileNotFoundError: the file does not exist (the message says where to download it).
        ValueError: the file is not a .npy array of that shape and dtype.

    Example:

    >>> seq = load_mnist_test_seq("mnist_test_seq.npy")  # doctest: +SKIP
    >>> seq.shape
    (10000, 20, 64, 64, 1)
    """
    file = pathlib.Path(path).expanduser()
    if file.is_dir():
        file = file / "mnist_test_seq.npy"
    if not file.is_file():
        raise FileNotFoundError(
            f"Moving MNIST test set '{file}' not found; download it from {MNIST_TEST_SEQ_URL} "
            "(819 MB), or use standard_test_set() for a seeded equivalent."
        )
    try:
        data = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{file}: not a readable .npy array ({error}).") from error
    expected = _TEST_SEQ_SHAPE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != expected:
        raise ValueError(
            f"{file}: expected uint8 {expected} (time-major mnist_test_seq.npy); received "
            f"{getattr(data, 'dtype', type(data))} {getattr(data, 'shape', '')}."
        )
    return data.transpose(1, 0, 2, 3)[..., None]
