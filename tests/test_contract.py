"""The contract every registered model honours, run over every tiny preset.

The default suite runs the contract at test size (16 x 16 frames, 6 input and 6 output
frames): the same code paths as the presets (USTEP keeps micro segments of dt 2 and two macro
segments of DT 3) while tracing a fraction of the unrolled graph. CI's slow step runs the whole
contract again at each preset's own size; the default suite checks that every tiny preset builds
and forecasts at its own size (`test_tiny_presets_forecast_at_their_own_size`).
"""

import functools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastp import export, registry
from kerastp.lite import LiteForecaster

TINY = registry.list_presets(tiny=True)
#: Frame side and frame count of the test-size contract.
TEST_SIZE = 16
TEST_FRAMES = 6


def _cases(default_presets):
    """(preset, size) cases: test size in the default suite (for `default_presets`, the rest
    in the slow step), the preset's own size in the slow step."""
    cases = []
    for name in TINY:
        marks = () if name in default_presets else (pytest.mark.slow,)
        cases.append(pytest.param((name, "test"), id=f"{name}-test_size", marks=marks))
    for name in TINY:
        cases.append(
            pytest.param((name, "preset"), id=f"{name}-preset_size", marks=pytest.mark.slow)
        )
    return cases


CASES = _cases(TINY)
# The export contract (SavedModel, TFLite) traces each model's whole unrolled graph again: the
# default suite runs it on the flagship model, CI's slow step on every tiny preset.
EXPORT_CASES = _cases(["stlight_tiny"])


def _build(case, **overrides):
    """The model of `case` = (preset, "test" | "preset"), with constructor overrides."""
    preset, size = case
    if size == "test":
        t_in = overrides.pop("input_frames", TEST_FRAMES)
        t_out = overrides.pop("output_frames", TEST_FRAMES)
        overrides = {
            **registry.frame_overrides(preset, t_in, t_out),
            "height": TEST_SIZE,
            "width": TEST_SIZE,
            **overrides,
        }
    return registry.build_model(preset, **overrides)


@functools.cache
def _shared(case):
    """One model per case for the tests that only call it (input checks)."""
    return _build(case)


