"""One `predict(past)` interface over every model kerastp writes.

`load_forecaster(path)` opens a `.keras` file or run directory (a Keras model), a SavedModel
directory (`SavedModelForecaster`) or a `.tflite` file (`kerastp.lite.LiteForecaster`).
Each has `predict(past) -> forecast` on NumPy `(B, T_in, H, W, C)` float32 frames, and
`input_frames`, `output_frames`, `height`, `width`, `channels`, so evaluation, pictures and
benchmarks treat them alike.

The SavedModel signature every kerastp export carries: `serving_default`, taking `frames`
`(None, T_in, H, W, C)` float32 and returning `forecast` `(None, T_out, H, W, C)`.
"""

import os
from pathlib import Path

import numpy as np

from kerastp.artifacts import CorruptArtifactError, check_saved_model_dir, saved_model_error

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "frames"
OUTPUT_NAME = "forecast"

#: The kinds of model files `load_forecaster` opens.
ARTIFACT_KINDS = ("keras", "saved_model", "tflite")


def load_saved_model(directory):
    """Loads a kerastp SavedModel directory; checks it has the `serving_default` signature.

    Returns:
        The loaded object (`.signatures[SIGNATURE_KEY]` is the forecast function; keep the
        object alive while using it).

    Raises:
        FileNotFoundError: no directory, or no saved_model.pb in it.
        kerastp.artifacts.CorruptArtifactError: (a `ValueError`) an unreadable graph, missing
            or truncated variables, or no `serving_default` signature; the message names the
            directory.
    """
    from kerastp.backend import require_tensorflow

    tf = require_tensorflow()
    directory = check_saved_model_dir(directory)
    try:
        loaded = tf.saved_model.load(os.fspath(directory))
    except Exception as error:  # protobuf, I/O and checkpoint errors alike
        raise saved_model_error(directory, error) from error
    signatures = getattr(loaded, "signatures", None) or {}
    if SIGNATURE_KEY not in signatures:
        raise CorruptArtifactError(
            f"{directory} is not a kerastp SavedModel: no {SIGNATURE_KEY!r} signature "
            f"(it has {sorted(signatures)})"
        )
    return loaded


class SavedModelForecaster:
    """`predict` over a kerastp SavedModel's `serving_default` signature.

    Args:
        directory: the SavedModel directory.
    """

    def __init__(self, directory):
        from kerastp.backend import require_tensorflow

        self._tf = require_tensorflow()
        self.path = Path(directory)
        self.loaded = load_saved_model(directory)  # keeps the signature's variables alive
        self.signature = self.loaded.signatures[SIGNATURE_KEY]
        inputs = self.signature.structured_input_signature[1][INPUT_NAME].shape.as_list()
        outputs = self.signature.structured_outputs[OUTPUT_NAME].shape.as_list()
        self.input_shape = tuple(inputs)
        self.output_shape = tuple(outputs)
        # (None, T, H, W, C) for every kerastp model; other shapes leave these None.
        frames = len(inputs) == 5 and len(outputs) == 5
        self.input_frames, self.height, self.width, self.channels = (
            inputs[1:] if frames else (None,) * 4
        )
        self.output_frames = outputs[1] if frames else None

    def predict(self, past):
        frames = self._tf.constant(np.asarray(past, np.float32))
        try:
            return self.signature(**{INPUT_NAME: frames})[OUTPUT_NAME].numpy()
        except self._tf.errors.UnimplementedError as error:
            if "does not support dilations" not in str(error):
                raise
            raise RuntimeError(
                f"{self.path} holds a dilated DepthwiseConv2dNative, which TensorFlow runs on "
                "a CPU only in its oneDNN path, off by default on this CPU (TensorFlow turns "
                "it on for CPUs with AVX-512 VNNI / BF16, AVX-VNNI or AMX). Earlier kerastp "
                "exports traced served graphs that way; kerastp's SavedModels now use Keras' form, "
                "which runs everywhere: export it again from its .keras file (`kerastp "
                "export`), or set TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported."
            ) from error

    def __repr__(self):
        return f"SavedModelForecaster({str(self.path)!r})"


def artifact_kind(path):
    """"keras", "saved_model" or "tflite" for a model path; FileNotFoundError naming what is
    accepted when it is none of them."""
    path = Path(path)
    if path.suffix == ".tflite":
        if not path.is_file():
            raise FileNotFoundError(f"No .tflite file at {path}")
        return "tflite"
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "saved_model"
    if path.suffix == ".keras" or (path.is_dir() and (path / "model.keras").is_file()):
        if not (path.is_file() or path.is_dir()):
            raise FileNotFoundError(f"No kerastp model at {path} (no such .keras file)")
        return "keras"
    raise FileNotFoundError(
        f"No kerastp model at {path}: expected a .keras file, a run directory (with "
        "model.keras), a SavedModel directory or a .tflite file"
    )


def load_forecaster(path, num_threads=None):
    """A forecaster with `.predict(past)` from a `.keras` file, run directory, SavedModel
    directory or `.tflite` file (LiteRT at `num_threads`), or a pretrained model's name."""
    from kerastp.pretrained import resolve_model_path

    path = resolve_model_path(path)
    kind = artifact_kind(path)
    if kind == "tflite":
        from kerastp.lite import LiteForecaster

        return LiteForecaster(path, num_threads=num_threads)
    if kind == "saved_model":
        return SavedModelForecaster(path)
    from kerastp.saving import load_model

    return load_model(path)


def run_saved_model(directory, frames):
    """Runs a kerastp SavedModel's `serving_default` on NumPy frames."""
    return SavedModelForecaster(directory).predict(frames)


def from_preset(preset, kind="keras", num_threads=None):
    """Loads a pretrained model by name, or any model path (keras-hub's `from_preset`).

    Args:
        preset: a pretrained name (`list_pretrained()`), or a `.keras` file, run directory,
            SavedModel directory or `.tflite` file.
        kind: for a pretrained name, which file: "keras" (a Keras model) or one of its TFLite
            variants ("tflite", ...), loaded as a `kerastp.lite.LiteForecaster`.
        num_threads: LiteRT threads for TFLite files.

    Example:
    >>> model = kerastp.from_preset("mmnist")  # doctest: +SKIP
    >>> model.predict(past).shape  # doctest: +SKIP
    (1, 10, 64, 64, 1)
    """
    from kerastp.pretrained import pretrained_file

    if isinstance(preset, str | os.PathLike) and Path(preset).exists():
        path = preset
    else:
        path = pretrained_file(str(preset), kind)
    return load_forecaster(path, num_threads=num_threads)
