"""Mixed precision: bfloat16 compute on CPU, float32 variables, losses, forecasts, artifacts."""

import json

import keras
import numpy as np
import pytest

from kerastp import precision, registry

TINY = registry.list_presets(tiny=True)
# bfloat16 keeps 8 bits of mantissa: a forecast of the same weights differs from float32 by
# rounding through every layer. Measured at initialisation (max abs difference over the
# largest forecast value): stlight 0.8%, convlstm 1.1%, predrnn 1.4%, tau 2.0%, simvp 2.5%,
# ustep 5.2% (attention over stacked frames).
TWIN_TOLERANCE = 0.1


def _probe(model, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    past = rng.random((batch, model.input_frames, *model.frame_shape), dtype=np.float32)
    future = rng.random((batch, model.output_frames, *model.frame_shape), dtype=np.float32)
    return past, future


@pytest.mark.parametrize(
    "preset", [p if p == "stlight_tiny" else pytest.param(p, marks=pytest.mark.slow) for p in TINY]
)
def test_every_tiny_preset_trains_in_bfloat16_with_float32_state(preset):
    keras.utils.set_random_seed(0)
    with precision.policy_scope("mixed_bfloat16"):
        model = registry.build_model(preset)
        model.compile(total_steps=10)
        past, future = _probe(model)
        forecast = model(past, training=False)
        assert keras.backend.standardize_dtype(forecast.dtype) == "float32"
        assert {v.dtype for v in model.weights} == {"float32"}
        assert any(
            layer.dtype_policy.compute_dtype == "bfloat16" for layer in model._flatten_layers()
        )
        logs = model.train_on_batch(past, future, return_dict=True)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    twin = precision.float32_model(model)
    assert twin is not model and not precision.is_mixed(twin)
    assert all(layer.dtype_policy.compute_dtype == "float32" for layer in twin._flatten_layers())
    mixed = keras.ops.convert_to_numpy(model(past, training=False))
    full = keras.ops.convert_to_numpy(twin(past, training=False))
    relative = float(np.max(np.abs(mixed - full)) / np.max(np.abs(full)))
    assert 0 < relative < TWIN_TOLERANCE, relative


def test_float32_model_is_identity_for_float32_models():
    model = registry.build_model("convlstm_tiny")
    assert precision.float32_model(model) is model


@pytest.mark.parametrize("bad", ["fp16", "half", 16])
def test_unknown_mixed_precision_is_refused(bad):
    from kerastp.training import TrainConfig

    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(mixed_precision=bad).resolved()


def test_policy_scope_restores_the_callers_policy_after_an_error():
    with pytest.raises(RuntimeError):
        with precision.policy_scope("mixed_bfloat16"):
            assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
            raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == "float32"


def test_bfloat16_training_run_writes_float32_model(tmp_path):
    from kerastp.saving import load_model
    from kerastp.training import train

    result = train(
        preset="stlight_tiny",
        mixed_precision="bfloat16",
        epochs=1,
        steps_per_epoch=2,
        batch_size=4,
        val_sequences=4,
        eval_sequences=0,
        # The run's plumbing, not the preset's numerics (tested above): a narrowed model.
        overrides={"hidden_dim": 16, "depth": 2},
        run_dir=str(tmp_path / "run"),
        verbose=0,
    )
    assert keras.mixed_precision.global_policy().name == "float32"
    assert precision.is_mixed(result["model"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["mixed_precision"] == "bfloat16"
    saved = load_model(tmp_path / "run" / "model.keras")
    assert not precision.is_mixed(saved)
    assert {v.dtype for v in saved.weights} == {"float32"}
    past, _ = _probe(saved)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(saved(past)),
        keras.ops.convert_to_numpy(precision.float32_model(result["model"])(past)),
        atol=1e-6,
    )


@pytest.mark.slow
def test_mixed_precision_model_exports_float32_artifacts(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from kerastp import export

    keras.utils.set_random_seed(0)
    with precision.policy_scope("mixed_bfloat16"):
        model = registry.build_model("convlstm_tiny")
        model(_probe(model)[0])
    export.export_saved_model(model, tmp_path / "sm")
    export.export_tflite(model, tmp_path / "m.tflite")
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    signature = loaded.signatures["serving_default"]
    assert signature.structured_input_signature[1]["frames"].dtype == tf.float32
    # Floating-point variables are float32 (the integer ones are random-generator states).
    floats = [v for v in loaded.variables if v.dtype.is_floating]
    assert floats and all(v.dtype == tf.float32 for v in floats)
    interpreter = Interpreter(model_path=str(tmp_path / "m.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
