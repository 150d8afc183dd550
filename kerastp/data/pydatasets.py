"""Training streams without TensorFlow: `keras.utils.PyDataset`s for every Keras backend.

`MovingMNISTPyDataset` yields exactly the batches of `moving_mnist_dataset` (the tf.data
stream): epoch e is built in chunks of 256 sequences, chunk c drawn from
`np.random.default_rng([seed, e, c, stream])`, so a run on JAX or PyTorch sees the same
sequences as one on TensorFlow.
"""

import threading

import numpy as np

from kerastp.backend import require_keras
from kerastp.data.moving_mnist import (
    _DATASET_CHUNK,
    _DATASET_SPLITS,
    _SPLIT_STREAM,
    DIGIT_SIZE,
    MovingMNIST,
    source_digits,
)
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if split not in _DATASET_SPLITS:
            raise ValueError(f"split must be one of {_DATASET_SPLITS}; received split={split!r}.")
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.input_frames = check_int("input_frames", input_frames, minimum=1)
        self.output_frames = check_int("output_frames", output_frames, minimum=1)
        self.num_sequences = check_int("num_sequences", num_sequences, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.epoch = check_int("initial_epoch", initial_epoch, minimum=0)
        image_size = check_int("image_size", image_size)
        if image_size <= DIGIT_SIZE:
            raise ValueError(f"image_size must exceed 28; received image_size={image_size}.")
        if self.num_sequences < self.batch_size:
            raise ValueError(
                f"num_sequences={num_sequences} is smaller than batch_size={batch_size}, "
                "which would leave the dataset empty."
            )
        self.fresh_each_epoch = split == "train" if fresh_each_epoch is None else fresh_each_epoch
        self.stream = _SPLIT_STREAM[split]
        self.generator = MovingMNIST(
            source_digits(source, split, path),
            image_size,
            num_digits,
            self.input_frames + self.output_frames,
        )
        self._cache = {}
        self._lock = threading.Lock()

    def __len__(self):
        return self.num_sequences // self.batch_size

    def _chunk(self, epoch, chunk):
        key = (epoch, chunk)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        rng = np.random.default_rng([self.seed, epoch, chunk, self.stream])
        size = min(_DATASET_CHUNK, self.num_sequences - chunk * _DATASET_CHUNK)
        video = self.generator.generate(_DATASET_CHUNK, rng)[:size]
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
        start, stop = index * self.batch_size, (index + 1) * self.batch_size
        parts = []
        for chunk in range(start // _DATASET_CHUNK, (stop - 1) // _DATASET_CHUNK + 1):
            video = self._chunk(epoch, chunk)
            base = chunk * _DATASET_CHUNK
            parts.append(video[max(start - base, 0) : min(stop - base, len(video))])
        video = np.concatenate(parts).astype(np.float32) / np.float32(255.0)
        return video[:, : self.input_frames], video[:, self.input_frames :]

    def on_epoch_end(self):
        if self.fresh_each_epoch:
            self.epoch += 1
