"""Moving MNIST: the bouncing-digits generator and its `tf.data` pipeline.

The protocol follows OpenSTL's Moving MNIST generator (itself the Srivastava et al. 2015
bouncing-digits recipe): two 28x28 digits on a 64x64 canvas, 20 frames, per digit a uniform
start position and direction in the unit square, 0.1 step per frame, move then bounce, pixel
offset `int(36 * position)`, overlap by element-wise max. See SPEC.md section 6.

Digits come from real MNIST (`source="mnist"`: a keras-layout `mnist.npz` or the official idx
files, found by `kerastp.data.mnist_files.resolve_mnist_path`) or from
`kerastp.data.glyphs.procedural_digits` (`source="procedural"`), which renders digits with
Pillow's bundled font and needs no file and no network. The fixed, cached test set lives in
`kerastp.data.standard_set`.

This module imports only NumPy and Pillow; TensorFlow is imported inside
`moving_mnist_dataset` and Keras only when MNIST has to be downloaded.
"""

import importlib
import threading

import numpy as np

from kerastp.data.glyphs import procedural_digits
from kerastp.data.mnist_files import DIGIT_SIZE, load_mnist_digits
from kerastp.validation import check_int

__all__ = [
    "DIGIT_SOURCES",
    "MovingMNIST",
    "moving_mnist_dataset",
    "source_digits",
    "split_frames",
]

#: Where the digits come from: real MNIST or `procedural_digits`.
DIGIT_SOURCES = ("mnist", "procedural")

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

_DATASET_SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


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
        self.image_size = check_int("image_size", image_size)
        if self.image_size <= self.digit_size:
            raise ValueError(
                f"image_size must exceed the digit size {self.digit_size}; "
                f"received image_size={image_size!r}."
            )
        self.num_digits = check_int("num_digits", num_digits, minimum=1)
        self.num_frames = check_int("num_frames", num_frames, minimum=1)
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
        n = check_int("n", n, minimum=0)
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


def source_digits(source, split, path=None):
    """The digit images a Moving MNIST source draws from, uint8 (N, 28, 28).

    `source="mnist"`: MNIST's 60,000 train digits for split "train", its 10,000 test digits
    otherwise (found by `resolve_mnist_path(path)`). `source="procedural"`: a fixed pool of
    10,000 `procedural_digits`, with one seed for "train" and another for the other splits.

    Args:
        source: one of `DIGIT_SOURCES`.
        split: "train", or another split name ("val", "test").
        path: MNIST location for `source="mnist"`; see `resolve_mnist_path`.

    Raises:
        ValueError: unknown `source`. See also `load_mnist_digits`.
    """
    if source not in DIGIT_SOURCES:
        raise ValueError(f"source must be one of {DIGIT_SOURCES}; received source={source!r}.")
    if source == "mnist":
        return load_mnist_digits("train" if split == "train" else "test", path)
    seed = _PROCEDURAL_TRAIN_SEED if split == "train" else _PROCEDURAL_TEST_SEED
    return procedural_digits(_PROCEDURAL_POOL_SIZE, seed)