def _past(model, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((batch, *model.input_signature_shape[1:]), dtype=np.float32)


def _run(model, past):
    return keras.ops.convert_to_numpy(model(past, training=False))


@pytest.fixture(params=CASES)
def case(request):
    return request.param


def test_every_model_has_a_tiny_preset():
    models_with_tiny = {registry.get_preset(name)["model"] for name in TINY}
    assert models_with_tiny == set(registry.MODELS)


def test_test_size_cases_keep_every_code_path():
    """The test size changes frame counts and sides only where a preset needs it to."""
    for name in TINY:
        model = _build((name, "test"))
        assert (model.input_frames, model.output_frames) == (TEST_FRAMES, TEST_FRAMES)
        assert model.frame_shape == (TEST_SIZE, TEST_SIZE, 1)
    ustep = _build(("ustep_tiny", "test"))
    assert (ustep.micro_frames, ustep.macro_frames) == (2, 3)
    assert ustep.macro_update is not None  # two macro segments are linked


@pytest.mark.parametrize("preset", TINY)
def test_tiny_presets_forecast_at_their_own_size(preset):
    """The full-size smoke: each tiny preset, as registered, forecasts the right shape."""
    spec = registry.get_preset(preset)["config"]
    model = registry.build_model(preset)
    frame = (spec["height"], spec["width"], spec["channels"])
    assert model.input_signature_shape == (None, spec["input_frames"], *frame)
    assert model.compute_output_shape((None, spec["input_frames"], *frame)) == (
        None,
        spec["output_frames"],
        *frame,
    )
    forecast = _run(model, _past(model, batch=1))
    assert forecast.shape == (1, spec["output_frames"], *frame)
    assert np.isfinite(forecast).all()


def test_config_round_trips_through_json(case):
    model = _build(case)
    config = json.loads(json.dumps(model.get_config()))
    clone = type(model).from_config(config)
    assert clone.get_config() == model.get_config()
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    clone.set_weights(model.get_weights())
    past = _past(model)
    np.testing.assert_allclose(_run(clone, past), _run(model, past), atol=1e-6)


def test_symbolic_and_eager_shapes(case):
    base = _build(case)
    t_in, frame = base.input_frames, base.frame_shape
    for t_out in (max(1, t_in // 3), t_in, 2 * t_in + 3):
        model = _build(case, output_frames=t_out)
        symbolic = model(keras.Input((t_in, *frame)))
        assert tuple(symbolic.shape) == (None, t_out, *frame)
        assert model.compute_output_shape((None, t_in, *frame)) == (None, t_out, *frame)
        assert _run(model, _past(model, batch=3)).shape == (3, t_out, *frame)


def test_long_rollout_feeds_predictions_back(case):
    short = _build(case)
    t_in = short.input_frames
    long = _build(case, output_frames=2 * t_in + 3)
    long.set_weights(short.get_weights())
    past = _past(short)
    first = _run(short, past)
    rolled = _run(long, past)
    # A longer horizon starts with the same frames.
    np.testing.assert_allclose(rolled[:, :t_in], first, atol=1e-5)
    if long.frames_per_step < long.output_frames:
        # Models on the base rollout feed their predictions back as the next input window.
        k = long.frames_per_step
        window = np.concatenate([past, first[:, :k]], axis=1)[:, -t_in:]
        np.testing.assert_allclose(rolled[:, k : 2 * k], _run(short, window)[:, :k], atol=1e-4)
    assert np.isfinite(rolled).all()


def test_shorter_output_is_a_crop_of_the_same_computation(case):
    full = _build(case)
    short = _build(case, output_frames=1)
    assert _run(short, _past(short)).shape[1] == 1
    long = _build(case, output_frames=2 * full.input_frames)
    if long.frames_per_step == long.output_frames:
        # One-pass models (MotionCast): the weights do not depend on the horizon, and a
        # shorter forecast is the first frames of a longer one.
        short.set_weights(long.get_weights())
        past = _past(long)
        np.testing.assert_allclose(_run(short, past), _run(long, past)[:, :1], atol=1e-5)
    else:
        # Models on the base rollout forecast min(T_in, T_out) frames per pass.
        assert full.frames_per_step == min(full.input_frames, full.output_frames)
        assert long.frames_per_step == long.input_frames


def test_two_fit_steps_give_a_finite_loss_and_move_weights(case):
    """Two steps: a model whose output heads start at zero (MotionCast's correction and
    residual, so training starts from its motion prior) passes gradients upstream from its
    second step on."""
    model = _build(case)
    model.compile()
    past = _past(model, batch=4)
    future = _past(model, batch=4, seed=1)[:, : model.output_frames]
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(past, future, batch_size=2, epochs=1, verbose=0)
    loss = history.history["loss"][0]
    assert np.isfinite(loss)
    assert {"frame_mse", "frame_mae"} <= set(history.history)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    assert sum(changed) > len(changed) // 2


def test_keras_file_reload_gives_equal_outputs(case, tmp_path):
    model = _build(case)
    model.compile()
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(model)
    assert reloaded.get_config() == model.get_config()
    past = _past(model)
    np.testing.assert_array_equal(_run(reloaded, past), _run(model, past))
    assert reloaded.optimizer is not None


@pytest.mark.parametrize("export_case", EXPORT_CASES)
def test_saved_model_reload_at_two_batch_sizes(export_case, tmp_path):
    preset = export_case[0]
    model = _build(export_case)
    sidecar = export.export_saved_model(model, tmp_path / "sm", preset=preset)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    signature = loaded.signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == ["frames"]
    assert inputs["frames"].shape.as_list() == [None, *model.input_signature_shape[1:]]
    assert list(signature.structured_outputs) == ["forecast"]
    for batch in (1, 5):
        past = _past(model, batch=batch, seed=batch)
        got = signature(frames=tf.constant(past))["forecast"].numpy()
        np.testing.assert_allclose(got, _run(model, past), atol=export.TOLERANCES["saved_model"])
    assert sidecar["parity"]["passed"]


@pytest.mark.parametrize("export_case", EXPORT_CASES)
def test_tflite_runs_with_builtin_ops_and_equal_outputs(export_case, tmp_path):
    preset = export_case[0]
    model = _build(export_case)
    sidecar = export.export_tflite(model, tmp_path / "m.tflite", preset=preset)
    forecaster = LiteForecaster(tmp_path / "m.tflite", num_threads=1)
    assert not [op for op in forecaster.ops if op.startswith("Flex") or op == "WHILE"]
    assert sidecar["ops"] == forecaster.ops
    for batch in (1, 3):
        past = _past(model, batch=batch, seed=10 + batch)
        np.testing.assert_allclose(
            forecaster.predict(past), _run(model, past), atol=export.TOLERANCES["tflite"]
        )


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda s: np.zeros(s[1:], np.float32), "rank 5"),
        (lambda s: np.zeros((2, s[1], s[2] + 2, *s[3:]), np.float32), "axis 2"),
        (lambda s: np.zeros((2, s[1] + 1, *s[2:]), np.float32), "axis 1"),
        (lambda s: np.zeros((2, *s[1:]), np.int32), "floating-point"),
    ],
)
def test_bad_inputs_raise_clear_errors(case, bad, message):
    model = _shared(case)
    with pytest.raises(ValueError, match=message):
        model(bad(model.input_signature_shape))


def test_predict_rejects_nan_and_uint8(case):
    model = _shared(case)
    past = _past(model)
    past[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or Inf"):
        model.predict(past, verbose=0)
    with pytest.raises(ValueError, match="divide uint8 frames by 255"):
        model.predict((_past(model) * 255).astype(np.uint8), verbose=0)
