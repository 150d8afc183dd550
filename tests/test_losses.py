"""The rain-aware loss, the named losses and their wiring into compile, training and the CLI."""

import json

import keras
import numpy as np
import pytest

from kerastp import losses, options, registry
from kerastp.data import radar
from kerastp.losses import IntensityWeightedLoss


def _float(x):
    return float(keras.ops.convert_to_numpy(x))


def test_default_thresholds_are_the_rain_rates_in_radar_scale():
    loss = IntensityWeightedLoss()
    np.testing.assert_allclose(loss.thresholds, radar.to_model_scale(np.array([2, 5, 10, 30.0])))
    np.testing.assert_allclose(loss.csi_thresholds, radar.to_model_scale(np.array([1, 5.0])))


def test_weights_step_up_with_the_observed_rain_rate():
    loss = IntensityWeightedLoss()
    rates = np.array([0.0, 1.9, 2.1, 7.0, 12.0, 50.0], np.float32)
    truth = radar.to_model_scale(rates).reshape(1, 1, 1, 6, 1)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loss.pixel_weights(keras.ops.convert_to_tensor(truth))).ravel(),
        [1, 1, 2, 5, 10, 30],
    )


def test_balanced_mse_and_mae_by_hand():
    truth = np.zeros((2, 1, 1, 2, 1), np.float32)
    truth[0, 0, 0, 1] = radar.to_model_scale(np.float32(20.0))  # weight 10
    pred = truth + np.float32(0.1)
    got = keras.ops.convert_to_numpy(IntensityWeightedLoss(mse_weight=2.0, mae_weight=0.5)
                                     .call(truth, pred))  # fmt: skip
    per_pixel = 2.0 * 0.01 + 0.5 * 0.1
    np.testing.assert_allclose(got, [per_pixel * (1 + 10) / 2, per_pixel], rtol=1e-5)


def test_soft_csi_tends_to_the_csi_and_rewards_forecasting_heavy_rain():
    truth = np.zeros((1, 1, 4, 4, 1), np.float32)
    truth[..., :2, :, :] = 0.5  # 8 rainy pixels
    pred = np.zeros_like(truth)
    pred[..., :1, :, :] = 0.5  # 4 hits, 4 misses
    pred[..., 3:, :, :] = 0.5  # 4 false alarms
    loss = IntensityWeightedLoss(csi_weight=1.0, csi_thresholds=[0.3], temperature=1e-3)
    np.testing.assert_allclose(_float(loss.soft_csi(truth, pred)[0]), (4 + 1) / (12 + 1), rtol=1e-4)
    # Only the CSI term: a rain-shy forecast costs more than the right one.
    only_csi = IntensityWeightedLoss(mse_weight=0, mae_weight=0, csi_weight=1.0)
    assert _float(only_csi(truth, np.zeros_like(truth))) > _float(only_csi(truth, truth)) + 0.5


def test_gradient_of_the_csi_term_pushes_missed_rain_up():
    import tensorflow as tf

    truth = np.full((1, 1, 2, 2, 1), 0.5, np.float32)
    pred = tf.Variable(np.full((1, 1, 2, 2, 1), 0.14, np.float32))
    loss = IntensityWeightedLoss(mse_weight=0, mae_weight=0, csi_weight=1.0)
    with tf.GradientTape() as tape:
        value = loss(truth, pred)
    assert np.all(tape.gradient(value, pred).numpy() < 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"thresholds": [0.5, 0.2], "weights": [1, 2, 3]}, "must increase"),
        ({"weights": [1, 2]}, "len\\(thresholds\\) \\+ 1 = 5"),
        ({"mse_weight": -1.0}, "mse_weight"),
        ({"mse_weight": 0, "mae_weight": 0}, "at least one"),
        ({"temperature": 0.0}, "temperature"),
        ({"csi_weight": 1.0, "csi_thresholds": []}, "csi_thresholds"),
        ({"weights": "abc"}, "weights"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IntensityWeightedLoss(**kwargs)


def test_config_round_trips_and_saves_with_a_model(tmp_path):
    loss = IntensityWeightedLoss(csi_weight=0.25, temperature=0.05)
    clone = IntensityWeightedLoss.from_config(json.loads(json.dumps(loss.get_config())))
    assert clone.get_config() == loss.get_config()
    model = registry.build_model("motioncast_tiny", height=16, width=16, input_frames=3,
                                 output_frames=3, hidden_dim=8)  # fmt: skip
    model.compile(loss=loss)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert reloaded.loss.get_config() == loss.get_config()


def test_named_losses_are_the_options_and_compile_builds_them():
    assert set(options.LOSSES) == {"auto", *losses.NAMED_LOSSES}
    model = registry.build_model("motioncast_tiny", height=16, width=16, hidden_dim=8)
    model.compile(loss="intensity_csi")
    assert isinstance(model.loss, IntensityWeightedLoss) and model.loss.csi_weight == 0.5
    model.compile(loss="auto")
    assert isinstance(model.loss, keras.losses.MeanSquaredError)
    with pytest.raises(ValueError, match="intensity_csi"):
        losses.get("balanced")
