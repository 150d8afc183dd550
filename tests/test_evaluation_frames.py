"""Tests for kerastp.evaluation.frames: hand-computed values, scikit-image parity, streaming."""

import subprocess
import sys

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from kerastp.evaluation import (
    ForecastEvaluator,
    evaluate_arrays,
    frames,
    mae,
    mse,
    per_pixel_mae,
    per_pixel_mse,
    psnr,
    ssim,
)

ARRAY_METRICS = [mse, mae, per_pixel_mse, per_pixel_mae, ssim, psnr]


def _frames(values):
    """(H, W) nested list -> array of shape (1, 1, H, W, 1)."""
    return np.asarray(values, dtype=np.float64)[None, None, :, :, None]


def _skimage_ssim(pred, true, data_range=2.0):
    """Reference: OpenSTL's scikit-image call per (H, W, C) frame on the clipped prediction."""
    pred = np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)
    true = np.asarray(true, dtype=np.float64)
    values = [
        structural_similarity(
            pred[n, t],
            true[n, t],
            win_size=7,
            data_range=data_range,
            channel_axis=-1,
            gaussian_weights=False,
            use_sample_covariance=True,
            K1=0.01,
            K2=0.03,
        )
        for n in range(pred.shape[0])
        for t in range(pred.shape[1])
    ]
    return float(np.mean(values))


def _noisy_pair(rng, shape, noise=0.15):
    """A ground truth and a correlated prediction that sometimes leaves [0, 1]."""
    true = rng.random(shape)
    pred = true + noise * rng.standard_normal(shape)
    return pred, true


# ---------------------------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------------------------


def test_mse_mae_sum_over_pixels_of_one_frame():
    pred = _frames([[0.5, 0.25], [0.25, 0.0]])
    true = np.zeros_like(pred)
    # Squared errors 0.25 + 0.0625 + 0.0625 + 0 = 0.375; absolute 0.5 + 0.25 + 0.25 = 1.0.
    assert mse(pred, true) == pytest.approx(0.375, abs=1e-12)
    assert mae(pred, true) == pytest.approx(1.0, abs=1e-12)
    assert per_pixel_mse(pred, true) == pytest.approx(0.375 / 4, abs=1e-12)
    assert per_pixel_mae(pred, true) == pytest.approx(0.25, abs=1e-12)


def test_mse_mae_average_frame_sums_over_frames():
    first = [[0.5, 0.25], [0.25, 0.0]]  # squared sum 0.375, absolute sum 1.0
    second = [[0.5, 0.5], [0.5, 0.5]]  # squared sum 1.0, absolute sum 2.0
    pred = np.concatenate([_frames(first), _frames(second)], axis=1)  # (1, 2, 2, 2, 1)
    true = np.zeros_like(pred)
    assert mse(pred, true) == pytest.approx((0.375 + 1.0) / 2, abs=1e-12)
    assert mae(pred, true) == pytest.approx((1.0 + 2.0) / 2, abs=1e-12)
    # Channels are summed too: the same errors split over two channels give the same sums.
    pred_2c = pred.reshape(1, 2, 2, 1, 2)
    assert mse(pred_2c, np.zeros_like(pred_2c)) == pytest.approx(0.6875, abs=1e-12)


def test_psnr_of_constant_errors():
    true = np.full((1, 2, 4, 5, 1), 0.3)
    pred = true.copy()
    pred[0, 0] += 0.1  # 20 * log10(1 / 0.1) = 20 dB
    pred[0, 1] -= 0.01  # 40 dB
    assert psnr(pred[:, :1], true[:, :1]) == pytest.approx(20.0, abs=1e-9)
    assert psnr(pred[:, 1:], true[:, 1:]) == pytest.approx(40.0, abs=1e-9)
    # The mean of the frame PSNRs, not the PSNR of the mean MSE (which would be ~23 dB).
    assert psnr(pred, true) == pytest.approx(30.0, abs=1e-9)


