"""Radar nowcasting verification with pysteps' conventions (`pysteps.verification`).

Scores rain rates (mm/h) given as channels-last sequences `(N, T, H, W, C)`, in float64:

- `contingency`: hits / misses / false alarms / correct negatives per lead time, an event being
  a value STRICTLY above the threshold (`> thr`, as pysteps' `det_cat_fct_accum`);
  `csi` / `pod` / `far` from such counts, NaN where the denominator is 0.
- `fss`: fractions skill score per lead time, an event being a value AT OR above the threshold
  (`>= thr`, as pysteps' `fss_accum`), fractions from a `scale x scale` box filter with zero
  padding (scipy's `uniform_filter(..., mode="constant")` window convention, computed here with
  NumPy), sums pooled over every frame of a lead time as `fss_accum` / `fss_compute` do.
- `NowcastingEvaluator` streams all of them plus the per-pixel MSE / MAE (model scale) and the
  per-pixel MSE in mm/h over batches of model-scale sequences.

Inputs are checked as the frame metrics check theirs (`kerastp.evaluation.frames`).

Reference:
- [Roberts and Lean, 2008, "Scale-Selective Verification of Rainfall Accumulations from
  High-Resolution Forecasts of Convective Events"](https://doi.org/10.1175/2007MWR2123.1),
  Monthly Weather Review (the FSS).
- [Pulkkinen et al., 2019, "Pysteps: an open-source Python library for probabilistic
  precipitation nowcasting (v1.0)"](https://doi.org/10.5194/gmd-12-4185-2019), GMD.
"""

from typing import NamedTuple

import numpy as np

from kerastp.evaluation.frames import _CHUNK_VALUES, _describe, _validate_pair

__all__ = [
    "Contingency",
    "NowcastingEvaluator",
    "contingency",
    "csi",
    "far",
    "fss",
    "pod",
]


class Contingency(NamedTuple):
    """Contingency-table counts for one threshold, as returned by `contingency`.

    Each field holds one int64 count per lead time (an array of shape `(T,)`), or a Python int
    after `total()`. A plain tuple, so `hits, misses, false_alarms, correct_negatives = table`
    works too.
    """

    hits: np.ndarray
    misses: np.ndarray
    false_alarms: np.ndarray
    correct_negatives: np.ndarray

    def total(self):
        """The counts summed over lead times (the whole horizon), as Python ints."""
        return Contingency(*(int(np.sum(count)) for count in self))


def _check_threshold(value, name):
    """Returns `value` as a float after checking it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(
            f"`{name}` must be a finite number >= 0 (a rain rate in mm/h); received {value!r}."
        )
    if not np.isfinite(value) or value < 0:
        raise ValueError(
            f"`{name}` must be a finite number >= 0 (a rain rate in mm/h); received {value!r}."
        )
    return float(value)


def _check_scale(value, name):
    """Returns `value` as an int after checking it is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1 (pixels); received {value!r}.")
    return int(value)