class _StreamPlan:
    """The checked settings of a seeded Moving MNIST stream and how it draws its sequences,
    shared by the tf.data stream (`moving_mnist_dataset`) and the PyDataset one
    (`kerastp.data.pydatasets.MovingMNISTPyDataset`), so both yield the same batches."""

    def __init__(self, source, split, batch_size, input_frames, output_frames, image_size,
                 num_sequences, seed, path, initial_epoch, num_digits, fresh_each_epoch,
                 drop_remainder):
        if split not in _DATASET_SPLITS:
            raise ValueError(
                f"split must be one of {_DATASET_SPLITS}; received split={split!r}."
            )
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.input_frames = check_int("input_frames", input_frames, minimum=1)
        self.output_frames = check_int("output_frames", output_frames, minimum=1)
        self.num_sequences = check_int("num_sequences", num_sequences, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.initial_epoch = check_int("initial_epoch", initial_epoch, minimum=0)
        if drop_remainder and self.num_sequences < self.batch_size:
            raise ValueError(
                f"num_sequences={num_sequences} is smaller than batch_size={batch_size} with "
                "drop_remainder=True, which would leave the dataset empty."
            )
        self.image_size = check_int("image_size", image_size)
        if self.image_size <= DIGIT_SIZE:
            raise ValueError(f"image_size must exceed 28; received image_size={image_size}.")
        self.fresh_each_epoch = split == "train" if fresh_each_epoch is None else fresh_each_epoch
        self.frames = self.input_frames + self.output_frames
        self.stream = _SPLIT_STREAM[split]
        self.generator = MovingMNIST(
            source_digits(source, split, path), self.image_size, num_digits, self.frames
        )
        self.num_chunks = -(-self.num_sequences // _DATASET_CHUNK)

    def chunk(self, epoch, chunk):
        """Sequences of chunk `chunk` of data epoch `epoch`: uint8 (<= 256, T, H, W, 1)."""
        rng = np.random.default_rng([self.seed, epoch, chunk, self.stream])
        video = self.generator.generate(_DATASET_CHUNK, rng)
        return video[: self.num_sequences - chunk * _DATASET_CHUNK]


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
    if num_epochs is not None:
        num_epochs = check_int("num_epochs", num_epochs, minimum=1)
    plan = _StreamPlan(source, split, batch_size, input_frames, output_frames, image_size,
                       num_sequences, seed, path, initial_epoch, num_digits, fresh_each_epoch,
                       drop_remainder)
    batch_size, num_sequences, initial_epoch = (
        plan.batch_size, plan.num_sequences, plan.initial_epoch
    )
    input_frames, frames, image_size = plan.input_frames, plan.frames, plan.image_size
    fresh_each_epoch = plan.fresh_each_epoch

    from kerastp.backend import require_tensorflow

    tf = require_tensorflow()
    state = {"epoch": initial_epoch}
    lock = threading.Lock()
    num_chunks = plan.num_chunks

    def next_epoch():
        with lock:
            epoch = state["epoch"]
            if fresh_each_epoch:
                state["epoch"] += 1
        return np.int64(epoch)

    def chunk_sequences(epoch, chunk):
        return plan.chunk(int(epoch), int(chunk))

    def epoch_batches(epoch):
        # The epoch's sequences, chunk after chunk, batched across chunk boundaries.
        def sequences(chunk):
            video = tf.numpy_function(chunk_sequences, [epoch, chunk], tf.uint8, stateful=False)
            return tf.ensure_shape(video, (None, frames, image_size, image_size, 1))

        chunks = tf.data.Dataset.range(num_chunks).map(sequences)
        return chunks.unbatch().batch(batch_size, drop_remainder=drop_remainder)

    # Python runs once per chunk through `tf.numpy_function`, not through
    # `Dataset.from_generator`: TensorFlow's generator dataset sets glibc's mmap threshold to
    # 128 KiB for the whole process (a workaround for Python 3.11), after which every large
    # buffer of every training step is mapped afresh: thousands of page faults per step.
    if num_epochs is not None:
        # A fixed run of epochs in one pass: every iterator yields the same stream, so an
        # extra iterator (tf.distribute's peek at a batch) shifts nothing.
        epochs = tf.data.Dataset.range(initial_epoch, initial_epoch + num_epochs)
    else:
        # Each iteration asks for its epoch when it starts: the next one if fresh_each_epoch.
        epochs = tf.data.Dataset.range(1).map(
            lambda _: tf.numpy_function(next_epoch, [], tf.int64, stateful=True)
        )
    dataset = epochs.flat_map(epoch_batches)
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
    input_frames = check_int("input_frames", input_frames, minimum=1)
    output_frames = check_int("output_frames", output_frames, minimum=1)
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
# Names that moved
# --------------------------------------------------------------------------------------------

# `moving_mnist.resolve_mnist_path` and `moving_mnist.standard_test_set` keep working for the
# callers outside kerastp.data that still use them; new code imports them from their modules.
# Resolved lazily because `standard_set` imports this module.
_MOVED = {
    "resolve_mnist_path": "kerastp.data.mnist_files",
    "standard_test_set": "kerastp.data.standard_set",
}


def __getattr__(name):
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
