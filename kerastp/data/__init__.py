"""Data: generators and readers that feed (past, future) pairs to the models."""

from kerastp.data.moving_mnist import (
    MnistUnavailableError,
    MovingMNIST,
    load_mnist_digits,
    load_mnist_test_seq,
    moving_mnist_dataset,
    procedural_digits,
    resolve_mnist_path,
    split_frames,
    standard_test_set,
)

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
