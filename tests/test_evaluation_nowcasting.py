"""Tests for kerastp.evaluation.nowcasting: radar verification, pysteps conventions."""

import json
import math

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from kerastp.evaluation import (
    Contingency,
    NowcastingEvaluator,
    contingency,
    csi,
    far,
    fss,
    nowcasting,
    pod,
)

LOG1P_100 = math.log1p(100.0)


def _to_rain_rate(x):
    return np.expm1(np.asarray(x, dtype=np.float64) * LOG1P_100)


def _to_model_scale(rate):
    return np.log1p(np.asarray(rate, dtype=np.float64)) / LOG1P_100


def _hand_case():
    """Rain rates of shape (1, 2, 4, 4, 1) with hand-counted contingency tables.

    Lead 0 at 1 mm/h (events `> 1`): observed (0,1), (0,2), (2,0) - the 1.0 at (1,1) is not an
    event - forecast (0,1), (2,0): 2 hits, 1 miss, 0 false alarms, 13 correct negatives.
    At 0.5 mm/h: 3 hits, 1 miss, 2 false alarms, 10 correct negatives. At 5 mm/h: 1 miss.
    Lead 1: dry observation, one forecast pixel of 3 mm/h.
    """
    true = np.zeros((1, 2, 4, 4, 1))
    pred = np.zeros((1, 2, 4, 4, 1))
    true[0, 0, :, :, 0] = [[0, 2, 2, 0], [0, 1, 0, 0], [6, 0, 0, 0], [0, 0, 0, 0.4]]
    pred[0, 0, :, :, 0] = [[0, 2, 0, 0], [1, 1, 0, 0], [4, 0, 0, 0], [0, 0, 0, 0.6]]
    pred[0, 1, 3, 2, 0] = 3.0
    return true, pred


# Expected per-lead (hits, misses, false alarms, correct negatives) of `_hand_case`.
HAND_COUNTS = {
    0.5: ([3, 0], [1, 0], [2, 1], [10, 15]),
    1.0: ([2, 0], [1, 0], [0, 1], [13, 15]),
    5.0: ([0, 0], [1, 0], [0, 0], [15, 16]),
}


def _assert_same(actual, expected, path="result"):
    """Recursive equality of result dicts; floats to 1e-9 relative, None only matches None."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), path
        for key in expected:
            _assert_same(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_same(a, e, f"{path}[{i}]")
    elif expected is None:
        assert actual is None, f"{path}: {actual!r} is not None"
    else:
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12), path


def _rain_fields(rng, shape, wet=0.4):
    """Rain rates with dry areas, light rain and a few intense pixels."""
    rate = rng.gamma(0.8, 2.5, size=shape)
    rate[rng.random(shape) > wet] = 0.0
    return rate


def _brute_force_fss(true, pred, threshold, scale):
    """Per-lead FSS with explicit neighbourhood loops (scipy's window offsets, zeros outside)."""
    n, t, h, w, c = true.shape
    before = scale // 2
    offsets = range(-before, scale - before)
    sums = np.zeros((3, t))
    for lead in range(t):
        for seq in range(n):
            for ch in range(c):
                fields = []
                for array in (pred, true):
                    binary = array[seq, lead, :, :, ch] >= threshold
                    frac = np.zeros((h, w))
                    for i in range(h):
                        for j in range(w):
                            total = 0
                            for di in offsets:
                                for dj in offsets:
                                    if 0 <= i + di < h and 0 <= j + dj < w:
                                        total += binary[i + di, j + dj]
                            frac[i, j] = total / scale**2
                    fields.append(frac)
                pf, po = fields
                sums[:, lead] += [np.sum(pf * pf), np.sum(pf * po), np.sum(po * po)]
    return 1.0 - (sums[0] - 2.0 * sums[1] + sums[2]) / (sums[0] + sums[2])


# ---------------------------------------------------------------------------------------------
# Contingency tables and CSI / POD / FAR
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", sorted(HAND_COUNTS))
def test_contingency_hand_counts(threshold):
    true, pred = _hand_case()
    table = contingency(true, pred, threshold)
    assert isinstance(table, Contingency)
    for field, expected in zip(Contingency._fields, HAND_COUNTS[threshold], strict=True):
        np.testing.assert_array_equal(getattr(table, field), expected, err_msg=field)
        assert getattr(table, field).dtype == np.int64
    assert table.total() == tuple(sum(counts) for counts in HAND_COUNTS[threshold])


def test_contingency_event_is_strictly_above_threshold_like_pysteps():
    # pysteps' det_cat_fct_accum uses `> thr`: a value equal to the threshold is no event.
    true = np.full((1, 1, 2, 2, 1), 1.0)
    pred = np.full((1, 1, 2, 2, 1), 1.0)
    pred[0, 0, 0, 0, 0] = np.nextafter(1.0, 2.0)
    table = contingency(true, pred, 1.0)
    assert table.total() == (0, 0, 1, 3)


def test_scores_hand_values_total_and_nan():
    true, pred = _hand_case()
    table = contingency(true, pred, 1.0)
    np.testing.assert_allclose(csi(table), [2 / 3, 0.0])
    np.testing.assert_allclose(pod(table), [2 / 3, np.nan])
    np.testing.assert_allclose(far(table), [0.0, 1.0])
    # Horizon scores pool the counts: H=2, M=1, F=1 (the mean of per-lead CSIs would be 1/3).
    total = table.total()
    assert csi(total) == pytest.approx(0.5)
    assert pod(total) == pytest.approx(2 / 3)
    assert far(total) == pytest.approx(1 / 3)
    assert isinstance(csi(total), float)
    # Nothing observed nor forecast at 5 mm/h on lead 1: every denominator is 0.
    dry = contingency(true, pred, 5.0)
    assert np.isnan(csi(dry)[1]) and np.isnan(pod(dry)[1]) and np.isnan(far(dry)[1])
    assert csi(dry)[0] == 0.0 and pod(dry)[0] == 0.0 and np.isnan(far(dry)[0])


def test_scores_accept_scalars_and_dicts():
    table = Contingency(hits=3, misses=1, false_alarms=2, correct_negatives=10)
    assert (csi(table), pod(table), far(table)) == pytest.approx((0.5, 0.75, 0.4))
    as_dict = {"hits": [3, 0], "misses": [1, 0], "false_alarms": [2, 0]}
    np.testing.assert_allclose(csi(as_dict), [0.5, np.nan])
    assert math.isnan(csi(Contingency(0, 0, 0, 7)))


# ---------------------------------------------------------------------------------------------
# FSS
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 12])
def test_box_filter_matches_scipy_uniform_filter(size):
    rng = np.random.default_rng(size)
    frames = rng.random((3, 9, 7, 2))
    frames[1] = frames[1] > 0.6
    ours = nowcasting._uniform_filter(frames, size)
    for f in range(frames.shape[0]):
        for c in range(frames.shape[-1]):
            expected = uniform_filter(frames[f, :, :, c], size=size, mode="constant", cval=0.0)
            np.testing.assert_allclose(ours[f, :, :, c], expected, rtol=0, atol=1e-12)


