"""Tests for kerastp.optimizers: OneCycle against PyTorch's OneCycleLR formula, ScheduledAdam
against a NumPy re-implementation of PyTorch's Adam, serialization and the compiled model."""

import json
import math

import keras
import numpy as np
import pytest

from kerastp import registry
from kerastp.optimizers import OneCycle, ScheduledAdam, one_cycle_adam

MAX_LR = 3e-3
INITIAL_LR = MAX_LR / 25.0  # 1.2e-4
FINAL_LR = INITIAL_LR / 1e4  # 1.2e-8


# --------------------------------------------------------------------------------------------
# References (pure Python / NumPy, written from PyTorch's source, not from kerastp)
# --------------------------------------------------------------------------------------------


def torch_one_cycle(step, start, peak, end, total_steps, pct_start=0.3):
    """`torch.optim.lr_scheduler.OneCycleLR._get_lr` for one value, anneal_strategy="cos",
    three_phase=False: phase ends at `float(pct_start * total_steps) - 1` and
    `total_steps - 1`; the last phase also takes every later step."""
    phases = [
        (float(pct_start * total_steps) - 1, start, peak),
        (total_steps - 1, peak, end),
    ]
    phase_start = 0.0
    for i, (phase_end, begin, finish) in enumerate(phases):
        if step <= phase_end or i == len(phases) - 1:
            pct = (step - phase_start) / (phase_end - phase_start)
            return finish + (begin - finish) / 2.0 * (math.cos(math.pi * pct) + 1)
        phase_start = phase_end
    raise AssertionError("unreachable")


def torch_lr(step, total_steps, pct_start=0.3):
    return torch_one_cycle(step, INITIAL_LR, MAX_LR, FINAL_LR, total_steps, pct_start)


def torch_beta_1(step, total_steps, pct_start=0.3):
    return torch_one_cycle(step, 0.95, 0.85, 0.95, total_steps, pct_start)