@pytest.mark.filterwarnings("error")  # inf by design, without a divide-by-zero warning
def test_psnr_of_an_exact_frame_is_inf():
    true = np.full((2, 1, 3, 3, 1), 0.25)
    assert psnr(true, true) == np.inf


def test_clipping_applies_to_ssim_and_psnr_but_not_mse():
    true = np.full((1, 1, 8, 8, 1), 0.9)
    pred = np.full((1, 1, 8, 8, 1), 1.5)
    # Unclipped: every pixel is 0.6 off.
    assert mse(pred, true) == pytest.approx(64 * 0.36, rel=1e-12)
    assert mae(pred, true) == pytest.approx(64 * 0.6, rel=1e-12)
    # Clipped to 1.0: every pixel is 0.1 off -> 20 dB (unclipped would be ~4.4 dB).
    assert psnr(pred, true) == pytest.approx(20.0, abs=1e-9)
    # Clipped prediction equals the target exactly.
    assert psnr(pred, np.ones_like(true)) == np.inf
    assert ssim(pred, np.ones_like(true)) == pytest.approx(1.0, abs=1e-12)
    assert mse(pred, np.ones_like(true)) == pytest.approx(64 * 0.25, rel=1e-12)
    # Below zero too.
    assert psnr(-pred, np.full_like(true, 0.1)) == pytest.approx(20.0, abs=1e-9)


def test_ssim_of_constant_frames_uses_data_range_two():
    # Constant frames have zero variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) with
    # C1 = (0.01 * 2.0)^2 = 4e-4. With data_range 1.0 it would be 1e-4 / 0.2501 instead.
    pred = np.full((1, 1, 9, 7, 1), 0.5)
    true = np.zeros_like(pred)
    assert ssim(pred, true) == pytest.approx(4e-4 / (0.25 + 4e-4), rel=1e-9)
    a, b = 0.5, 0.25
    expected = (2 * a * b + 4e-4) / (a * a + b * b + 4e-4)
    assert ssim(pred, np.full_like(pred, b)) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# SSIM parity with scikit-image
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 16, 16, 1), (1, 2, 12, 20, 1), (2, 2, 7, 9, 3), (1, 3, 24, 10, 3), (1, 1, 7, 7, 2)],
)
def test_ssim_matches_skimage(shape):
    rng = np.random.default_rng(sum(shape))
    pred, true = _noisy_pair(rng, shape)
    expected = _skimage_ssim(pred, true)
    assert 0.1 < expected < 0.99  # a meaningful, non-trivial SSIM
    assert ssim(pred, true) == pytest.approx(expected, abs=1e-6)
    # Unrelated images too (SSIM near zero).
    other = rng.random(shape)
    assert ssim(other, true) == pytest.approx(_skimage_ssim(other, true), abs=1e-6)


def test_ssim_differs_from_data_range_one():
    rng = np.random.default_rng(3)
    pred, true = _noisy_pair(rng, (1, 2, 16, 16, 1), noise=0.3)
    ours = ssim(pred, true)
    assert ours == pytest.approx(_skimage_ssim(pred, true, data_range=2.0), abs=1e-6)
    assert abs(ours - _skimage_ssim(pred, true, data_range=1.0)) > 1e-3


def test_ssim_float32_input_matches_skimage_in_float64():
    rng = np.random.default_rng(11)
    pred, true = _noisy_pair(rng, (2, 2, 16, 12, 1))
    pred32, true32 = pred.astype(np.float32), true.astype(np.float32)
    assert ssim(pred32, true32) == pytest.approx(_skimage_ssim(pred32, true32), abs=1e-6)


def test_ssim_of_identical_images_is_one():
    rng = np.random.default_rng(5)
    true = rng.random((2, 3, 10, 13, 3))
    assert ssim(true, true) == pytest.approx(1.0, abs=1e-12)