def test_fss_identical_fields_score_one():
    rate = _rain_fields(np.random.default_rng(1), (2, 3, 12, 12, 1))
    for scale in (1, 4, 8):
        np.testing.assert_allclose(fss(rate, rate, 1.0, scale), 1.0)


def test_fss_disjoint_fields_score_zero_at_scale_one_and_nan_when_empty():
    true = np.zeros((1, 3, 6, 6, 1))
    pred = np.zeros((1, 3, 6, 6, 1))
    true[0, 0, 1, 1] = 2.0
    pred[0, 0, 1, 2] = 2.0  # neighbours: disjoint pixels, overlapping neighbourhoods
    true[0, 1, 4, 4] = 2.0  # lead 1: forecast dry, observation wet
    # lead 2: both dry -> undefined
    np.testing.assert_allclose(fss(true, pred, 1.0, 1), [0.0, 0.0, np.nan])
    # 3x3 neighbourhoods share 6 of 9 pixels: 1 - (2/9 - 12/81) / (2/9) = 2/3.
    np.testing.assert_allclose(fss(true, pred, 1.0, 3), [2 / 3, 0.0, np.nan])


def test_fss_event_is_at_or_above_threshold_like_pysteps():
    # pysteps' fss_accum uses `>= thr` (unlike its contingency table).
    true = np.zeros((1, 1, 4, 4, 1))
    true[0, 0, 2, 2] = 1.0
    assert fss(true, true, 1.0, 1)[0] == 1.0
    assert np.isnan(fss(true, true, np.nextafter(1.0, 2.0), 1)[0])


