"""THE list of kerastp models, presets and data sources.

The CLI choices, the README table, `kerastp list` and the parametrised tests all read
`MODELS`, `PRESETS` and `SOURCES`; nothing else names a model or a data source.
"""

import copy
import functools
import importlib
import json
from pathlib import Path

#: Model name -> "module:Class". Resolved lazily so that reading the registry imports nothing.
MODELS = {
    "stlight": "kerastp.models.stlight:STLight",
    "ustep": "kerastp.models.ustep:USTEP",
    "convlstm": "kerastp.models.conv_lstm:ConvLSTM",
    "predrnn": "kerastp.models.predrnn:PredRNN",
    "simvp": "kerastp.models.simvp:SimVP",
    "tau": "kerastp.models.tau:TAU",
    "motioncast": "kerastp.models.motion_cast:MotionCast",
}

#: Data source name -> "module:Class" (a `kerastp.data.sources.DataSource`); a new source is
#: one file under kerastp/data/sources/ and one line here.
SOURCES = {
    "procedural": "kerastp.data.sources.moving_mnist:ProceduralMovingMnist",
    "mnist": "kerastp.data.sources.moving_mnist:MnistMovingMnist",
    "radar": "kerastp.data.sources.radar:RadarSource",
    "arrays": "kerastp.data.sources.arrays:ArraysSource",
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

# OpenSTL's Moving MNIST configurations (configs/mmnist/*.py), SPEC §4.
_OPENSTL_RECURRENT = {
    "num_hidden": [128, 128, 128, 128],
    "filter_size": 5,
    "patch_size": 4,
    "layer_norm": False,
    "scheduled_sampling": True,
    "sampling_start_value": 1.0,
    "sampling_changing_rate": 2e-5,
    "sampling_stop_iter": 50000,
}
# OpenSTL stops scheduled sampling at 50k of its 125k MMNIST steps (40%); the tiny presets'
# own run is 10 epochs x 625 steps, so they stop at 2,500 with the matching rate.
_TINY_RECURRENT = {
    "num_hidden": [16, 16],
    "filter_size": 3,
    "patch_size": 4,
    "sampling_changing_rate": 1.0 / 2500,
    "sampling_stop_iter": 2500,
}
_OPENSTL_SIMVP = {
    "hid_s": 64,
    "hid_t": 512,
    "num_spatial": 4,
    "num_temporal": 8,
    "mlp_ratio": 8.0,
    "spatio_kernel_enc": 3,
    "spatio_kernel_dec": 3,
}
_TINY_SIMVP = {
    "hid_s": 16,
    "hid_t": 64,
    "num_spatial": 4,
    "num_temporal": 2,
    "mlp_ratio": 4.0,
    "kernel_size": 7,
}
_OPENSTL_TRAINING = {"batch_size": 16, "epochs": 200}
_TINY_TRAINING = {"batch_size": 16, "epochs": 10}

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
    "convlstm_tiny": {
        "model": "convlstm",
        "tiny": True,
        "description": "ConvLSTM, 2 layers x 16, filter 3, patch 4",
        "config": {**_MMNIST, **_TINY_RECURRENT},
        "data": "moving_mnist",
        "training": {"max_learning_rate": 1e-3, **_TINY_TRAINING},
        "paper": None,
    },
    "convlstm_mmnist": {
        "model": "convlstm",
        "tiny": False,
        "description": "ConvLSTM, OpenSTL MMNIST: 4 x 128, filter 5, patch 4, scheduled sampling",
        "config": {**_MMNIST, **_OPENSTL_RECURRENT},
        "data": "moving_mnist",
        "training": {"max_learning_rate": 1e-3, **_OPENSTL_TRAINING},
        # OpenSTL's ConvLSTMCell also declares conv_o (2h -> h, 5x5) and conv_last
        # (2h -> h, 1x1) that its forward never calls: 851,968 parameters per layer that
        # its 15.08M counts and kerastp does not create. At the first step OpenSTL also
        # convolves the zero hidden state of each layer (h -> 4h, 5x5, 16 x 16), which
        # kerastp skips.
        "paper": {
            "params": 15.0e6,
            "flops": 56.8e9,
            "mse": 29.80,
            "openstl_unused_params": 4 * (256 * 128 * 25 + 256 * 128),
            "openstl_zero_state_macs": 4 * 256 * 25 * 128 * 512,
        },
    },
    "predrnn_tiny": {
        "model": "predrnn",
        "tiny": True,
        "description": "PredRNN, 2 ST-LSTM layers x 16, filter 3, patch 4",
        "config": {**_MMNIST, **_TINY_RECURRENT},
        "data": "moving_mnist",
        "training": {"max_learning_rate": 5e-4, **_TINY_TRAINING},
        "paper": None,
    },
    "predrnn_mmnist": {
        "model": "predrnn",
        "tiny": False,
        "description": "PredRNN, OpenSTL MMNIST: 4 ST-LSTM x 128, filter 5, patch 4",
        "config": {**_MMNIST, **_OPENSTL_RECURRENT},
        "data": "moving_mnist",
        "training": {"max_learning_rate": 5e-4, **_OPENSTL_TRAINING},
        # At the first step OpenSTL convolves zero states that kerastp skips: every layer's
        # hidden state (h -> 4h) and the bottom layer's spatio-temporal memory (m -> 3h).
        "paper": {
            "params": 23.8e6,
            "flops": 116.0e9,
            "mse": 23.97,
            "openstl_zero_state_macs": 256 * 25 * 128 * (4 * 512 + 384),
        },
    },
    "simvp_tiny": {
        "model": "simvp",
        "tiny": True,
        "description": "SimVP (gSTA), hid_S 16, hid_T 64, N_S 4, N_T 2",
        "config": {**_MMNIST, **_TINY_SIMVP, "model_type": "gsta"},
        "data": "moving_mnist",
        "training": {"max_learning_rate": 1e-3, **_TINY_TRAINING},
        "paper": None,
    },
    "simvp_mmnist": {
        "model": "simvp",
        "tiny": False,
        "description": "SimVP with gSTA, OpenSTL MMNIST: hid_S 64, hid_T 512, N_S 4, N_T 8",
        "config": {**_MMNIST, **_OPENSTL_SIMVP, "model_type": "gsta"},
        "data": "moving_mnist",
        "training": {"max_learning_rate": 1e-3, **_OPENSTL_TRAINING},
        "paper": {"params": 46.8e6, "flops": 16.5e9, "mse": 26.69},
    },
    "tau_tiny": {
        "model": "tau",
        "tiny": True,
        "description": "TAU, hid_S 16, hid_T 64, N_S 4, N_T 2, MSE + 0.1 DDR",
        "config": {**_MMNIST, **_TINY_SIMVP},
        "data": "moving_mnist",
        "training": {"max_learning_rate": 1e-3, **_TINY_TRAINING},
        "paper": None,
    },
    "tau_mmnist": {
        "model": "tau",
        "tiny": False,
        "description": "TAU, OpenSTL MMNIST: hid_S 64, hid_T 512, N_S 4, N_T 8, MSE + 0.1 DDR",
        "config": {**_MMNIST, **_OPENSTL_SIMVP, "divergence_weight": 0.1},
        "data": "moving_mnist",
        "training": {"max_learning_rate": 1e-3, **_OPENSTL_TRAINING},
        "paper": {"params": 44.7e6, "flops": 16.0e9, "mse": 24.60},
    },
    "motioncast_tiny": {
        "model": "motioncast",
        "tiny": True,
        "description": "MotionCast, d=32, 2 motion + 1 residual mixer blocks, patch 4",
        "config": {
            **_MMNIST,
            "hidden_dim": 32,
            "motion_blocks": 2,
            "residual_blocks": 1,
            "patch_size": 4,
            "residual_channels": 4,
        },
        "data": "moving_mnist",
        "training": {"max_learning_rate": 1e-3, **_TINY_TRAINING},
        "paper": None,
    },
    "motioncast_radar": {
        "model": "motioncast",
        "tiny": False,
        "description": "MotionCast for radar nowcasting: 6 -> 12 frames of 64x64, d=64, "
        "4 motion + 2 residual mixer blocks, coarse-to-fine Lucas-Kanade prior (2x2 grid, "
        "then full resolution)",
        "config": {
            "input_frames": 6,
            "output_frames": 12,
            "height": 64,
            "width": 64,
            "channels": 1,
            "hidden_dim": 64,
            "motion_blocks": 4,
            "residual_blocks": 2,
            "patch_size": 4,
            "residual_channels": 8,
            "prior_iterations": 1,
            "prior_downsample": [2, 1],
        },
        "data": "radar",
        "training": {"max_learning_rate": 1e-3, "batch_size": 16, "epochs": 30},
        "paper": None,
    },
}