def _sequence_chunks(shape):
    """Slices over axis 0 of a `(N, T, H, W, C)` array, a few MB of float64 each."""
    rows = max(1, _CHUNK_VALUES // max(1, int(np.prod(shape[1:]))))
    return [slice(start, start + rows) for start in range(0, shape[0], rows)]


def _counts(true, pred, threshold):
    """(4, T) int64: hits, misses, false alarms, correct negatives; events are `> threshold`."""
    observed = true > threshold
    forecast = pred > threshold
    axes = (0, 2, 3, 4)
    hits = np.count_nonzero(observed & forecast, axis=axes)
    misses = np.count_nonzero(observed & ~forecast, axis=axes)
    false_alarms = np.count_nonzero(~observed & forecast, axis=axes)
    values_per_lead = true.shape[0] * int(np.prod(true.shape[2:]))
    correct_negatives = values_per_lead - hits - misses - false_alarms
    return np.stack([hits, misses, false_alarms, correct_negatives]).astype(np.int64)


def _uniform_filter(frames, size):
    """Box mean over axes 1 and 2 of `(F, H, W, C)` frames with zeros outside the frame.

    Equals `scipy.ndimage.uniform_filter(frame, size, mode="constant", cval=0.0)` on each
    `(H, W)` field: output pixel `i` averages input pixels `i - size // 2` to
    `i + size - 1 - size // 2` (for even sizes the window reaches one pixel further back than
    forward, scipy's convention with `origin=0`), dividing by `size` per axis even where the
    window leaves the frame. Computed with cumulative sums (window sums exact for binary fields).
    """
    before = size // 2
    after = size - 1 - before
    out = np.asarray(frames, dtype=np.float64)
    for axis in (1, 2):
        length = out.shape[axis]
        zeros_shape = list(out.shape)
        zeros_shape[axis] = 1
        # csum[k] = sum of the first k values along the axis.
        csum = np.concatenate(
            [np.zeros(zeros_shape), np.cumsum(out, axis=axis)], axis=axis, dtype=np.float64
        )
        index = np.arange(length)
        upper = np.clip(index + after + 1, 0, length)
        lower = np.clip(index - before, 0, length)
        out = np.take(csum, upper, axis=axis) - np.take(csum, lower, axis=axis)
    return out / float(size * size)


def _fss_sums(true, pred, threshold, scale):
    """(3, T) float64: sums of Pf^2, Pf*Po and Po^2 over the frames of each lead time.

    Events are `>= threshold` (pysteps' `fss_accum`); each `(H, W)` field of every channel is
    filtered separately.
    """
    n, t = true.shape[:2]
    frame_shape = true.shape[2:]
    observed = _uniform_filter((true >= threshold).reshape((n * t,) + frame_shape), scale)
    forecast = _uniform_filter((pred >= threshold).reshape((n * t,) + frame_shape), scale)
    sums = [
        np.sum(forecast * forecast, axis=(1, 2, 3)),
        np.sum(forecast * observed, axis=(1, 2, 3)),
        np.sum(observed * observed, axis=(1, 2, 3)),
    ]
    return np.stack([s.reshape(n, t).sum(axis=0) for s in sums])


def _fss_from_sums(sums):
    """FSS = 1 - sum((Pf - Po)^2) / (sum(Pf^2) + sum(Po^2)); NaN where both fields are empty."""
    sum_ff, sum_fo, sum_oo = (np.asarray(s, dtype=np.float64) for s in sums)
    return 1.0 - _ratio(sum_ff - 2.0 * sum_fo + sum_oo, sum_ff + sum_oo)


def _ratio(numerator, denominator):
    """`numerator / denominator` in float64 with NaN where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out if out.ndim else float(out)


def _table_field(table, name):
    if isinstance(table, dict):
        if name not in table:
            raise ValueError(
                f"`table` must be a `Contingency` or a dict with keys 'hits', 'misses', "
                f"'false_alarms' (and 'correct_negatives'); received a dict with keys "
                f"{sorted(table)}."
            )
        return table[name]
    if not hasattr(table, name):
        raise ValueError(
            f"`table` must be a `Contingency` (from `contingency()`) or a dict of counts; "
            f"received {type(table).__name__}."
        )
    return getattr(table, name)


def contingency(true, pred, threshold):
    """Contingency table per lead time for rain-rate sequences, pysteps style.

    An event is a value strictly above `threshold`, as in pysteps'
    `verification.det_cat_fct_accum` (`pred > thr`, `obs > thr`); note that pysteps' FSS uses
    `>=` instead, and so does `fss` here. Counts are summed over sequences, pixels and channels.

    Args:
        true: array of shape `(N, T, H, W, C)`, observed rain rates (mm/h).
        pred: array of the same shape, forecast rain rates (mm/h).
        threshold: finite number >= 0, the rain-rate threshold in mm/h.

    Returns:
        `Contingency(hits, misses, false_alarms, correct_negatives)`, each an int64 array of
        shape `(T,)`; `table.total()` sums them over lead times.

    Example:

    ```python
    true = np.zeros((1, 2, 4, 4, 1))
    true[0, :, 0, :2] = 3.0
    pred = np.zeros((1, 2, 4, 4, 1))
    pred[0, :, 0, 1:3] = 3.0
    table = contingency(true, pred, threshold=1.0)
    table.hits, table.misses, table.false_alarms  # [1, 1], [1, 1], [1, 1]
    ```
    """
    pred, true = _validate_pair(pred, true)
    threshold = _check_threshold(threshold, "threshold")
    counts = np.zeros((4, true.shape[1]), dtype=np.int64)
    for rows in _sequence_chunks(true.shape):
        counts += _counts(
            np.asarray(true[rows], dtype=np.float64),
            np.asarray(pred[rows], dtype=np.float64),
            threshold,
        )
    return Contingency(*counts)


def csi(table):
    """Critical success index (threat score) `H / (H + M + F)`; NaN where `H + M + F == 0`.

    Args:
        table: a `Contingency` (or a dict with its field names) of per-lead-time counts, or of
            totals from `table.total()`.

    Returns:
        float64 array with one score per lead time, or a Python float for total counts. For the
        whole horizon use `csi(table.total())` (counts pooled over lead times), not the mean
        of the per-lead scores.

    Example:

    ```python
    csi(Contingency(hits=3, misses=1, false_alarms=2, correct_negatives=10))  # 0.5
    ```
    """
    hits = _table_field(table, "hits")
    misses = _table_field(table, "misses")
    false_alarms = _table_field(table, "false_alarms")
    return _ratio(hits, np.add(np.add(hits, misses), false_alarms))


def pod(table):
    """Probability of detection `H / (H + M)`; NaN where `H + M == 0` (no observed event).

    Args:
        table: a `Contingency` (or a dict with its field names) of per-lead-time or total
            counts.

    Returns:
        float64 array with one score per lead time, or a Python float for total counts.

    Example:

    ```python
    pod(Contingency(hits=3, misses=1, false_alarms=2, correct_negatives=10))  # 0.75
    ```
    """
    hits = _table_field(table, "hits")
    misses = _table_field(table, "misses")
    return _ratio(hits, np.add(hits, misses))


def far(table):
    """False alarm ratio `F / (H + F)`; NaN where `H + F == 0` (no forecast event).

    Args:
        table: a `Contingency` (or a dict with its field names) of per-lead-time or total
            counts.

    Returns:
        float64 array with one score per lead time, or a Python float for total counts.

    Example:

    ```python
    far(Contingency(hits=3, misses=1, false_alarms=2, correct_negatives=10))  # 0.4
    ```
    """
    hits = _table_field(table, "hits")
    false_alarms = _table_field(table, "false_alarms")
    return _ratio(false_alarms, np.add(hits, false_alarms))


def fss(true, pred, threshold, scale):
    """Fractions skill score per lead time, as pysteps' `fss_init` / `fss_accum` / `fss_compute`.

    Both fields become binary (`>= threshold`, pysteps' FSS convention), each `(H, W)` field
    (every frame and channel) is averaged by a `scale x scale` box with zero padding outside the
    frame (`scipy.ndimage.uniform_filter(size=scale, mode="constant", cval=0.0)`, including
    scipy's placement of even windows: offsets `-(scale // 2)` to `scale - 1 - scale // 2`), and
    for each lead time the sums are pooled over all its frames:
    `FSS = 1 - sum((Pf - Po)^2) / (sum(Pf^2) + sum(Po^2))`. NaN where neither field has an event
    in any frame of that lead time.

    Args:
        true: array of shape `(N, T, H, W, C)`, observed rain rates (mm/h).
        pred: array of the same shape, forecast rain rates (mm/h).
        threshold: finite number >= 0, the rain-rate threshold in mm/h.
        scale: int >= 1, the neighbourhood size in pixels (1 compares pixels directly).

    Returns:
        float64 array of shape `(T,)`. `NowcastingEvaluator` also reports the score pooled over
        the whole horizon.

    Example:

    ```python
    true = np.zeros((1, 1, 8, 8, 1))
    true[0, 0, 2, 2] = 5.0
    pred = np.zeros((1, 1, 8, 8, 1))
    pred[0, 0, 2, 3] = 5.0
    fss(true, pred, threshold=1.0, scale=1)  # [0.0]: disjoint at the pixel scale
    fss(true, pred, threshold=1.0, scale=3)  # [0.667]: they overlap in 3x3 neighbourhoods
    ```
    """
    pred, true = _validate_pair(pred, true)
    threshold = _check_threshold(threshold, "threshold")
    scale = _check_scale(scale, "scale")
    sums = np.zeros((3, true.shape[1]), dtype=np.float64)
    for rows in _sequence_chunks(true.shape):
        sums += _fss_sums(
            np.asarray(true[rows], dtype=np.float64),
            np.asarray(pred[rows], dtype=np.float64),
            threshold,
            scale,
        )
    return _fss_from_sums(sums)


def _json_float(value):
    """A Python float, or None for NaN (an undefined score) so the result is strict JSON."""
    value = float(value)
    return None if np.isnan(value) else value


def _score_entry(per_lead_time, total):
    """{"per_lead_time": [...], "total": x, "mean": y} with NaN written as None."""
    per_lead_time = np.asarray(per_lead_time, dtype=np.float64)
    defined = per_lead_time[~np.isnan(per_lead_time)]
    mean = float(np.mean(defined)) if defined.size else float("nan")
    return {
        "per_lead_time": [_json_float(v) for v in per_lead_time],
        "total": _json_float(total),
        "mean": _json_float(mean),
    }


class NowcastingEvaluator:
    """Streaming radar-nowcasting verification over batches of model-scale sequences.

    Accumulates, per lead time, the error sums, one contingency table per threshold and the FSS
    sums, so a test set is scored batch by batch; after any split into `update()` calls,
    `result()` equals one `update()` on the concatenated batches (up to float rounding).
    The defaults are the radar protocol: CSI / POD / FAR at 0.5, 1 and 5 mm/h, FSS at 1 mm/h
    over 8 pixels. Categorical scores use pysteps' conventions (`> threshold` for CSI / POD /
    FAR, `>= threshold` for FSS); see `contingency` and `fss`.

    Args:
        thresholds: non-empty sequence of distinct finite numbers >= 0, the rain-rate
            thresholds (mm/h) of the contingency scores.
        fss_threshold: finite number >= 0, the FSS rain-rate threshold (mm/h).
        fss_scale: int >= 1, the FSS neighbourhood size in pixels.
        inverse: None or a callable mapping a float64 model-scale array to rain rates in mm/h
            with the same shape (e.g. `lambda x: np.expm1(x * np.log1p(100.0))` for the radar
            data). It is applied to `true` and to the unclipped `pred` before the contingency
            scores, the FSS and the mm/h MSE; clip inside it if wanted. None: the inputs are
            already rain rates (and the "model scale" errors are then in mm/h too).

    Example:

    ```python
    rng = np.random.default_rng(0)
    true = rng.random((4, 3, 16, 16, 1)) * 0.5
    pred = np.clip(true + 0.05 * rng.standard_normal(true.shape), 0.0, 1.0)
    evaluator = NowcastingEvaluator(inverse=lambda x: np.expm1(x * np.log1p(100.0)))
    for start in range(0, 4, 2):
        evaluator.update(true[start : start + 2], pred[start : start + 2])
    result = evaluator.result()
    result["csi"]["1.0"]["total"], result["fss"]["per_lead_time"]  # float, list of 3 floats
    ```
    """

    def __init__(self, thresholds=(0.5, 1.0, 5.0), fss_threshold=1.0, fss_scale=8, inverse=None):
        if isinstance(thresholds, str | bytes) or not hasattr(thresholds, "__iter__"):
            raise ValueError(
                "`thresholds` must be a non-empty sequence of rain rates in mm/h; received "
                f"{thresholds!r}."
            )
        checked = tuple(_check_threshold(value, "thresholds") for value in thresholds)
        if not checked:
            raise ValueError(
                "`thresholds` must be a non-empty sequence of rain rates in mm/h; received "
                f"{thresholds!r}."
            )
        if len(set(checked)) != len(checked):
            raise ValueError(f"`thresholds` must be distinct; received {thresholds!r}.")
        if inverse is not None and not callable(inverse):
            raise ValueError(
                f"`inverse` must be None or a callable (model scale -> mm/h); received {inverse!r}."
            )
        self.thresholds = checked
        self.fss_threshold = _check_threshold(fss_threshold, "fss_threshold")
        self.fss_scale = _check_scale(fss_scale, "fss_scale")
        self.inverse = inverse
        self.reset()

    def reset(self):
        """Forgets every batch seen so far."""
        self._frame_shape = None
        self._n_sequences = 0
        self._sums = None

    def _to_rain_rate(self, values, name):
        if self.inverse is None:
            return values
        rate = np.asarray(self.inverse(values), dtype=np.float64)
        if rate.shape != values.shape:
            raise ValueError(
                f"`inverse` must return an array of the shape it receives; applied to `{name}` "
                f"of shape {values.shape} it returned shape {rate.shape}."
            )
        if not np.all(np.isfinite(rate)):
            raise ValueError(
                f"`inverse` returned {rate.size - int(np.count_nonzero(np.isfinite(rate)))} "
                f"non-finite value(s) (NaN or Inf) for `{name}` of shape {values.shape}."
            )
        return rate

    def update(self, true, pred):
        """Adds one batch.

        Args:
            true: array of shape `(B, T, H, W, C)`, observed frames in model scale (rain rates
                if `inverse` is None).
            pred: array of the same shape, forecast frames (unclipped).
        """
        pred, true = _validate_pair(pred, true)
        frame_shape = tuple(pred.shape[1:])
        if self._frame_shape is not None and frame_shape != self._frame_shape:
            raise ValueError(
                "Every batch given to NowcastingEvaluator.update() must have the same "
                f"(T, H, W, C); earlier batches had {self._frame_shape}, received `pred`/`true` "
                f"with {_describe(pred)}."
            )
        lead_times = pred.shape[1]
        sums = {
            "squared_error": np.zeros(lead_times),
            "absolute_error": np.zeros(lead_times),
            "squared_error_rain_rate": np.zeros(lead_times),
            "counts": np.zeros((len(self.thresholds), 4, lead_times), dtype=np.int64),
            "fss": np.zeros((3, lead_times)),
        }
        axes = (0, 2, 3, 4)
        for rows in _sequence_chunks(true.shape):
            t = np.asarray(true[rows], dtype=np.float64)
            p = np.asarray(pred[rows], dtype=np.float64)
            diff = p - t
            sums["squared_error"] += np.sum(diff * diff, axis=axes)
            sums["absolute_error"] += np.sum(np.abs(diff), axis=axes)
            t = self._to_rain_rate(t, "true")
            p = self._to_rain_rate(p, "pred")
            diff = p - t
            sums["squared_error_rain_rate"] += np.sum(diff * diff, axis=axes)
            for i, threshold in enumerate(self.thresholds):
                sums["counts"][i] += _counts(t, p, threshold)
            sums["fss"] += _fss_sums(t, p, self.fss_threshold, self.fss_scale)
        # Commit only once the whole batch went through, so a failing `inverse` leaves the
        # evaluator as it was.
        if self._sums is None:
            self._frame_shape = frame_shape
            self._sums = sums
        else:
            for key, value in sums.items():
                self._sums[key] += value
        self._n_sequences += pred.shape[0]

    def result(self):
        """Returns the scores of every batch seen since the last `reset()`.

        Every score is a dict `{"per_lead_time": [T floats], "total": float, "mean": float}`:
        `"total"` pools the whole horizon (summed counts, errors or FSS sums over all lead
        times, the figure to report), `"mean"` is the mean of the per-lead-time scores over the
        lead times where they are defined. An undefined score (NaN: a zero denominator) is
        written as None, so `json.dumps(result, allow_nan=False)` works.

        Returns:
            Dict with keys:
            - `"n_sequences"` (int), `"lead_times"` (int), `"thresholds"` (list of floats),
              `"fss_threshold"` (float), `"fss_scale"` (int);
            - `"mse"`, `"mae"`: per-pixel errors in model scale (on the inputs as given);
              `"mse_rain_rate"`: per-pixel squared error in (mm/h)^2 after `inverse`; for these
              `"total"` and `"mean"` coincide;
            - `"csi"`, `"pod"`, `"far"`: `{str(threshold): score}` with keys such as `"0.5"`,
              `"1.0"`, `"5.0"` (`str(float(threshold))`);
            - `"fss"`: the score at `fss_threshold` and `fss_scale`;
            - `"contingency"`: `{str(threshold): {"hits": [...], "misses": [...],
              "false_alarms": [...], "correct_negatives": [...]}}`, int counts per lead time.
        """
        if self._sums is None:
            raise ValueError(
                "NowcastingEvaluator.result() needs at least one update(); received no batches."
            )
        n = self._n_sequences
        lead_times = self._frame_shape[0]
        values_per_lead = n * int(np.prod(self._frame_shape[1:]))
        out = {
            "n_sequences": n,
            "lead_times": lead_times,
            "thresholds": list(self.thresholds),
            "fss_threshold": self.fss_threshold,
            "fss_scale": self.fss_scale,
        }
        for key, name in (
            ("mse", "squared_error"),
            ("mae", "absolute_error"),
            ("mse_rain_rate", "squared_error_rain_rate"),
        ):
            per_lead = self._sums[name] / values_per_lead
            out[key] = _score_entry(
                per_lead, np.sum(self._sums[name]) / (values_per_lead * lead_times)
            )
        for key, score in (("csi", csi), ("pod", pod), ("far", far)):
            out[key] = {}
            for threshold, counts in zip(self.thresholds, self._sums["counts"], strict=True):
                table = Contingency(*counts)
                out[key][str(threshold)] = _score_entry(score(table), score(table.total()))
        out["fss"] = _score_entry(
            _fss_from_sums(self._sums["fss"]), _fss_from_sums(self._sums["fss"].sum(axis=1))
        )
        out["contingency"] = {
            str(threshold): {
                field: [int(v) for v in count]
                for field, count in zip(Contingency._fields, counts, strict=True)
            }
            for threshold, counts in zip(self.thresholds, self._sums["counts"], strict=True)
        }
        return out