@pytest.mark.parametrize("scale", [1, 2, 3, 8])
def test_fss_matches_brute_force(scale):
    rng = np.random.default_rng(10 + scale)
    true = _rain_fields(rng, (2, 2, 10, 9, 2))
    pred = _rain_fields(rng, (2, 2, 10, 9, 2))
    pred[:, :, :5] = true[:, :, :5]  # partly right forecast, so the scores are not trivial
    expected = _brute_force_fss(true, pred, 1.0, scale)
    assert np.all((expected > 0.05) & (expected < 0.999))
    np.testing.assert_allclose(fss(true, pred, 1.0, scale), expected, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# NowcastingEvaluator
# ---------------------------------------------------------------------------------------------


def test_evaluator_hand_case_structure_and_json():
    true, pred = _hand_case()
    evaluator = NowcastingEvaluator(fss_scale=1)
    evaluator.update(true, pred)
    result = evaluator.result()
    assert result["n_sequences"] == 1 and result["lead_times"] == 2
    assert result["thresholds"] == [0.5, 1.0, 5.0]
    assert (result["fss_threshold"], result["fss_scale"]) == (1.0, 1)
    for key, threshold in (("0.5", 0.5), ("1.0", 1.0), ("5.0", 5.0)):
        hits, misses, false_alarms, negatives = HAND_COUNTS[threshold]
        assert result["contingency"][key] == {
            "hits": hits,
            "misses": misses,
            "false_alarms": false_alarms,
            "correct_negatives": negatives,
        }
    _assert_same(result["csi"]["1.0"], {"per_lead_time": [2 / 3, 0.0], "total": 0.5, "mean": 1 / 3})
    _assert_same(
        result["pod"]["1.0"], {"per_lead_time": [2 / 3, None], "total": 2 / 3, "mean": 2 / 3}
    )
    _assert_same(result["far"]["1.0"], {"per_lead_time": [0.0, 1.0], "total": 1 / 3, "mean": 0.5})
    _assert_same(result["csi"]["5.0"], {"per_lead_time": [0.0, None], "total": 0.0, "mean": 0.0})
    _assert_same(result["far"]["5.0"], {"per_lead_time": [None, None], "total": None, "mean": None})
    # FSS at 1 mm/h (>= 1) and scale 1: lead 0 observed 4 (incl. the 1.0), forecast 4 incl.
    # (1,0)=1.0, 3 shared -> 1 - 2/8; lead 1: forecast only -> 0; pooled: 1 - 3/9.
    _assert_same(result["fss"], {"per_lead_time": [0.75, 0.0], "total": 2 / 3, "mean": 0.375})
    squared = (pred - true) ** 2
    _assert_same(
        result["mse"],
        {
            "per_lead_time": [float(np.mean(squared[:, 0])), float(np.mean(squared[:, 1]))],
            "total": float(np.mean(squared)),
            "mean": float(np.mean(squared)),
        },
    )
    assert result["mae"]["total"] == pytest.approx(float(np.mean(np.abs(pred - true))))
    assert result["mse_rain_rate"] == result["mse"]  # inverse=None: inputs are rain rates
    json.loads(json.dumps(result, allow_nan=False))


def test_evaluator_applies_inverse_to_both_inputs():
    rates_true = np.array([0.0, 0.7, 2.0, 10.0, 0.3, 1.5])
    rates_pred = np.array([0.6, 0.0, 2.5, 4.0, 0.0, 1.2])
    true = _to_model_scale(rates_true).reshape(1, 1, 2, 3, 1)
    pred = _to_model_scale(rates_pred).reshape(1, 1, 2, 3, 1)
    evaluator = NowcastingEvaluator(fss_scale=1, inverse=_to_rain_rate)
    evaluator.update(true, pred)
    result = evaluator.result()
    # In mm/h: > 0.5 observed {0.7, 2, 10, 1.5}, forecast {0.6, 2.5, 4, 1.2}: H=3 M=1 F=1.
    assert result["contingency"]["0.5"]["hits"] == [3]
    assert result["contingency"]["0.5"]["misses"] == [1]
    assert result["contingency"]["0.5"]["false_alarms"] == [1]
    # > 5: observed {10}, forecast none.
    assert result["contingency"]["5.0"]["misses"] == [1]
    assert result["contingency"]["5.0"]["hits"] == [0]
    assert result["mse_rain_rate"]["total"] == pytest.approx(
        np.mean((rates_pred - rates_true) ** 2), rel=1e-9
    )
    assert result["mse"]["total"] == pytest.approx(np.mean((pred - true) ** 2), rel=1e-9)
    assert result["mae"]["total"] == pytest.approx(np.mean(np.abs(pred - true)), rel=1e-9)
    # Same scores as evaluating the rain rates directly, apart from the model-scale errors.
    direct = NowcastingEvaluator(fss_scale=1)
    direct.update(_to_rain_rate(true), _to_rain_rate(pred))
    expected = direct.result()
    for key in ("mse", "mae"):
        expected[key] = result[key]
    _assert_same(result, expected)


def test_evaluator_streaming_equals_one_batch_and_the_array_functions():
    rng = np.random.default_rng(3)
    rates_true = _rain_fields(rng, (5, 3, 16, 12, 1))
    rates_pred = np.where(rng.random(rates_true.shape) < 0.7, rates_true, 0.0) * 1.3
    true = _to_model_scale(np.clip(rates_true, 0.0, 100.0)).astype(np.float32)
    pred = _to_model_scale(np.clip(rates_pred, 0.0, 100.0)).astype(np.float32)

    whole = NowcastingEvaluator(inverse=_to_rain_rate)
    whole.update(true, pred)
    streamed = NowcastingEvaluator(inverse=_to_rain_rate)
    streamed.update(true[:3], pred[:3])
    streamed.update(true[3:], pred[3:])
    expected = whole.result()
    _assert_same(streamed.result(), expected)
    assert expected["n_sequences"] == 5

    rain_true, rain_pred = _to_rain_rate(true), _to_rain_rate(pred)
    for threshold in (0.5, 1.0, 5.0):
        table = contingency(rain_true, rain_pred, threshold)
        entry = expected["csi"][str(threshold)]
        np.testing.assert_allclose(entry["per_lead_time"], csi(table))
        assert entry["total"] == pytest.approx(csi(table.total()))
        assert 0.0 < entry["total"] < 1.0
    np.testing.assert_allclose(expected["fss"]["per_lead_time"], fss(rain_true, rain_pred, 1.0, 8))
    assert 0.0 < expected["fss"]["total"] < 1.0

    streamed.reset()
    with pytest.raises(ValueError, match="at least one update"):
        streamed.result()


def test_evaluator_failed_update_leaves_state_unchanged():
    true, pred = _hand_case()
    evaluator = NowcastingEvaluator(fss_scale=1)
    evaluator.update(true, pred)
    before = evaluator.result()
    calls = []

    def bad_inverse(x):
        calls.append(x.shape)
        return np.full(x.shape, np.nan)

    evaluator.inverse = bad_inverse
    with pytest.raises(ValueError, match=r"`inverse` returned 32 non-finite"):
        evaluator.update(true, pred)
    assert calls
    evaluator.inverse = None
    _assert_same(evaluator.result(), before)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

_GOOD = np.zeros((1, 2, 4, 4, 1))
_NAN = _GOOD.copy()
_NAN[0, 0, 0, 0, 0] = np.nan
_INF = _GOOD.copy()
_INF[0, 1, 1, 1, 0] = np.inf


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: contingency(_GOOD, np.zeros((1, 2, 4, 5, 1)), 1.0), r"same shape"),
        (lambda: contingency(_GOOD[0], _GOOD[0], 1.0), r"`pred` must have rank 5"),
        (lambda: contingency(_GOOD, _NAN, 1.0), r"`pred` holds 1 non-finite"),
        (lambda: fss(_INF, _GOOD, 1.0, 3), r"`true` holds 1 non-finite"),
        (lambda: contingency(_GOOD, _GOOD, -0.5), r"`threshold` must be a finite number >= 0"),
        (lambda: contingency(_GOOD, _GOOD, np.nan), r"`threshold` must be a finite number"),
        (lambda: fss(_GOOD, _GOOD, -1.0, 3), r"`threshold` must be a finite number >= 0"),
        (lambda: fss(_GOOD, _GOOD, 1.0, 0), r"`scale` must be an int >= 1.*received 0"),
        (lambda: fss(_GOOD, _GOOD, 1.0, 2.5), r"`scale` must be an int >= 1.*received 2.5"),
        (lambda: NowcastingEvaluator(thresholds=(0.5, -1.0)), r"`thresholds` must be a finite"),
        (lambda: NowcastingEvaluator(thresholds=()), r"`thresholds` must be a non-empty"),
        (lambda: NowcastingEvaluator(thresholds=1.0), r"`thresholds` must be a non-empty"),
        (lambda: NowcastingEvaluator(thresholds=(1.0, 1)), r"`thresholds` must be distinct"),
        (lambda: NowcastingEvaluator(fss_threshold=-2), r"`fss_threshold` must be a finite"),
        (lambda: NowcastingEvaluator(fss_scale=0), r"`fss_scale` must be an int >= 1"),
        (lambda: NowcastingEvaluator(fss_scale=True), r"`fss_scale` must be an int >= 1"),
        (lambda: NowcastingEvaluator(inverse="log"), r"`inverse` must be None or a callable"),
        (lambda: NowcastingEvaluator().update(_GOOD, _NAN), r"`pred` holds 1 non-finite"),
        (
            lambda: NowcastingEvaluator(inverse=lambda x: x[0]).update(_GOOD, _GOOD),
            r"`inverse` must return an array of the shape it receives",
        ),
        (lambda: csi({"hits": 1, "misses": 2}), r"`table` must be a `Contingency` or a dict"),
        (lambda: pod(np.zeros(3)), r"`table` must be a `Contingency`"),
    ],
)
def test_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_evaluator_rejects_a_changed_frame_shape():
    evaluator = NowcastingEvaluator()
    evaluator.update(_GOOD, _GOOD)
    with pytest.raises(
        ValueError, match=r"same \(T, H, W, C\); earlier batches had \(2, 4, 4, 1\)"
    ):
        evaluator.update(np.zeros((1, 3, 4, 4, 1)), np.zeros((1, 3, 4, 4, 1)))
