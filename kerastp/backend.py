"""Guards for the TensorFlow backend that kerastp's models and exporters need."""

import os

_INSTALL_HINT = (
    "Install it with `pip install 'kerastp[cpu]'` (CPU, tensorflow-cpu) or "
    "`pip install 'kerastp[gpu]'` (NVIDIA GPU, tensorflow[and-cuda])."
)


def require_tensorflow():
    """Imports TensorFlow and checks that Keras runs on it; returns the `tensorflow` module."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        raise RuntimeError(
            f"kerastp needs the TensorFlow backend of Keras, but KERAS_BACKEND={backend!r}. "
            "Unset KERAS_BACKEND or set it to 'tensorflow' before importing keras."
        )
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError(
            f"kerastp needs TensorFlow, which is not installed. {_INSTALL_HINT}"
        ) from error
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"Keras was imported with the {keras.backend.backend()!r} backend before kerastp; "
            "kerastp needs 'tensorflow'. Set KERAS_BACKEND=tensorflow before importing keras."
        )
    return tf