def torch_adam(w0, gradients, lrs, beta_1s, beta_2=0.999, eps=1e-8, product=False):
    """`torch.optim.Adam` (single tensor, no amsgrad, no weight decay) in float64.

    Step t (1-based) uses lrs[t-1] and beta_1s[t-1]; the bias correction uses the CURRENT
    beta_1 (`1 - beta_1**t`), as torch does when OneCycleLR cycles the momentum.
    `product=True` bias-corrects with the product of the past beta_1 values instead (the
    exact correction, which torch does NOT use): only there to show the test can tell.
    """
    beta_1_product = 1.0
    w = np.array(w0, np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    history = []
    for t, (g, lr, b1) in enumerate(zip(gradients, lrs, beta_1s, strict=True), start=1):
        g = np.asarray(g, np.float64)
        m = b1 * m + (1 - b1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        beta_1_product *= b1
        bias_correction1 = 1 - (beta_1_product if product else b1**t)
        bias_correction2 = 1 - beta_2**t
        denom = np.sqrt(v) / math.sqrt(bias_correction2) + eps
        w = w - lr / bias_correction1 * m / denom
        history.append(w.copy())
    return history


def _value(x):
    return float(keras.ops.convert_to_numpy(x))


# --------------------------------------------------------------------------------------------
# OneCycle
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "total_steps, pct_start", [(100, 0.3), (37, 0.3), (37, 0.25), (1000, 0.3), (10, 0.5)]
)
def test_one_cycle_learning_rate_matches_torch_at_every_step(total_steps, pct_start):
    schedule = OneCycle(INITIAL_LR, MAX_LR, FINAL_LR, total_steps, pct_start=pct_start)
    steps = np.arange(total_steps)
    got = keras.ops.convert_to_numpy(schedule(steps))
    expected = [torch_lr(s, total_steps, pct_start) for s in steps]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("total_steps", [2, 3])
def test_one_cycle_shorter_than_one_warm_up_step_matches_torch(total_steps):
    schedule = OneCycle(INITIAL_LR, MAX_LR, FINAL_LR, total_steps)
    got = keras.ops.convert_to_numpy(schedule(np.arange(total_steps)))
    expected = [torch_lr(s, total_steps) for s in range(total_steps)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("total_steps, pct_start", [(100, 0.3), (37, 0.3), (37, 0.25)])
def test_one_cycle_beta_1_matches_torch_at_every_step(total_steps, pct_start):
    schedule = OneCycle(0.95, 0.85, 0.95, total_steps, pct_start=pct_start)
    steps = np.arange(total_steps)
    got = keras.ops.convert_to_numpy(schedule(steps))
    expected = [torch_beta_1(s, total_steps, pct_start) for s in steps]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_one_cycle_scalar_steps_of_every_dtype_match_torch():
    # The optimizer calls the schedule with its int64 `iterations` variable, one step at a time.
    schedule = OneCycle(INITIAL_LR, MAX_LR, FINAL_LR, 37)
    for step in range(37):
        for value in (step, np.int64(step), keras.Variable(step, dtype="int64")):
            assert _value(schedule(value)) == pytest.approx(torch_lr(step, 37), rel=1e-5, abs=1e-9)


def test_one_cycle_hand_checked_values():
    lr = OneCycle(INITIAL_LR, MAX_LR, FINAL_LR, total_steps=100)
    # Step 0: max / div = 1.2e-4; end of warm-up (0.3 * 100 - 1 = step 29): the peak;
    # last step (99): 1.2e-4 / 1e4 = 1.2e-8.
    assert _value(lr(0)) == pytest.approx(1.2e-4, rel=1e-6)
    assert _value(lr(29)) == pytest.approx(3e-3, rel=1e-6)
    assert _value(lr(99)) == pytest.approx(1.2e-8, rel=1e-3)
    # Half-way through each phase the cosine is at its midpoint.
    assert _value(lr(14.5)) == pytest.approx((1.2e-4 + 3e-3) / 2, rel=1e-5)
    assert _value(lr(64)) == pytest.approx(1.2e-8 + (3e-3 - 1.2e-8) / 2, rel=1e-5)
    # Rising strictly during the warm-up, falling strictly afterwards.
    values = keras.ops.convert_to_numpy(lr(np.arange(100)))
    assert np.all(np.diff(values[:30]) > 0)
    assert np.all(np.diff(values[29:]) < 0)

    beta = OneCycle(0.95, 0.85, 0.95, total_steps=100)
    assert _value(beta(0)) == pytest.approx(0.95, abs=1e-7)
    assert _value(beta(29)) == pytest.approx(0.85, abs=1e-7)
    assert _value(beta(99)) == pytest.approx(0.95, abs=1e-7)
    assert _value(beta(64)) == pytest.approx(0.90, abs=1e-6)


def test_one_cycle_keeps_the_end_value_after_the_last_step():
    lr = OneCycle(INITIAL_LR, MAX_LR, FINAL_LR, total_steps=20)
    for step in (19, 20, 25, 1000):
        assert _value(lr(step)) == pytest.approx(FINAL_LR, rel=1e-3)


def test_one_cycle_config_round_trip():
    lr = OneCycle(1e-4, 2e-3, 1e-7, total_steps=37, pct_start=0.25)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(lr)))
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, OneCycle)
    assert restored.get_config() == {
        "start": 1e-4,
        "peak": 2e-3,
        "end": 1e-7,
        "total_steps": 37,
        "pct_start": 0.25,
    }
    steps = np.arange(40)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(steps)), keras.ops.convert_to_numpy(lr(steps))
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"total_steps": 1}, "total_steps"),
        ({"total_steps": 0}, "total_steps"),
        ({"total_steps": -5}, "total_steps"),
        ({"total_steps": 100, "pct_start": 0.0}, "pct_start"),
        ({"total_steps": 100, "pct_start": 1.0}, "pct_start"),
        ({"total_steps": 100, "pct_start": -0.3}, "pct_start"),
        ({"total_steps": 100, "pct_start": 1.5}, "pct_start"),
        ({"total_steps": True}, "total_steps"),
        ({"total_steps": 37.5}, "total_steps"),
    ],
)
def test_one_cycle_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        OneCycle(INITIAL_LR, MAX_LR, FINAL_LR, **kwargs)
    with pytest.raises(ValueError, match=name):
        one_cycle_adam(MAX_LR, **kwargs)


# --------------------------------------------------------------------------------------------
# ScheduledAdam
# --------------------------------------------------------------------------------------------


def _apply(optimizer, variable, gradients):
    """Applies each gradient in turn and returns the variable after every step."""
    history = []
    for g in gradients:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g, variable.dtype), variable)])
        history.append(keras.ops.convert_to_numpy(variable).astype(np.float64))
    return history


def test_scheduled_adam_first_step_by_hand():
    # t = 1: m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps).
    variable = keras.Variable(1.0, dtype="float64")
    optimizer = ScheduledAdam(learning_rate=0.1, beta_1=0.7, beta_2=0.99, epsilon=0.25)
    (w,) = _apply(optimizer, variable, [0.5])
    # (The learning rate is held in float32.)
    assert 1.0 - float(w) == pytest.approx(0.1 * 0.5 / (0.5 + 0.25), rel=1e-6)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 1