def test_ssim_is_computed_over_chunks(monkeypatch):
    rng = np.random.default_rng(8)
    pred, true = _noisy_pair(rng, (3, 4, 9, 8, 2))
    whole = ssim(pred, true)
    monkeypatch.setattr(frames, "_CHUNK_VALUES", 9 * 8 * 2 * 5)  # 5 frames per chunk
    assert ssim(pred, true) == pytest.approx(whole, abs=1e-14)
    assert ssim(pred, true) == pytest.approx(_skimage_ssim(pred, true), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Streaming evaluator
# ---------------------------------------------------------------------------------------------


def _one_shot(pred, true):
    return {
        "mse": mse(pred, true),
        "mae": mae(pred, true),
        "ssim": ssim(pred, true),
        "psnr": psnr(pred, true),
        "per_pixel_mse": per_pixel_mse(pred, true),
        "per_pixel_mae": per_pixel_mae(pred, true),
    }


@pytest.mark.parametrize("batch_sizes", [(7,), (3, 3, 1), (1, 5, 1)])
def test_streaming_equals_one_shot(batch_sizes):
    rng = np.random.default_rng(21)
    pred, true = _noisy_pair(rng, (7, 4, 10, 12, 2))
    evaluator = ForecastEvaluator()
    start = 0
    for size in batch_sizes:
        evaluator.update(true[start : start + size], pred[start : start + size])
        start += size
    result = evaluator.result()
    assert result["n_sequences"] == 7
    for key, value in _one_shot(pred, true).items():
        assert isinstance(result[key], float)
        assert result[key] == pytest.approx(value, rel=1e-10), key
    for key, fn in [("mse", mse), ("mae", mae), ("ssim", ssim), ("psnr", psnr)]:
        curve = result[f"{key}_per_frame"]
        assert isinstance(curve, list) and len(curve) == 4
        assert np.mean(curve) == pytest.approx(result[key], rel=1e-10)
        for t in range(4):
            lead = fn(pred[:, t : t + 1], true[:, t : t + 1])
            assert curve[t] == pytest.approx(lead, rel=1e-10), (key, t)


def test_per_frame_curves_follow_error_growth():
    rng = np.random.default_rng(2)
    true = rng.random((3, 3, 8, 8, 1))
    noise = rng.standard_normal(true.shape) * np.array([0.01, 0.05, 0.2])[None, :, None, None, None]
    result = evaluate_arrays(true, true + noise, batch_size=2)
    assert np.all(np.diff(result["mse_per_frame"]) > 0)
    assert np.all(np.diff(result["mae_per_frame"]) > 0)
    assert np.all(np.diff(result["ssim_per_frame"]) < 0)
    assert np.all(np.diff(result["psnr_per_frame"]) < 0)


def test_evaluate_arrays_equals_evaluator_and_one_shot():
    rng = np.random.default_rng(9)
    pred, true = _noisy_pair(rng, (5, 3, 8, 9, 1))
    result = evaluate_arrays(true, pred, batch_size=2)
    evaluator = ForecastEvaluator()
    evaluator.update(true, pred)
    for key, value in evaluator.result().items():
        assert result[key] == pytest.approx(value, rel=1e-10), key
    assert result["mse"] == pytest.approx(mse(pred, true), rel=1e-10)


def test_evaluator_reset_and_empty_result():
    rng = np.random.default_rng(4)
    pred, true = _noisy_pair(rng, (2, 2, 8, 8, 1))
    evaluator = ForecastEvaluator()
    with pytest.raises(ValueError, match="at least one update"):
        evaluator.result()
    evaluator.update(true + 0.5, pred)
    evaluator.reset()
    with pytest.raises(ValueError, match="at least one update"):
        evaluator.result()
    evaluator.update(true, pred)
    assert evaluator.result()["mse"] == pytest.approx(mse(pred, true), rel=1e-12)
    assert evaluator.result()["n_sequences"] == 2


def test_evaluator_rejects_batches_of_another_frame_shape():
    rng = np.random.default_rng(6)
    evaluator = ForecastEvaluator()
    evaluator.update(rng.random((2, 3, 8, 8, 1)), rng.random((2, 3, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"same \(T, H, W, C\).*\(2, 4, 8, 8, 1\)"):
        evaluator.update(rng.random((2, 4, 8, 8, 1)), rng.random((2, 4, 8, 8, 1)))


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _good_pair():
    rng = np.random.default_rng(0)
    return rng.random((2, 2, 8, 8, 1)), rng.random((2, 2, 8, 8, 1))


def _evaluator_update(pred, true):
    ForecastEvaluator().update(true, pred)


def _evaluate_arrays(pred, true):
    evaluate_arrays(true, pred)


ALL_ENTRY_POINTS = [*ARRAY_METRICS, _evaluator_update, _evaluate_arrays]


@pytest.mark.parametrize("fn", ALL_ENTRY_POINTS)
def test_rejects_rank_four(fn):
    pred, true = _good_pair()
    with pytest.raises(ValueError, match=r"`pred` must have rank 5.*rank 4.*\(2, 8, 8, 1\)"):
        fn(pred[0], true)
    with pytest.raises(ValueError, match=r"`true` must have rank 5.*rank 4"):
        fn(pred, true[0])


@pytest.mark.parametrize("fn", ALL_ENTRY_POINTS)
def test_rejects_shape_mismatch(fn):
    pred, true = _good_pair()
    with pytest.raises(ValueError, match=r"same shape.*\(2, 2, 8, 7, 1\).*\(2, 2, 8, 8, 1\)"):
        fn(pred[:, :, :, :7], true)


@pytest.mark.parametrize("fn", ALL_ENTRY_POINTS)
def test_rejects_non_finite_values_naming_the_argument(fn):
    pred, true = _good_pair()
    pred[0, 0, 0, 0, 0] = np.nan
    pred[1, 1, 2, 3, 0] = np.inf
    with pytest.raises(ValueError, match=r"`pred` holds 2 non-finite"):
        fn(pred, true)
    pred, true = _good_pair()
    true[0, 1, 0, 0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"`true` holds 1 non-finite") as info:
        fn(pred, true)
    assert "`pred` holds" not in str(info.value)


@pytest.mark.parametrize("fn", ALL_ENTRY_POINTS)
def test_rejects_empty_arrays(fn):
    empty = np.zeros((0, 2, 8, 8, 1))
    with pytest.raises(ValueError, match=r"empty.*\(0, 2, 8, 8, 1\)"):
        fn(empty, empty)


@pytest.mark.parametrize("fn", [ssim, _evaluator_update, _evaluate_arrays])
def test_ssim_rejects_frames_smaller_than_window(fn):
    rng = np.random.default_rng(1)
    small = rng.random((1, 2, 6, 9, 1))
    with pytest.raises(ValueError, match=r"at least 7x7.*6x9"):
        fn(small, small)


def test_rejects_non_numeric_dtype():
    pred, true = _good_pair()
    with pytest.raises(ValueError, match=r"`true` must hold real numbers.*dtype=bool"):
        mse(pred, true > 0.5)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_evaluate_arrays_rejects_bad_batch_size(batch_size):
    pred, true = _good_pair()
    with pytest.raises(ValueError, match="`batch_size` must be a positive int"):
        evaluate_arrays(true, pred, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# The package
# ---------------------------------------------------------------------------------------------


def test_evaluation_imports_without_tensorflow_or_keras():
    # Scoring arrays must work where only NumPy is installed; kerastp.metrics (Keras) is apart.
    code = (
        "import sys, kerastp.evaluation as e; "
        "e.ssim, e.evaluate_arrays, e.NowcastingEvaluator; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
