"""Frame metrics with OpenSTL's definitions, so reported numbers compare with the papers.

All array functions take channels-last sequences of frames, shape `(N, T, H, W, C)`, in the
model's [0, 1] scale, and compute in float64 regardless of the input dtype:

- `mse` / `mae`: per-frame SUM over `H * W * C` of the squared / absolute error, averaged over
  the `N * T` frames, on the unclipped prediction (OpenSTL:
  `np.mean((pred - true) ** 2, axis=(0, 1)).sum()`).
- `per_pixel_mse` / `per_pixel_mae`: plain means over every value.
- `ssim`: per frame, prediction clipped to [0, 1], 7x7 uniform window, K1=0.01, K2=0.03,
  sample covariance, `data_range=2.0` (what OpenSTL's pinned scikit-image used for float
  input), SSIM per channel averaged, 3-pixel borders cropped; averaged over frames.
- `psnr`: per frame on the clipped prediction, `20 * log10(1 / sqrt(per-pixel MSE))`, averaged
  over frames.

`ForecastEvaluator` accumulates all of them over batches (plus per-lead-time curves) so a test
set never has to sit in memory at once; `evaluate_arrays` runs it over whole arrays. NumPy
only: `kerastp.metrics.FrameMSE` / `FrameMAE` are the Keras metrics for `model.fit` that report
the same `mse` / `mae` numbers. The input checks here (`_validate_pair`) are shared with
`kerastp.evaluation.nowcasting`.

Reference:
- [Tan et al., 2023, "OpenSTL: A Comprehensive Benchmark of Spatio-Temporal Predictive
  Learning"](https://arxiv.org/abs/2306.11249), NeurIPS Datasets and Benchmarks.
- [Wang et al., 2004, "Image Quality Assessment: From Error Visibility to Structural
  Similarity"](https://doi.org/10.1109/TIP.2003.819861), IEEE TIP.
"""

import numpy as np

__all__ = [
    "ForecastEvaluator",
    "evaluate_arrays",
    "mae",
    "mse",
    "per_pixel_mae",
    "per_pixel_mse",
    "psnr",
    "ssim",
]

# SSIM settings of OpenSTL's pinned scikit-image (`structural_similarity` on float frames).
SSIM_WIN_SIZE = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_DATA_RANGE = 2.0

# Frames are processed in chunks of about this many values, so the float64 temporaries of the
# SSIM box filter stay at a few tens of MB whatever the size of the input.
_CHUNK_VALUES = 1 << 19


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _describe(array):
    return f"shape={array.shape}, dtype={array.dtype}"


def _as_frames_array(value, name):
    array = np.asarray(value)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"`{name}` must hold real numbers (float frames in [0, 1]); "
            f"received {_describe(array)}."
        )
    if array.ndim != 5:
        raise ValueError(
            f"`{name}` must have rank 5 (N, T, H, W, C); received rank {array.ndim} with "
            f"{_describe(array)}."
        )
    return array