@pytest.mark.parametrize("epsilon", [1e-8, 1e-1])
def test_scheduled_adam_matches_torch_adam_with_cycled_beta_1(epsilon):
    # A short cycle, so beta_1 moves a lot between steps: bias-correcting with a fixed beta_1,
    # with Keras' 0.9, or with the product of past beta_1 values all give other numbers.
    # The large epsilon separates "eps added to sqrt(v_hat)" from Keras' epsilon-hat form.
    total_steps = 8
    lr = OneCycle(0.01, 0.1, 1e-3, total_steps)
    beta_1 = OneCycle(0.95, 0.6, 0.95, total_steps)
    optimizer = ScheduledAdam(learning_rate=lr, beta_1=beta_1, beta_2=0.9, epsilon=epsilon)
    gradients = [
        np.array([0.5, -0.02, 3.0]),
        np.array([-1.0, 0.04, 2.5]),
        np.array([2.0, -0.01, -0.5]),
        np.array([0.1, 0.03, 1.0]),
        np.array([-0.3, 0.0, 0.2]),
        np.array([1.5, -0.05, -2.0]),
        np.array([0.7, 0.02, 0.1]),
        np.array([-0.2, 0.01, 0.4]),
        np.array([0.9, -0.03, -0.6]),  # one step past the end of the cycle
    ]
    w0 = np.array([1.0, -2.0, 0.5])
    variable = keras.Variable(w0, dtype="float64")
    got = _apply(optimizer, variable, gradients)

    steps = range(len(gradients))  # step t (1-based) runs at iteration t - 1
    lrs = [torch_one_cycle(min(s, total_steps - 1), 0.01, 0.1, 1e-3, total_steps) for s in steps]
    beta_1s = [
        torch_one_cycle(min(s, total_steps - 1), 0.95, 0.6, 0.95, total_steps) for s in steps
    ]
    expected = torch_adam(w0, gradients, lrs, beta_1s, beta_2=0.9, eps=epsilon)
    for t, (g, e) in enumerate(zip(got, expected, strict=True), start=1):
        # Compare the distance travelled (the schedules run in float32).
        np.testing.assert_allclose(g - w0, e - w0, rtol=2e-5, atol=1e-9, err_msg=f"step {t}")

    # The scenario tells the rules apart: a fixed beta_1 of 0.9 (Keras' Adam default) or the
    # product of the past beta_1 values in the bias correction land elsewhere.
    for wrong in (
        torch_adam(w0, gradients, lrs, [0.9] * len(gradients), beta_2=0.9, eps=epsilon),
        torch_adam(w0, gradients, lrs, beta_1s, beta_2=0.9, eps=epsilon, product=True),
    ):
        assert not np.allclose(got[-1] - w0, wrong[-1] - w0, rtol=1e-3)


def test_scheduled_adam_scalar_variable_with_constant_hyperparameters():
    variable = keras.Variable(3.0, dtype="float32")
    optimizer = ScheduledAdam(learning_rate=0.05, beta_1=0.8, beta_2=0.95, epsilon=1e-3)
    gradients = [1.0, -0.5, 0.25, 2.0, -1.0]
    got = _apply(optimizer, variable, gradients)
    expected = torch_adam(3.0, gradients, [0.05] * 5, [0.8] * 5, beta_2=0.95, eps=1e-3)
    np.testing.assert_allclose(np.array(got) - 3.0, np.array(expected) - 3.0, rtol=1e-4)


def test_scheduled_adam_learning_rate_follows_the_schedule():
    optimizer = one_cycle_adam(MAX_LR, total_steps=10)
    variable = keras.Variable(np.zeros(2), dtype="float32")
    for k in range(12):
        assert _value(optimizer.learning_rate) == pytest.approx(
            torch_lr(min(k, 9), 10), rel=1e-5, abs=1e-9
        )
        _apply(optimizer, variable, [np.ones(2)])


def test_scheduled_adam_config_round_trip_keeps_the_beta_1_schedule():
    optimizer = one_cycle_adam(MAX_LR, total_steps=37, clipnorm=1.0)
    config = json.loads(json.dumps(keras.optimizers.serialize(optimizer)))
    restored = keras.optimizers.deserialize(config)
    assert type(restored) is ScheduledAdam
    assert isinstance(restored.beta_1, OneCycle)
    assert restored.beta_1.get_config() == optimizer.beta_1.get_config()
    assert isinstance(restored._learning_rate, OneCycle)
    assert restored._learning_rate.get_config() == optimizer._learning_rate.get_config()
    assert restored.epsilon == optimizer.epsilon == 1e-8
    assert restored.beta_2 == optimizer.beta_2
    assert restored.clipnorm == 1.0
    assert "amsgrad" not in restored.get_config()

    # Same numbers from both.
    gradients = [np.array([0.3, -0.7]), np.array([1.0, 0.2]), np.array([-0.4, 0.9])]
    a = keras.Variable(np.array([1.0, 1.0]), dtype="float64")
    b = keras.Variable(np.array([1.0, 1.0]), dtype="float64")
    np.testing.assert_array_equal(
        _apply(optimizer, a, gradients)[-1], _apply(restored, b, gradients)[-1]
    )


