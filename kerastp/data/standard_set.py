"""The fixed Moving MNIST test set: our seeded, cached `standard_test_set` and the official
`mnist_test_seq.npy` reader.

`standard_test_set` generates the same sequences on every machine (chunk c drawn from
`np.random.default_rng([seed, c])`), caches the full set once as a checksummed `.npy` and
memory-maps it afterwards. `load_mnist_test_seq` reads the official file (Srivastava et al.
2015) in the same (N, T, H, W, 1) layout.

This module imports only NumPy and Pillow.
"""

import hashlib
import pathlib
import warnings

import numpy as np

from kerastp.data.locations import find_location, keras_home
from kerastp.data.moving_mnist import DIGIT_SOURCES, MovingMNIST, source_digits
from kerastp.saving import atomic_write
from kerastp.validation import check_int

__all__ = ["MNIST_TEST_SEQ_URL", "load_mnist_test_seq", "standard_chunks", "standard_test_set"]

MNIST_TEST_SEQ_URL = "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy"
_TEST_SEQ_SHAPE = (20, 10000, 64, 64)  # official file: time-major uint8

# Standard test set: total size, chunking and cache-file naming. `_STANDARD_TOTAL` is private so
# that tests can shrink it; the public contract is "the full set has 10,000 sequences".
_STANDARD_TOTAL = 10000
_STANDARD_CHUNK = 1000
_STANDARD_FRAMES = 20
_STANDARD_IMAGE_SIZE = 64
_PROTOCOL_VERSION = 1


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def standard_chunks(generator, seed, count):
    """Yields (start, sequences) for the first `count` sequences of the standard set.

    Chunk c holds `generator.generate(1000, np.random.default_rng([seed, c]))`; the TFDS
    builder writes the set from these chunks too.
    """
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
    """Generates the full set chunk by chunk into the .npy (atomically, through
    `kerastp.saving.atomic_write`), then writes its checksum beside it."""

    def write(f):
        header = {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        for _, sequences in standard_chunks(generator, seed, shape[0]):
            f.write(np.ascontiguousarray(sequences, dtype=np.uint8).tobytes())

    atomic_write(npy, write=write)  # data first: a stale checksum only triggers a rebuild
    atomic_write(sha_file, f"{_sha256(npy)}  {npy.name}\n")


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
    num_sequences = check_int("num_sequences", num_sequences, minimum=1)
    if num_sequences > _STANDARD_TOTAL:
        raise ValueError(
            f"num_sequences must be <= {_STANDARD_TOTAL}; received num_sequences={num_sequences}."
        )
    seed = check_int("seed", seed, minimum=0)
    if source not in DIGIT_SOURCES:
        raise ValueError(f"source must be one of {DIGIT_SOURCES}; received source={source!r}.")
    size = _STANDARD_IMAGE_SIZE
    shape = (num_sequences, _STANDARD_FRAMES, size, size, 1)

    def make_generator():  # digits are loaded only when sequences must be generated
        return MovingMNIST(source_digits(source, "test", path))

    if num_sequences == _STANDARD_TOTAL:
        cache_dir = find_location(
            cache_dir,
            argument="cache_dir",
            env_var=None,
            candidates=[keras_home() / "datasets" / "kerastp"],
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
    for start, sequences in standard_chunks(generator, seed, num_sequences):
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