def _count_nonfinite(array):
    # Row chunks keep the boolean temporary small for memmaps of a whole test set.
    rows = max(1, _CHUNK_VALUES // max(1, int(np.prod(array.shape[1:]))))
    finite = 0
    for start in range(0, array.shape[0], rows):
        finite += int(np.count_nonzero(np.isfinite(array[start : start + rows])))
    return array.size - finite


def _validate_pair(pred, true, min_frame_size=None):
    """Checks `pred` and `true` and returns them as NumPy arrays."""
    pred = _as_frames_array(pred, "pred")
    true = _as_frames_array(true, "true")
    if pred.shape != true.shape:
        raise ValueError(
            f"`pred` and `true` must have the same shape; received `pred` with {_describe(pred)} "
            f"and `true` with {_describe(true)}."
        )
    if pred.size == 0:
        raise ValueError(
            f"`pred` and `true` are empty; received `pred` with {_describe(pred)} and `true` "
            f"with {_describe(true)}."
        )
    problems = []
    for name, array in (("pred", pred), ("true", true)):
        if np.issubdtype(array.dtype, np.floating):
            bad = _count_nonfinite(array)
            if bad:
                problems.append(
                    f"`{name}` holds {bad} non-finite value(s) (NaN or Inf) out of {array.size} "
                    f"({_describe(array)})"
                )
    if problems:
        raise ValueError("Metrics need finite inputs: " + "; ".join(problems) + ".")
    if min_frame_size is not None:
        height, width = pred.shape[2], pred.shape[3]
        if height < min_frame_size or width < min_frame_size:
            raise ValueError(
                f"SSIM needs frames of at least {min_frame_size}x{min_frame_size} pixels (its "
                f"window size); received `pred` with {_describe(pred)} and `true` with "
                f"{_describe(true)}, i.e. frames of {height}x{width}."
            )
    return pred, true


# ---------------------------------------------------------------------------------------------
# Per-frame kernels: (F, H, W, C) float64 -> (F,) float64
# ---------------------------------------------------------------------------------------------


def _squared_error_sum(pred, true):
    diff = pred - true
    return np.sum(diff * diff, axis=(1, 2, 3))


def _absolute_error_sum(pred, true):
    return np.sum(np.abs(pred - true), axis=(1, 2, 3))


def _box_mean_valid(x, win):
    """Mean over every 'valid' `win` x `win` window of axes 1 and 2, by cumulative sums."""
    for axis in (1, 2):
        pad_shape = list(x.shape)
        pad_shape[axis] = 1
        csum = np.cumsum(x, axis=axis)
        csum = np.concatenate([np.zeros(pad_shape, dtype=x.dtype), csum], axis=axis)
        upper = [slice(None)] * x.ndim
        lower = [slice(None)] * x.ndim
        upper[axis] = slice(win, None)
        lower[axis] = slice(None, -win)
        x = csum[tuple(upper)] - csum[tuple(lower)]
    return x / (win * win)


def _ssim_frames(pred, true):
    """SSIM per frame, matching skimage's `structural_similarity` with OpenSTL's settings."""
    pred = np.clip(pred, 0.0, 1.0)
    win = SSIM_WIN_SIZE
    # Windows that lie fully inside the frame are exactly the pixels skimage keeps after
    # cropping (win - 1) // 2 pixels from each border, so 'valid' windows need no padding.
    stacked = np.stack([pred, true, pred * pred, true * true, pred * true], axis=0)
    means = _box_mean_valid(stacked.reshape((-1,) + stacked.shape[2:]), win)
    means = means.reshape((5, pred.shape[0]) + means.shape[1:])
    ux, uy, uxx, uyy, uxy = means
    n_points = win * win
    cov_norm = n_points / (n_points - 1.0)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (SSIM_K1 * SSIM_DATA_RANGE) ** 2
    c2 = (SSIM_K2 * SSIM_DATA_RANGE) ** 2
    numerator = (2.0 * ux * uy + c1) * (2.0 * vxy + c2)
    denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    ssim_map = numerator / denominator
    # skimage: mean SSIM of each channel, then the mean over channels.
    return np.mean(np.mean(ssim_map, axis=(1, 2)), axis=-1)


def _psnr_frames(pred, true):
    pred = np.clip(pred, 0.0, 1.0)
    diff = pred - true
    frame_mse = np.mean(diff * diff, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(1.0 / np.sqrt(frame_mse))


_KERNELS = {
    "squared_error_sum": _squared_error_sum,
    "absolute_error_sum": _absolute_error_sum,
    "ssim": _ssim_frames,
    "psnr": _psnr_frames,
}


def _per_frame(pred, true, names):
    """Applies the named per-frame kernels chunk by chunk; returns {name: (N, T) float64}."""
    n, t = pred.shape[:2]
    frame_shape = pred.shape[2:]
    pred_frames = pred.reshape((n * t,) + frame_shape)
    true_frames = true.reshape((n * t,) + frame_shape)
    step = max(1, _CHUNK_VALUES // int(np.prod(frame_shape)))
    out = {name: np.full(n * t, np.nan) for name in names}
    for start in range(0, n * t, step):
        chunk = slice(start, min(start + step, n * t))
        p = np.asarray(pred_frames[chunk], dtype=np.float64)
        y = np.asarray(true_frames[chunk], dtype=np.float64)
        for name in names:
            out[name][chunk] = _KERNELS[name](p, y)
    return {name: values.reshape(n, t) for name, values in out.items()}


# ---------------------------------------------------------------------------------------------
# One-shot array metrics
# ---------------------------------------------------------------------------------------------


def mse(pred, true):
    """OpenSTL MSE: per-frame sum of squared errors, averaged over frames.

    Computed on the unclipped prediction, as OpenSTL does
    (`np.mean((pred - true) ** 2, axis=(0, 1)).sum()`); e.g. Moving MNIST numbers such as
    STLight-L's 21.80 use this definition.

    Args:
        pred: array of shape `(N, T, H, W, C)`, predicted frames in [0, 1].
        true: array of the same shape, ground-truth frames.

    Returns:
        Python float.

    Example:

    ```python
    pred = np.zeros((1, 1, 2, 2, 1))
    true = np.full((1, 1, 2, 2, 1), 0.5)
    mse(pred, true)  # 4 * 0.25 = 1.0
    ```
    """
    pred, true = _validate_pair(pred, true)
    return float(np.mean(_per_frame(pred, true, ["squared_error_sum"])["squared_error_sum"]))


def mae(pred, true):
    """OpenSTL MAE: per-frame sum of absolute errors, averaged over frames.

    Computed on the unclipped prediction (`np.mean(np.abs(pred - true), axis=(0, 1)).sum()`).

    Args:
        pred: array of shape `(N, T, H, W, C)`, predicted frames in [0, 1].
        true: array of the same shape, ground-truth frames.

    Returns:
        Python float.

    Example:

    ```python
    pred = np.zeros((1, 1, 2, 2, 1))
    true = np.full((1, 1, 2, 2, 1), 0.5)
    mae(pred, true)  # 4 * 0.5 = 2.0
    ```
    """
    pred, true = _validate_pair(pred, true)
    return float(np.mean(_per_frame(pred, true, ["absolute_error_sum"])["absolute_error_sum"]))


def per_pixel_mse(pred, true):
    """Mean squared error over every value (the per-pixel figure weather papers report).

    Args:
        pred: array of shape `(N, T, H, W, C)`, predicted frames in [0, 1] (unclipped).
        true: array of the same shape, ground-truth frames.

    Returns:
        Python float, `mse(pred, true) / (H * W * C)`.
    """
    pred, true = _validate_pair(pred, true)
    frame_values = int(np.prod(pred.shape[2:]))
    sums = _per_frame(pred, true, ["squared_error_sum"])["squared_error_sum"]
    return float(np.mean(sums) / frame_values)


def per_pixel_mae(pred, true):
    """Mean absolute error over every value.

    Args:
        pred: array of shape `(N, T, H, W, C)`, predicted frames in [0, 1] (unclipped).
        true: array of the same shape, ground-truth frames.

    Returns:
        Python float, `mae(pred, true) / (H * W * C)`.
    """
    pred, true = _validate_pair(pred, true)
    frame_values = int(np.prod(pred.shape[2:]))
    sums = _per_frame(pred, true, ["absolute_error_sum"])["absolute_error_sum"]
    return float(np.mean(sums) / frame_values)


def ssim(pred, true):
    """Mean SSIM over frames, with the settings of OpenSTL's pinned scikit-image.

    Each `(H, W, C)` frame gets
    `skimage.metrics.structural_similarity(clip(pred, 0, 1), true, win_size=7, data_range=2.0,
    channel_axis=-1, gaussian_weights=False, use_sample_covariance=True, K1=0.01, K2=0.03)`:
    a 7x7 uniform window, sample covariance (49 / 48), SSIM per channel averaged over channels,
    3-pixel borders cropped. `data_range=2.0` is what scikit-image used for float input when
    OpenSTL's numbers were produced; keep it to compare with the papers. Computed vectorised in
    float64 with a cumulative-sum box filter; scikit-image is not needed.

    Args:
        pred: array of shape `(N, T, H, W, C)` with `H, W >= 7`, predicted frames; clipped to
            [0, 1] before scoring.
        true: array of the same shape, ground-truth frames.

    Returns:
        Python float, the mean of the `N * T` frame SSIMs.

    Example:

    ```python
    rng = np.random.default_rng(0)
    true = rng.random((2, 3, 16, 16, 1))
    ssim(true, true)  # 1.0
    ```
    """
    pred, true = _validate_pair(pred, true, min_frame_size=SSIM_WIN_SIZE)
    return float(np.mean(_per_frame(pred, true, ["ssim"])["ssim"]))


def psnr(pred, true):
    """Mean PSNR over frames, OpenSTL style: `20 * log10(1 / sqrt(frame MSE))`.

    The prediction is clipped to [0, 1]; each frame's per-pixel MSE gives one PSNR in dB and
    the result is their mean. As in OpenSTL, a frame predicted exactly (zero error) scores
    `+inf`, and so does the mean then.

    Args:
        pred: array of shape `(N, T, H, W, C)`, predicted frames; clipped to [0, 1].
        true: array of the same shape, ground-truth frames.

    Returns:
        Python float in dB (`inf` if any frame has zero error).

    Example:

    ```python
    true = np.zeros((1, 1, 4, 4, 1))
    psnr(true + 0.1, true)  # 20.0
    ```
    """
    pred, true = _validate_pair(pred, true)
    return float(np.mean(_per_frame(pred, true, ["psnr"])["psnr"]))


# ---------------------------------------------------------------------------------------------
# Streaming evaluation
# ---------------------------------------------------------------------------------------------


class ForecastEvaluator:
    """Streaming accumulator of the OpenSTL metrics over batches of sequences.

    Holds only per-lead-time sums, so a 10,000-sequence test set can be scored batch by batch.
    After any sequence of `update()` calls, `result()` equals the one-shot functions (`mse`,
    `mae`, `ssim`, `psnr`, `per_pixel_mse`, `per_pixel_mae`) applied to the concatenation of
    the batches, up to float rounding. All batches must share `(T, H, W, C)`.

    Example:

    ```python
    rng = np.random.default_rng(0)
    true = rng.random((8, 4, 16, 16, 1))
    pred = rng.random((8, 4, 16, 16, 1))
    evaluator = ForecastEvaluator()
    for start in range(0, 8, 3):
        evaluator.update(true[start : start + 3], pred[start : start + 3])
    result = evaluator.result()
    result["mse"], result["ssim_per_frame"]  # float, list of 4 floats
    ```
    """

    def __init__(self):
        self.reset()

    def reset(self):
        """Forgets every batch seen so far."""
        self._frame_shape = None
        self._n_sequences = 0
        self._sums = None

    def update(self, true, pred):
        """Adds one batch.

        Args:
            true: array of shape `(B, T, H, W, C)`, ground-truth frames in [0, 1].
            pred: array of the same shape, predicted frames (unclipped; SSIM and PSNR clip).
        """
        pred, true = _validate_pair(pred, true, min_frame_size=SSIM_WIN_SIZE)
        self._check_frame_shape(pred)
        self._accumulate(pred, true)

    def _check_frame_shape(self, pred):
        frame_shape = tuple(pred.shape[1:])
        if self._frame_shape is not None and frame_shape != self._frame_shape:
            raise ValueError(
                "Every batch given to ForecastEvaluator.update() must have the same (T, H, W, C); "
                f"earlier batches had {self._frame_shape}, received `pred`/`true` with "
                f"{_describe(pred)}."
            )

    def _accumulate(self, pred, true):
        names = list(_KERNELS)
        per_frame = _per_frame(pred, true, names)
        if self._sums is None:
            self._frame_shape = tuple(pred.shape[1:])
            self._sums = {name: np.zeros(pred.shape[1], dtype=np.float64) for name in names}
        for name in names:
            self._sums[name] += per_frame[name].sum(axis=0)
        self._n_sequences += pred.shape[0]

    def result(self):
        """Returns the metrics of every batch seen since the last `reset()`.

        Returns:
            Dict with float values for `"mse"`, `"mae"`, `"ssim"`, `"psnr"`,
            `"per_pixel_mse"`, `"per_pixel_mae"`; int `"n_sequences"`; and lists with one float
            per lead time for `"mse_per_frame"`, `"mae_per_frame"`, `"ssim_per_frame"`,
            `"psnr_per_frame"`.
        """
        if self._sums is None:
            raise ValueError(
                "ForecastEvaluator.result() needs at least one update(); received no batches."
            )
        n = self._n_sequences
        frame_values = int(np.prod(self._frame_shape[1:]))
        per_lead = {name: sums / n for name, sums in self._sums.items()}
        mse_value = float(np.mean(per_lead["squared_error_sum"]))
        mae_value = float(np.mean(per_lead["absolute_error_sum"]))
        return {
            "mse": mse_value,
            "mae": mae_value,
            "ssim": float(np.mean(per_lead["ssim"])),
            "psnr": float(np.mean(per_lead["psnr"])),
            "per_pixel_mse": mse_value / frame_values,
            "per_pixel_mae": mae_value / frame_values,
            "n_sequences": n,
            "mse_per_frame": [float(v) for v in per_lead["squared_error_sum"]],
            "mae_per_frame": [float(v) for v in per_lead["absolute_error_sum"]],
            "ssim_per_frame": [float(v) for v in per_lead["ssim"]],
            "psnr_per_frame": [float(v) for v in per_lead["psnr"]],
        }


def evaluate_arrays(true, pred, batch_size=256):
    """Scores whole arrays through `ForecastEvaluator`, `batch_size` sequences at a time.

    Args:
        true: array of shape `(N, T, H, W, C)`, ground-truth frames in [0, 1] (a NumPy memmap
            works and is read batch by batch).
        pred: array of the same shape, predicted frames.
        batch_size: positive int, sequences per batch.

    Returns:
        The dict of `ForecastEvaluator.result()`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"`batch_size` must be a positive int; received {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int; received {batch_size!r}.")
    pred, true = _validate_pair(pred, true, min_frame_size=SSIM_WIN_SIZE)
    evaluator = ForecastEvaluator()
    for start in range(0, pred.shape[0], batch_size):
        batch = slice(start, start + batch_size)
        evaluator._accumulate(pred[batch], true[batch])
    return evaluator.result()