def test_scheduled_adam_config_round_trip_with_a_float_beta_1():
    optimizer = ScheduledAdam(learning_rate=2e-3, beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    restored = keras.optimizers.deserialize(
        json.loads(json.dumps(keras.optimizers.serialize(optimizer)))
    )
    assert type(restored) is ScheduledAdam
    assert restored.beta_1 == pytest.approx(0.8)
    assert restored.beta_2 == pytest.approx(0.99)
    assert restored.epsilon == pytest.approx(1e-6)
    assert _value(restored.learning_rate) == pytest.approx(2e-3)


def test_one_cycle_adam_defaults_are_pytorch_one_cycle_lr():
    optimizer = one_cycle_adam(MAX_LR, total_steps=100)
    assert type(optimizer) is ScheduledAdam
    assert optimizer._learning_rate.get_config() == pytest.approx(
        {"start": 1.2e-4, "peak": 3e-3, "end": 1.2e-8, "total_steps": 100, "pct_start": 0.3}
    )
    assert optimizer.beta_1.get_config() == pytest.approx(
        {"start": 0.95, "peak": 0.85, "end": 0.95, "total_steps": 100, "pct_start": 0.3}
    )
    assert optimizer.beta_2 == pytest.approx(0.999)
    assert optimizer.epsilon == pytest.approx(1e-8)


def test_one_cycle_adam_custom_arguments():
    optimizer = one_cycle_adam(
        1e-2,
        total_steps=50,
        pct_start=0.25,
        div_factor=10.0,
        final_div_factor=100.0,
        max_beta_1=0.9,
        base_beta_1=0.8,
        epsilon=1e-6,
        beta_2=0.98,
    )
    assert optimizer._learning_rate.get_config() == pytest.approx(
        {"start": 1e-3, "peak": 1e-2, "end": 1e-5, "total_steps": 50, "pct_start": 0.25}
    )
    assert optimizer.beta_1.get_config() == pytest.approx(
        {"start": 0.9, "peak": 0.8, "end": 0.9, "total_steps": 50, "pct_start": 0.25}
    )
    assert optimizer.epsilon == pytest.approx(1e-6)
    assert optimizer.beta_2 == pytest.approx(0.98)


# --------------------------------------------------------------------------------------------
# A compiled model
# --------------------------------------------------------------------------------------------


def test_compiled_model_runs_the_one_cycle_policy(tmp_path):
    keras.utils.set_random_seed(0)
    # The schedule does not depend on the model: a narrowed stlight_tiny traces in a second.
    model = registry.build_model("stlight_tiny", hidden_dim=16, depth=1, height=16, width=16)
    total_steps = 12
    model.compile(learning_rate=MAX_LR, total_steps=total_steps)
    optimizer = model.optimizer
    assert type(optimizer) is ScheduledAdam
    assert isinstance(optimizer.beta_1, OneCycle)
    assert optimizer.beta_1.total_steps == total_steps

    rng = np.random.default_rng(0)
    past = rng.random((2, model.input_frames, *model.frame_shape), dtype=np.float32)
    future = rng.random((2, model.output_frames, *model.frame_shape), dtype=np.float32)
    assert _value(optimizer.learning_rate) == pytest.approx(torch_lr(0, total_steps), rel=1e-5)
    for k in range(1, 4):
        loss = model.train_on_batch(past, future)
        assert np.all(np.isfinite(loss))
        assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == k
        assert _value(optimizer.learning_rate) == pytest.approx(torch_lr(k, total_steps), rel=1e-5)
        assert _value(optimizer.beta_1(optimizer.iterations)) == pytest.approx(
            torch_beta_1(k, total_steps), abs=1e-6
        )

    # A saved and reloaded model resumes the schedule where it stopped.
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded.optimizer) is ScheduledAdam
    assert isinstance(reloaded.optimizer.beta_1, OneCycle)
    assert reloaded.optimizer.beta_1.get_config() == optimizer.beta_1.get_config()
    assert int(keras.ops.convert_to_numpy(reloaded.optimizer.iterations)) == 3
    assert _value(reloaded.optimizer.learning_rate) == pytest.approx(
        torch_lr(3, total_steps), rel=1e-5
    )


def test_compiled_model_without_total_steps_has_a_constant_learning_rate():
    model = registry.build_model("stlight_tiny")
    model.compile(learning_rate=1e-3)
    assert type(model.optimizer) is ScheduledAdam
    assert _value(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.optimizer.epsilon == pytest.approx(1e-8)