#: Pretrained models (keras-hub's pretrained presets): shipped files, paths relative to a
#: pretrained root (see `kerastp.pretrained`), each with its SHA-256, and the model card.
PRETRAINED = {
    "mmnist": {
        "description": "STLight (d=512, 12 blocks, 3.6M parameters) trained on Moving MNIST "
        "made from real MNIST train digits; 10 frames in, 10 out, 64x64.",
        "model": "stlight",
        "data": "mnist",
        "card": "saved_models/mmnist/MODEL_CARD.md",
        # Fine-tuning defaults (`kerastp train --preset mmnist`): a tenth of the rate it was
        # trained at, a few epochs.
        "training": {"max_learning_rate": 5e-5, "batch_size": 16, "epochs": 5},
        "files": {
            "keras": {
                "path": "saved_models/mmnist/mmnist.keras",
                "sha256": "d002b13112321e3877421d4c6bd1007dac979a105f9c72bf69e47ec43ad8e5ed",
            },
            "tflite": {
                "path": "tflite/mmnist/mmnist.tflite",
                "sha256": "d56fcd79d5e1475d12aa1f58eb60ed357fff25c7f937f750c11b88b3003c55a2",
            },
            "tflite_int8": {
                "path": "tflite/mmnist/mmnist_int8.tflite",
                "sha256": "d87a5f7acc4f1a057fcd706689111bc3781ef9bd591342f1d0a17514192eb6cf",
            },
            "examples": {
                "path": "saved_models/mmnist/examples.npz",
                "sha256": "af9209837943f9615efd39f63d0c86e99fba86419ebf6b27b74c442c9fda7081",
            },
        },
    },
    "radar": {
        "description": "MotionCast (coarse-to-fine dense Lucas-Kanade motion with a learned "
        "correction, semi-Lagrangian advection, learned growth and decay; 67.7K parameters) "
        "trained briefly (48 steps, from its Lucas-Kanade prior) on six radar events with the "
        "mean squared error; 6 frames of 5 min in, 12 out, 64x64 at 4 km, rain rate in "
        "kerastp's radar model scale.",
        "model": "motioncast",
        "data": "radar",
        "card": "saved_models/radar/MODEL_CARD.md",
        "training": {"max_learning_rate": 3e-5, "batch_size": 16, "epochs": 10},
        "files": {
            "keras": {
                "path": "saved_models/radar/radar.keras",
                "sha256": "7568ab30694058dd39ad4e5e7970ec7201e130954d2860b07d0be197ef489f46",
            },
            "tflite": {
                "path": "tflite/radar/radar.tflite",
                "sha256": "259986fe02d2e78623b15942cc9a630e856a97a414fc6874b8954d11aedfdd25",
            },
            "tflite_int8": {
                "path": "tflite/radar/radar_int8.tflite",
                "sha256": "5eb5bb8873930cce86e325bc4e54ceff4d8bc4e7feb09077067fafd7b6b30b2c",
            },
            "examples": {
                "path": "saved_models/radar/examples.npz",
                "sha256": "68bdbbde68770210f99640559fd67e6d6c7d8fcae35f080c820c068465a6e2fc",
            },
        },
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


def get_source_class(name):
    """The data source class registered under `name` (e.g. "radar")."""
    if name not in SOURCES:
        raise ValueError(
            f"`data` must be one of {', '.join(SOURCES)}, got data={name!r}"
        )
    module, cls = SOURCES[name].split(":")
    return getattr(importlib.import_module(module), cls)


#: Every object kerastp registers with Keras' serialisation ("kerastp>Name" -> "module:attr"):
#: what a saved file can name. `kerastp.serialization` lets `keras.saving.load_model` find
#: them after a plain `import kerastp`; a test checks this list against the decorators.
SERIALIZABLES = {
    **{f"kerastp>{t.split(':')[1]}": t for t in MODELS.values()},
    **{
        f"kerastp>{name}": f"{module}:{name}"
        for module, names in (
            ("kerastp.optimizers", ("OneCycle", "ScheduledAdam")),
            ("kerastp.losses", ("IntensityWeightedLoss", "MSEWithDifferentialDivergence")),
            ("kerastp.metrics", ("FrameMSE", "FrameMAE", "frame_mse", "frame_mae")),
            ("kerastp.layers.depthwise", ("DepthwiseConv2D",)),
            ("kerastp.layers.group_norm", ("GroupNormalization",)),
            (
                "kerastp.layers",
                (
                    "ConvLSTMCell",
                    "ConvSC",
                    "GSTABlock",
                    "GatedUpdate",
                    "MicroTemporalCell",
                    "STLMixerBlock",
                    "SpatioTemporalLSTMCell",
                    "StackedFrameAttention",
                    "TAUBlock",
                ),
            ),
        )
        for name in names
    },
}


def register_serializables():
    """Imports every kerastp module that registers Keras-serialisable objects.

    `keras.saving.load_model` finds custom classes (models, optimizers, losses, metrics) only
    once their module has run its `register_keras_serializable` decorator;
    `kerastp.load_model` calls this first. Call it before using `keras.saving.load_model`
    directly on a kerastp file.
    """
    for module in dict.fromkeys(target.split(":")[0] for target in SERIALIZABLES.values()):
        importlib.import_module(module)


def get_preset(name):
    """A deep copy of the preset `name`; unknown names raise `ValueError` listing valid ones."""
    if name not in PRESETS:
        raise _unknown("preset", name, PRESETS)
    return copy.deepcopy(PRESETS[name])


def training_settings(name):
    """The training defaults (`max_learning_rate`, `batch_size`, `epochs`) of an architecture
    preset, or the fine-tuning defaults of a pretrained model (`PRETRAINED`)."""
    if name in PRETRAINED:
        return dict(PRETRAINED[name]["training"])
    if name not in PRESETS:
        raise _unknown("preset", name, [*PRESETS, *PRETRAINED])
    return copy.deepcopy(PRESETS[name]["training"])


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


def frame_overrides(preset, input_frames, output_frames):
    """Overrides that build `preset` for other frame counts.

    Sets `input_frames` / `output_frames`, and for a preset whose temporal segments must
    divide the input (USTEP's `micro_frames` dt and `macro_frames` DT) picks the largest
    divisors of `input_frames` not above the preset's (e.g. DT 5 -> 3 for 6 input frames).

    Example:
    >>> frame_overrides("ustep_tiny", 6, 12)["macro_frames"]
    3
    """
    config = get_preset(preset)["config"]
    overrides = {"input_frames": int(input_frames), "output_frames": int(output_frames)}
    divisors = [d for d in range(1, int(input_frames) + 1) if input_frames % d == 0]
    for name in ("micro_frames", "macro_frames"):
        if name in config and input_frames % config[name]:
            overrides[name] = max(d for d in divisors if d <= config[name])
    return overrides


def count_trainable_params(model):
    """Trainable parameters (what PyTorch's `numel` over parameters reports)."""
    import numpy as np

    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


#: Stored counts of every preset (`count_preset`'s numbers), package data beside this file.
COUNTS_FILE = Path(__file__).with_name("preset_counts.json")

_COUNT_KEYS = ("params", "total_params", "macs", "fvcore_macs")


@functools.cache
def _stored_counts():
    return json.loads(COUNTS_FILE.read_text())["presets"]


def stored_counts():
    """{preset: {"config", "params", "total_params", "macs", "fvcore_macs"}} as stored in
    `COUNTS_FILE` (a copy); the tests check them against a recount."""
    return copy.deepcopy(_stored_counts())


def count_preset(name):
    """Builds the preset's model and counts it: `params` (trainable), `total_params` (with
    BatchNorm statistics), `macs` (every layer) and `fvcore_macs` (the papers' convention)."""
    from kerastp.flops import count_macs

    model = build_model(name)
    report = count_macs(model)
    return {
        "params": count_trainable_params(model),
        "total_params": int(model.count_params()),
        "macs": report.macs,
        "fvcore_macs": report.fvcore_macs,
    }


def preset_summary(name, recount=False):
    """Parameters and MACs of a preset next to its paper figures.

    The counts come from `COUNTS_FILE` (instant, no model is built) unless `recount` is True
    or the stored config differs from the preset's (then the model is built and counted).

    Returns:
        dict with `preset`, `model`, `params` (trainable), `total_params` (with BatchNorm
        statistics), `macs` (every layer), `fvcore_macs` (the paper's counting convention),
        `paper_params` / `paper_flops` (None for presets without a paper figure), and
        `paper_unused_params`: parameters the reference implementation declares but never
        uses, which its count includes and kerastp does not create (0 for most presets), and
        `paper_zero_state_macs`: MACs the reference spends convolving the zero initial state
        of a recurrence, which its FLOPs include and kerastp skips (0 for most presets).
    """
    spec = get_preset(name)
    stored = _stored_counts().get(name)
    config = json.loads(json.dumps(spec["config"]))
    if recount or stored is None or stored.get("config") != config:
        counts = count_preset(name)
    else:
        counts = {key: stored[key] for key in _COUNT_KEYS}
    paper = spec["paper"] or {}
    return {
        "preset": name,
        "model": spec["model"],
        **counts,
        "paper_params": paper.get("params"),
        "paper_flops": paper.get("flops"),
        "paper_unused_params": int(paper.get("openstl_unused_params", 0)),
        "paper_zero_state_macs": int(paper.get("openstl_zero_state_macs", 0)),
    }
