"""Training streams as `keras.utils.PyDataset`s, for every Keras backend.

`MovingMNISTPyDataset` yields exactly the batches of `moving_mnist_dataset` (the tf.data
stream): epoch e is built in chunks of 256 sequences, chunk c drawn from
`np.random.default_rng([seed, e, c, stream])`, so a run on JAX or PyTorch sees the same
sequences as one on TensorFlow.

`WindowsPyDataset` is the training stream of the windowed sources (radar events, the user's
arrays) on every backend, TensorFlow included (Keras feeds a PyDataset to tf.data there), so
one seeded order serves them all: a run on JAX or PyTorch sees the batches a TensorFlow run
sees, and a resumed run continues that order.
"""

import threading

import numpy as np

from kerastp.backend import require_keras
from kerastp.data.moving_mnist import _DATASET_CHUNK, _StreamPlan
from kerastp.validation import check_int

keras = require_keras()


class MovingMNISTPyDataset(keras.utils.PyDataset):
    """Freshly generated Moving MNIST batches as a `keras.utils.PyDataset`.

    Same stream and arguments as `kerastp.data.moving_mnist.moving_mnist_dataset` (batches
    of `batch_size` across chunk boundaries, a partial last batch dropped), on any backend.
    One pass is one epoch; Keras calls `on_epoch_end`, which moves a training stream to the
    next epoch (`fresh_each_epoch`, True for "train"), so `fit` epoch k sees data epoch
    `initial_epoch + k`.

    Args:
        source: "mnist" or "procedural".
        split: "train", "val" or "test".
        batch_size: sequences per batch.
        input_frames, output_frames: frames of `past` and `future`.
        image_size: canvas side in pixels (> 28).
        num_sequences: sequences per epoch (at least `batch_size`).
        seed: non-negative seed of the stream.
        path: MNIST location for `source="mnist"`.
        initial_epoch: data epoch of the first pass.
        num_digits: digits per sequence.
        fresh_each_epoch: see above; defaults to `split == "train"`.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, `use_multiprocessing`,
            `max_queue_size`).

    Example:
    >>> ds = MovingMNISTPyDataset("procedural", batch_size=2, num_sequences=4)
    >>> [tuple(a.shape) for a in ds[0]]
    [(2, 10, 64, 64, 1), (2, 10, 64, 64, 1)]
    """

    def __init__(
        self,
        source="mnist",
        split="train",
        batch_size=16,
        input_frames=10,
        output_frames=10,
        image_size=64,
        num_sequences=10000,
        seed=0,
        path=None,
        *,
        initial_epoch=0,
        num_digits=2,
        fresh_each_epoch=None,
        drop_remainder=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.plan = _StreamPlan(source, split, batch_size, input_frames, output_frames,
                                image_size, num_sequences, seed, path, initial_epoch,
                                num_digits, fresh_each_epoch, drop_remainder)
        self.batch_size, self.num_sequences = self.plan.batch_size, self.plan.num_sequences
        self.input_frames = self.plan.input_frames
        self.epoch = self.plan.initial_epoch
        self.drop_remainder = bool(drop_remainder)
        self._skip = 0
        self._cache = {}
        self._lock = threading.Lock()

    def __len__(self):
        full = self.num_sequences // self.batch_size
        if not self.drop_remainder and self.num_sequences % self.batch_size:
            full += 1
        return full - self._skip

    def skip_batches(self, batches):
        """Starts the current pass `batches` batches later (a resumed, interrupted epoch)."""
        self._skip = check_int("batches", batches, minimum=0)

    def _chunk(self, epoch, chunk):
        key = (epoch, chunk)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        video = self.plan.chunk(epoch, chunk)
        with self._lock:
            # Keep the few chunks that batches in flight may still need.
            for old in [k for k in self._cache if k[0] != epoch or k[1] < chunk - 2]:
                del self._cache[old]
            self._cache[key] = video
        return video

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        epoch = self.epoch
        index += self._skip
        start = index * self.batch_size
        stop = min((index + 1) * self.batch_size, self.num_sequences)
        parts = []
        for chunk in range(start // _DATASET_CHUNK, (stop - 1) // _DATASET_CHUNK + 1):
            video = self._chunk(epoch, chunk)
            base = chunk * _DATASET_CHUNK
            parts.append(video[max(start - base, 0) : min(stop - base, len(video))])
        video = np.concatenate(parts).astype(np.float32) / np.float32(255.0)
        return video[:, : self.input_frames], video[:, self.input_frames :]

    def on_epoch_end(self):
        self._skip = 0
        if self.plan.fresh_each_epoch:
            self.epoch += 1


class WindowView:
    """`(N, length, H, W, C)` windows sliced from frames held once, on demand.

    Indexing with an array of window numbers gives those windows (a copy); overlapping
    windows share the frames instead of repeating them in memory.

    Args:
        frames: (F, H, W, C) frames.
        starts: (N,) index in `frames` of each window's first frame.
        offset: frames skipped from each start (`input_frames` for the future part).
        length: frames per window.
    """

    def __init__(self, frames, starts, offset, length):
        self.frames = frames
        self.starts = np.asarray(starts, np.int64)
        self.steps = np.arange(offset, offset + length)
        if len(self.starts) and self.starts.max() + self.steps[-1] >= len(frames):
            raise ValueError(
                f"windows of {length} frames from offset {offset} run past the "
                f"{len(frames)} frames"
            )

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, index):
        return self.frames[self.starts[index][..., None] + self.steps]


class WindowsPyDataset(keras.utils.PyDataset):
    """Batches of `(past, future)` windows as a `keras.utils.PyDataset`.

    The training stream of the windowed sources (radar events, the user's arrays) on every
    backend: each pass visits the windows in the order of `np.random.default_rng([seed,
    pass])` (or in order with `shuffle=False`), `steps` batches per pass (default: every full
    batch once; more than one pass's worth wraps around). `from_frames` slices the windows
    from frames held once instead of arrays of every window.

    Args:
        past, future: arrays (N, T_in, H, W, C) and (N, T_out, H, W, C) in model scale.
        batch_size: windows per batch.
        seed: seed of the shuffling.
        shuffle: reshuffle each pass.
        steps: batches per pass; None: `N // batch_size` (all of them when not shuffled).
        drop_remainder: drop a final partial batch (only when `steps` is None).
        augmentation: a `kerastp.data.augment.WindowAugmentation` applied to every batch
            (the transforms of batch i of pass e drawn from `default_rng([seed, e, i, 1])`,
            so a resumed pass sees the same ones), or None.
        **kwargs: `keras.utils.PyDataset` arguments.
    """

    def __init__(self, past, future, batch_size, seed=0, shuffle=True, steps=None,
                 drop_remainder=True, augmentation=None, **kwargs):
        super().__init__(**kwargs)
        if len(past) != len(future) or not len(past):
            raise ValueError(
                f"`past` and `future` must hold the same non-zero number of windows, got "
                f"{len(past)} and {len(future)}"
            )
        self.past, self.future = past, future
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.shuffle = bool(shuffle)
        count = len(past)
        if steps is None:
            steps = count // self.batch_size if drop_remainder else -(-count // self.batch_size)
        self.steps = check_int("steps", steps, minimum=1) if steps else 0
        if not self.steps:
            raise ValueError(
                f"{count} windows make no batch of batch_size={batch_size}; lower the batch size"
            )
        self.augmentation = augmentation
        self.epoch = 0
        self._skip = 0

    @classmethod
    def from_frames(cls, frames, starts, input_frames, output_frames, batch_size, **kwargs):
        """The windows starting at `starts` in `frames` (F, H, W, C), sliced per batch.

        Args:
            frames: (F, H, W, C) frames in model scale.
            starts: index of each window's first frame (`input_frames + output_frames`
                frames from each must lie in `frames`).
            input_frames, output_frames: the window's past and future lengths.
            batch_size, **kwargs: as for the constructor.
        """
        past = WindowView(frames, starts, 0, input_frames)
        future = WindowView(frames, starts, input_frames, output_frames)
        return cls(past, future, batch_size, **kwargs)

    def __len__(self):
        return self.steps - self._skip

    def skip_batches(self, batches):
        """Starts the current pass `batches` batches later."""
        self._skip = check_int("batches", batches, minimum=0)

    def _order(self):
        count = len(self.past)
        if not self.shuffle:
            return np.arange(count)
        return np.random.default_rng([self.seed, self.epoch]).permutation(count)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        index += self._skip
        order = self._order()
        start = index * self.batch_size
        if self.shuffle:  # more batches than one pass holds wrap around
            positions = np.arange(start, start + self.batch_size) % len(order)
        else:
            positions = np.arange(start, min(start + self.batch_size, len(order)))
        chosen = order[positions]
        past = np.asarray(self.past[chosen], np.float32)
        future = np.asarray(self.future[chosen], np.float32)
        if self.augmentation is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            past, future = self.augmentation(past, future, rng)
        return past, future

    def on_epoch_end(self):
        self._skip = 0
        self.epoch += 1
