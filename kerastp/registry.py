"""THE list of kerastp models and presets.

The CLI choices, the README table, `kerastp list` and the parametrised tests all read
`MODELS` and `PRESETS`; nothing else names a model.
"""

import copy
import importlib

#: Model name -> "module:Class". Resolved lazily so that reading the registry imports nothing.
MODELS = {
    "stlight": "kerastp.models.stlight:STLight",
    "ustep": "kerastp.models.ustep:USTEP",
}

_MMNIST = {"input_frames": 10, "output_frames": 10, "height": 64, "width": 64, "channels": 1}
_STLIGHT_PAPER = {
    "patch_size": 2,
    "overlap": 0,
    "depth": 16,
    "kernel_size_1": 3,
    "kernel_size_2": 7,
}
_STLIGHT_TRAINING = {"max_learning_rate": 3e-3, "batch_size": 16, "epochs": 200}
_USTEP_MMNIST = {
    "hid_s": 64,
    "hid_t": 256,
    "num_spatial": 4,
    "micro_frames": 2,
    "macro_frames": 5,
    "micro_blocks": 2,
    "macro_blocks": 2,
    "num_heads": 8,
    "kernel_size": 21,
}

#: Preset name -> {"model", "config", "description", "data", "training", "paper"}.
#: `tiny` presets train in seconds on a CPU and are what tests, CI and the quick start use.
#: `paper` holds the published figures the preset is checked against (parameters, and FLOPs as
#: the paper counted them).
PRESETS = {
    "stlight_tiny": {
        "model": "stlight",
        "tiny": True,
        "description": "STLight, d=64, 4 mixer blocks: trains in minutes on a CPU",
        "config": {**_MMNIST, "hidden_dim": 64, "depth": 4, "patch_size": 2},
        "data": "moving_mnist",
        "training": {"max_learning_rate": 3e-3, "batch_size": 16, "epochs": 10},
        "paper": None,
    },
    "stlight_extra_small": {
        "model": "stlight",
        "tiny": False,
        "description": "STLight-XS on Moving MNIST (paper: 11.1M params, 10.6G FLOPs)",
        "config": {**_MMNIST, **_STLIGHT_PAPER, "hidden_dim": 800},
        "data": "moving_mnist",
        "training": _STLIGHT_TRAINING,
        "paper": {"params": 11.1e6, "flops": 10.6e9, "mse": 24.48},
    },
    "stlight_small": {
        "model": "stlight",
        "tiny": False,
        "description": "STLight-S on Moving MNIST (paper: 17.1M params, 16.5G FLOPs)",
        "config": {**_MMNIST, **_STLIGHT_PAPER, "hidden_dim": 1000},
        "data": "moving_mnist",
        "training": _STLIGHT_TRAINING,
        "paper": {"params": 17.1e6, "flops": 16.5e9, "mse": 23.29},
    },
    "stlight_medium": {
        "model": "stlight",
        "tiny": False,
        "description": "STLight-M on Moving MNIST (paper: 24.3M params, 23.7G FLOPs)",
        "config": {**_MMNIST, **_STLIGHT_PAPER, "hidden_dim": 1200},
        "data": "moving_mnist",
        "training": _STLIGHT_TRAINING,
        "paper": {"params": 24.3e6, "flops": 23.7e9, "mse": 22.21},
    },
    "stlight_large": {
        "model": "stlight",
        "tiny": False,
        "description": "STLight-L on Moving MNIST (paper: 32.9M params, 32.3G FLOPs)",
        "config": {**_MMNIST, **_STLIGHT_PAPER, "hidden_dim": 1400},
        "data": "moving_mnist",
        "training": _STLIGHT_TRAINING,
        "paper": {"params": 32.9e6, "flops": 32.3e9, "mse": 21.80},
    },
    "ustep_tiny": {
        "model": "ustep",
        "tiny": True,
        "description": "USTEP, hid_S 16, hid_T 32, dt 2, DT 5, one block per branch",
        "config": {
            **_MMNIST,
            "hid_s": 16,
            "hid_t": 32,
            "num_spatial": 4,
            "micro_frames": 2,
            "macro_frames": 5,
            "micro_blocks": 1,
            "macro_blocks": 1,
            "num_heads": 2,
            "kernel_size": 7,
            "mlp_ratio": 2.0,
        },
        "data": "moving_mnist",
        "training": {"max_learning_rate": 1e-3, "batch_size": 16, "epochs": 10},
        "paper": None,
    },
    "ustep_mmnist": {
        "model": "ustep",
        "tiny": False,
        "description": "USTEP on Moving MNIST, SPEC §3 defaults (hid_S 64, hid_T 256, dt 2, DT 5)",
        "config": {**_MMNIST, **_USTEP_MMNIST},
        "data": "moving_mnist",
        "training": {"max_learning_rate": 1e-3, "batch_size": 16, "epochs": 200},
        "paper": None,
    },
}


def _unknown(kind, name, valid):
    return ValueError(f"Unknown {kind} {name!r}. Valid {kind}s: {', '.join(sorted(valid))}")


def get_model_class(name):
    """The model class registered under `name` (e.g. "stlight")."""
    if name not in MODELS:
        raise _unknown("model", name, MODELS)
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_preset(name):
    """A deep copy of the preset `name`; unknown names raise `ValueError` listing valid ones."""
    if name not in PRESETS:
        raise _unknown("preset", name, PRESETS)
    return copy.deepcopy(PRESETS[name])


def list_presets(tiny=None, model=None):
    """Preset names, optionally only the tiny (or non-tiny) ones, or those of one model."""
    if model is not None and model not in MODELS:
        raise _unknown("model", model, MODELS)
    return [
        name
        for name, preset in PRESETS.items()
        if (tiny is None or preset["tiny"] == tiny) and (model is None or preset["model"] == model)
    ]


def build_model(preset, **overrides):
    """Builds the model of a preset; keyword arguments override its config.

    Args:
        preset: str, a name from `PRESETS` (see `kerastp list`).
        **overrides: constructor arguments replacing the preset's (e.g. `output_frames=20`).

    Returns:
        A built `kerastp.models.base.Forecaster`.

    Example:
    >>> model = build_model("stlight_tiny", output_frames=5)
    >>> model.output_frames
    5
    """
    spec = get_preset(preset)
    cls = get_model_class(spec["model"])
    config = {"name": preset, **spec["config"], **overrides}
    return cls(**config)


def count_trainable_params(model):
    """Trainable parameters (what PyTorch's `numel` over parameters reports)."""
    import numpy as np

    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def preset_summary(name):
    """Parameters and MACs of a preset next to its paper figures.

    Returns:
        dict with `preset`, `model`, `params` (trainable), `total_params` (with BatchNorm
        statistics), `macs` (every layer), `fvcore_macs` (the paper's counting convention),
        and `paper_params` / `paper_flops` (None for presets without a paper figure).
    """
    from kerastp.flops import count_macs

    spec = get_preset(name)
    model = build_model(name)
    report = count_macs(model)
    paper = spec["paper"] or {}
    return {
        "preset": name,
        "model": spec["model"],
        "params": count_trainable_params(model),
        "total_params": int(model.count_params()),
        "macs": report.macs,
        "fvcore_macs": report.fvcore_macs,
        "paper_params": paper.get("params"),
        "paper_flops": paper.get("flops"),
    }
