"""Tests for kerastp.metrics: the Keras metrics report OpenSTL's per-frame MSE / MAE."""

import keras
import numpy as np
import pytest

from kerastp.evaluation import mae, mse
from kerastp.metrics import FrameMAE, FrameMSE, frame_mae, frame_mse


def _noisy_pair(rng, shape, noise=0.15):
    """A ground truth and a correlated prediction that sometimes leaves [0, 1]."""
    true = rng.random(shape)
    pred = true + noise * rng.standard_normal(shape)
    return pred, true


def test_frame_functions_return_per_frame_sums():
    rng = np.random.default_rng(12)
    pred, true = _noisy_pair(rng, (2, 3, 4, 5, 2))
    pred, true = pred.astype("float32"), true.astype("float32")
    sq = keras.ops.convert_to_numpy(frame_mse(true, pred))
    ab = keras.ops.convert_to_numpy(frame_mae(true, pred))
    assert sq.shape == (2, 3) and ab.shape == (2, 3)
    np.testing.assert_allclose(sq, ((pred - true) ** 2).sum(axis=(2, 3, 4)), rtol=1e-5)
    np.testing.assert_allclose(ab, np.abs(pred - true).sum(axis=(2, 3, 4)), rtol=1e-5)


@pytest.mark.parametrize(("cls", "reference"), [(FrameMSE, mse), (FrameMAE, mae)])
def test_keras_metric_over_batches_equals_array_metric(cls, reference):
    rng = np.random.default_rng(13)
    pred, true = _noisy_pair(rng, (5, 3, 8, 6, 1), noise=0.3)
    pred, true = pred.astype("float32"), true.astype("float32")
    metric = cls()
    metric.update_state(true[:2], pred[:2])
    metric.update_state(true[2:], pred[2:])  # unequal batch sizes
    value = float(keras.ops.convert_to_numpy(metric.result()))
    assert value == pytest.approx(reference(pred, true), rel=1e-5)
    metric.reset_state()
    metric.update_state(true[:1], pred[:1])
    value = float(keras.ops.convert_to_numpy(metric.result()))
    assert value == pytest.approx(reference(pred[:1], true[:1]), rel=1e-5)


@pytest.mark.parametrize(
    ("cls", "default_name"), [(FrameMSE, "frame_mse"), (FrameMAE, "frame_mae")]
)
def test_keras_metric_config_round_trip(cls, default_name):
    assert cls().name == default_name
    metric = cls(name="custom", dtype="float32")
    config = metric.get_config()
    assert config == {"name": "custom", "dtype": "float32"}
    clone = cls.from_config(config)
    assert type(clone) is cls and clone.name == "custom"

    serialized = keras.saving.serialize_keras_object(metric)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is cls
    assert restored.get_config() == config

    rng = np.random.default_rng(14)
    true = rng.random((2, 2, 4, 4, 1)).astype("float32")
    pred = rng.random((2, 2, 4, 4, 1)).astype("float32")
    metric.update_state(true, pred)
    restored.update_state(true, pred)
    assert float(keras.ops.convert_to_numpy(restored.result())) == pytest.approx(
        float(keras.ops.convert_to_numpy(metric.result())), rel=1e-6
    )


def test_frame_function_rejects_wrong_rank():
    x = np.zeros((2, 4, 4, 1), dtype="float32")
    with pytest.raises(ValueError, match=r"`y_pred` must have rank 5.*\(2, 4, 4, 1\)"):
        frame_mse(x, x)
