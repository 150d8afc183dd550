"""kerastp: spatio-temporal predictive learning for Keras 3 / TensorFlow.

Importing the package builds nothing, touches no disk and does not import TensorFlow: the
public names below are resolved on first use, so `kerastp.lite` stays usable on an edge box
that has only `ai-edge-litert` and NumPy.
"""

import importlib
import os

from kerastp import serialization as _serialization

__version__ = "0.1.0"

# kerastp's models, data pipelines and exporters run on TensorFlow. Choose the backend before
# Keras is first imported; an explicit KERAS_BACKEND that is not TensorFlow is reported by
# `kerastp.backend.require_tensorflow()` when a TensorFlow-bound module is used.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

#: TensorFlow's switch for its oneDNN CPU kernels. TensorFlow turns them on by itself only on
#: CPUs with AVX-512 VNNI / BF16, AVX-VNNI or AMX; elsewhere (AVX2 CPUs such as many AMD EPYC cloud
#: machines) it runs its Eigen kernels, which trained kerastp's models 1.3x to 2.3x slower per
#: step and cannot run a dilated `DepthwiseConv2dNative` at all (`benchmarks/onednn.py`,
#: benchmarks/results/cpu/onednn.md). kerastp turns them on unless the variable is set
#: (`TF_ENABLE_ONEDNN_OPTS=0` keeps Eigen's); TensorFlow reads it once, when first imported,
#: so it takes effect when kerastp is imported before TensorFlow and Keras.
ONEDNN_ENV_VAR = "TF_ENABLE_ONEDNN_OPTS"
os.environ.setdefault(ONEDNN_ENV_VAR, "1")

_LAZY = {
    # registry
    "MODELS": "kerastp.registry",
    "PRESETS": "kerastp.registry",
    "build_model": "kerastp.registry",
    "get_preset": "kerastp.registry",
    "list_presets": "kerastp.registry",
    "preset_summary": "kerastp.registry",
    # models
    "Forecaster": "kerastp.models.base",
    "STLight": "kerastp.models.stlight",
    "USTEP": "kerastp.models.ustep",
    "ConvLSTM": "kerastp.models.conv_lstm",
    "PredRNN": "kerastp.models.predrnn",
    "SimVP": "kerastp.models.simvp",
    "TAU": "kerastp.models.tau",
    # FLOPs
    "count_macs": "kerastp.flops",
    # data sources
    "DataSource": "kerastp.data.sources",
    "get_source": "kerastp.data.sources",
    # training, evaluation, saving
    "TrainConfig": "kerastp.training",
    "train": "kerastp.training",
    "evaluate": "kerastp.evaluation.evaluate",
    "load_model": "kerastp.saving",
    "load_forecaster": "kerastp.forecasters",
    # pretrained models
    "from_preset": "kerastp.forecasters",
    "list_pretrained": "kerastp.pretrained",
    # export
    "export_keras": "kerastp.export",
    "export_saved_model": "kerastp.export",
    "export_tflite": "kerastp.export",
    "export_all": "kerastp.export",
    # pictures
    "save_forecast_strip": "kerastp.visualize",
    "save_forecast_gif": "kerastp.visualize",
}

__all__ = ["__version__", *sorted(_LAZY)]

# `keras.saving.load_model` finds kerastp's classes after `import kerastp` (no Keras import).
_serialization.enable()


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kerastp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
