"""Moving MNIST sources: "procedural" (built-in glyph digits, no file) and "mnist" (real
MNIST digits), both scored on the fixed, seeded 10,000-sequence standard test set."""

import numpy as np

from kerastp import data
from kerastp.data.sources.base import DataSource, uses_tf_data
from kerastp.validation import positive_int

#: Sequences of one training epoch in the Moving MNIST protocol.
EPOCH_SEQUENCES = 10_000
#: Frames of every standard test sequence.
TEST_FRAMES = 20
TEST_SIZE = 64
_EVAL_CHUNK = 256


class MovingMnistSource(DataSource):
    """Two digits bouncing in a 64x64 frame, generated afresh every epoch from a seed.

    Args:
        digits: "procedural" or "mnist" (see `kerastp.data.moving_mnist_dataset`).
        mnist_path: MNIST location for real digits (see `resolve_mnist_path`).
        seed: seeds the training stream (the test set is fixed).
    """

    generated = True
    SCORING = "frames"
    SCALE_NAME = "unit"
    DATA_SCALE = {
        "name": "unit",
        "description": "Moving MNIST frames in [0, 1] (uint8 / 255)",
        "range": [0.0, 1.0],
    }

    def __init__(self, mnist_path=None, seed=0):
        super().__init__(seed=seed)
        self.mnist_path = mnist_path

    @classmethod
    def from_config(cls, config):
        return cls(mnist_path=config.get("mnist_path"), seed=config.get("seed") or 0)

    def check(self):
        if self.name == "mnist" and self.mnist_path is not None:
            data.resolve_mnist_path(self.mnist_path)  # an explicit path never downloads

    def check_model(self, model):
        if model.height != model.width or model.channels != 1:
            raise ValueError(
                "Moving MNIST has square single-channel frames; the model expects "
                f"{model.height}x{model.width}x{model.channels}"
            )

    def _check_test_model(self, model):
        self.check_model(model)
        if model.height != TEST_SIZE or model.input_frames + model.output_frames > TEST_FRAMES:
            raise ValueError(
                f"The standard Moving MNIST test set has {TEST_FRAMES} frames of "
                f"{TEST_SIZE}x{TEST_SIZE}; the model needs {model.input_frames}+"
                f"{model.output_frames} frames of {model.height}x{model.width}"
            )

    def default_steps_per_epoch(self, batch_size):
        return max(1, EPOCH_SEQUENCES // batch_size)

    def _stream(self, model, split, batch_size, num_sequences, seed=None, **kwargs):
        """The seeded stream of `split`: a tf.data dataset on TensorFlow, else the
        PyDataset that yields the same batches (`kerastp.data.pydatasets`)."""
        if uses_tf_data():
            make = data.moving_mnist_dataset
        else:
            from kerastp.data.pydatasets import MovingMNISTPyDataset as make

            kwargs.pop("num_epochs", None)  # a PyDataset moves on at each epoch's end
        return make(
            self.name,
            split,
            batch_size=batch_size,
            input_frames=model.input_frames,
            output_frames=model.output_frames,
            image_size=model.height,
            num_sequences=num_sequences,
            seed=self.seed if seed is None else seed,
            path=self.mnist_path,
            **kwargs,
        )

    def training_stream(self, model, batch_size, steps_per_epoch, first_epoch=0, num_epochs=1):
        # Epochs first_epoch .. + num_epochs - 1 of the seeded stream: back to back in one
        # tf.data pass; data epoch first_epoch + k in fit epoch k of a PyDataset.
        stream = self._stream(
            model,
            "train",
            batch_size,
            steps_per_epoch * batch_size,
            initial_epoch=first_epoch,
            num_epochs=num_epochs,
        )
        return stream, steps_per_epoch

    def validation_stream(self, model, batch_size, num_sequences):
        return self._stream(
            model, "val", min(batch_size, num_sequences), num_sequences, drop_remainder=False
        )

    def _pairs(self, model, split, num_sequences, seed=0):
        stream = self._stream(model, split, num_sequences, num_sequences, seed=seed)
        if not uses_tf_data():
            return stream[0]
        past, future = next(iter(stream))
        return past.numpy(), future.numpy()

    def calibration_samples(self, model, num_sequences=64):
        return self._pairs(model, "train", num_sequences)[0]

    def held_out(self, model, num_sequences=64):
        return self._pairs(model, "test", num_sequences)

    def test_sequences(self, num_sequences=1000):
        """The first `num_sequences` of the standard test set, uint8 (N, 20, 64, 64, 1)."""
        return data.standard_test_set(num_sequences, source=self.name, path=self.mnist_path)

    def example(self, model, index=0):
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 10_000:
            raise ValueError(f"`index` must be an integer in [0, 10000), got index={index!r}")
        t_in = model.input_frames
        sequences = self.test_sequences(index + 1)
        past, truth = data.split_frames(
            np.asarray(sequences[index : index + 1]), t_in, TEST_FRAMES - t_in
        )
        return past[0], truth[0]

    def test_windows(self, model, num_sequences=1000, split=None):
        """The first `num_sequences` of the fixed standard test set, in chunks."""
        if positive_int("num_sequences", num_sequences) > 10_000:
            raise ValueError(
                f"`num_sequences` must be at most 10000 (the standard test set), got "
                f"num_sequences={num_sequences!r}"
            )
        self._check_test_model(model)
        sequences = self.test_sequences(num_sequences)

        def batches():
            for i in range(0, len(sequences), _EVAL_CHUNK):
                yield data.split_frames(
                    np.asarray(sequences[i : i + _EVAL_CHUNK]),
                    model.input_frames,
                    model.output_frames,
                )

        return batches(), {"sequences": len(sequences)}

    def __repr__(self):
        return f"{type(self).__name__}(mnist_path={self.mnist_path!r}, seed={self.seed})"


class ProceduralMovingMnist(MovingMnistSource):
    """Moving MNIST from built-in procedural digits: no file, no network."""

    name = "procedural"


class MnistMovingMnist(MovingMnistSource):
    """Moving MNIST from real MNIST digits (60,000 train / 10,000 test)."""

    name = "mnist"
