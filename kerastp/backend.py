"""Guards for the TensorFlow backend that kerastp's models and exporters need, and the
switch between quiet (default) and verbose diagnostics."""

import contextlib
import importlib
import importlib.util
import os
import sys

from kerastp.options import BACKENDS

#: Set to 1 (or `kerastp --verbose`) to see TensorFlow's native log lines and warnings.
VERBOSE_ENV_VAR = "KERASTP_VERBOSE"


def verbose():
    """True when the user asked for diagnostics (`KERASTP_VERBOSE=1`)."""
    return os.environ.get(VERBOSE_ENV_VAR, "") not in ("", "0", "false", "False")


@contextlib.contextmanager
def quiet_native_stderr():
    """Silences what native code writes straight to file descriptor 2 while the block runs
    (TensorFlow's absl / oneDNN lines at import, which no log level reaches); Python's own
    errors are raised as usual after the block. A no-op when `verbose()`."""
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some notebooks, services)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)

_INSTALL_HINT = (
    "Install it with `pip install 'kerastp[cpu]'` (CPU, tensorflow-cpu) or "
    "`pip install 'kerastp[gpu]'` (NVIDIA GPU, tensorflow[and-cuda])."
)


def _not_on_tensorflow(backend):
    """The error for TensorFlow-only work asked of Keras running on `backend`."""
    return RuntimeError(
        "This needs Keras' TensorFlow backend (SavedModel / TFLite export, loading a "
        f"SavedModel, the demo, tf.data input), but Keras runs on {backend!r} here. Set "
        "KERAS_BACKEND=tensorflow (or unset it) before Keras is imported. `kerastp export` "
        "and `kerastp demo` start on TensorFlow whatever KERAS_BACKEND says: from a process "
        f"already running Keras on {backend!r}, save the model "
        "(`model.save('model.keras')`) and run `kerastp export --model model.keras`."
    )


def require_tensorflow():
    """Imports TensorFlow and checks that Keras runs on it; returns the `tensorflow` module."""
    backend = backend_name()
    if backend != "tensorflow":
        raise _not_on_tensorflow(backend)
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with quiet_native_stderr():
            import tensorflow as tf
    except ImportError as error:
        raise ImportError(
            f"kerastp needs TensorFlow, which is not installed. {_INSTALL_HINT}"
        ) from error
    import keras

    if keras.backend.backend() != "tensorflow":
        raise _not_on_tensorflow(keras.backend.backend())
    return tf



def _quiet_tensorflow_if_installed():
    """On JAX or PyTorch, Keras still imports TensorFlow where it is installed (to seed it,
    and for tf.data inputs); that first import is made here, quietly, as on TensorFlow."""
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_stderr():
        importlib.import_module("tensorflow")


_BACKEND_EXTRAS = {
    "tensorflow": "`pip install 'kerastp[cpu]'` (or `kerastp[gpu]` for NVIDIA GPUs)",
    "jax": "`pip install 'kerastp[jax]'` (or `kerastp[jax-cuda]` for NVIDIA GPUs)",
    "torch": "`pip install 'kerastp[torch]'`",
}


def backend_name():
    """The Keras backend kerastp runs on: Keras' own if imported, else `KERAS_BACKEND`."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def select_backend(name):
    """Makes Keras use backend `name` ("tensorflow", "jax", "torch"; None keeps
    `KERAS_BACKEND`). Must run before Keras is imported; afterwards only the backend Keras
    already runs on is accepted."""
    if name is None:
        return backend_name()
    if name not in BACKENDS:
        raise ValueError(f"`backend` must be one of {', '.join(BACKENDS)}, got {name!r}")
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend") and keras.backend.backend() != name:
        raise ValueError(
            f"Keras already runs on {keras.backend.backend()!r} in this process; start a new "
            f"process with KERAS_BACKEND={name} (or --backend {name}) to use {name!r}"
        )
    os.environ["KERAS_BACKEND"] = name
    return name


def use_tensorflow_for(command, reason="runs on TensorFlow, the one backend it exists on"):
    """Makes a fresh `kerastp` process run `command` on TensorFlow whatever `KERAS_BACKEND`
    says: SavedModel / TFLite export and the demo exist only there, and a SavedModel loads only
    there, so a user who trains on JAX or PyTorch (and keeps `KERAS_BACKEND` set in the shell)
    exports, benchmarks and scores with the same commands. A process that already imported
    Keras on another backend keeps it, and `require_tensorflow` then says what to do.

    Args:
        command: the command's name, for the one line said on stderr when the backend changes.
        reason: why, in that line.
    """
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return
    requested = os.environ.get("KERAS_BACKEND", "tensorflow")
    if requested != "tensorflow":
        print(
            f"kerastp {command}: note: {reason}; KERAS_BACKEND={requested!r} is ignored here",
            file=sys.stderr,
        )
    os.environ["KERAS_BACKEND"] = "tensorflow"


def require_keras():
    """Imports Keras on a backend kerastp supports (TensorFlow, JAX or PyTorch).

    Raises `ValueError` naming the supported backends for any other `KERAS_BACKEND`, and
    `ImportError` naming the missing package and the extra that installs it.

    Returns:
        The `keras` module.
    """
    backend = backend_name()
    if backend not in BACKENDS:
        raise ValueError(
            f"kerastp runs on the Keras backends {', '.join(BACKENDS)}; got "
            f"KERAS_BACKEND={backend!r}."
        )
    if backend == "tensorflow":
        require_tensorflow()
    else:
        try:
            importlib.import_module(backend)  # each backend's package has its name
        except ImportError as error:
            raise ImportError(
                f"KERAS_BACKEND={backend!r} needs the {backend!r} package, "
                f"which is not installed. Install it with {_BACKEND_EXTRAS[backend]}."
            ) from error
        _quiet_tensorflow_if_installed()
    import keras

    return keras
