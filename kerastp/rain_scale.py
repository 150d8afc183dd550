"""kerastp's radar model scale: rain rate in mm/h <-> `log1p(R) / log1p(100)` in [0, 1].

The one definition of the scale (../shared/data/radar/README.md); `kerastp.data.radar`
re-exports it, and the rain-aware losses read their thresholds through it. NumPy only.
"""

import numpy as np

#: Rain rates are clipped to this many mm/h before the log transform (x = 1 at 100 mm/h).
RAIN_RATE_MAX = 100.0
_LOG1P_MAX = float(np.log1p(RAIN_RATE_MAX))  # 4.6151205168...


def _float_array(values):
    array = np.asarray(values)
    if array.dtype.kind != "f":
        array = array.astype(np.float32)
    return array


def to_model_scale(rain_rate):
    """Maps rain rates in mm/h to the model scale, `log1p(clip(R, 0, 100)) / log1p(100)`.

    Only the clip to [0, 100] mm/h is applied here. The data converter also set rates below
    0.1 mm/h to 0, but it did so on each radar's native grid before block-averaging, so the
    shipped frames do hold area means below 0.1 mm/h and that cut is not repeated here.

    Args:
        rain_rate: array-like of rain rates in mm/h. NaN stays NaN.

    Returns:
        Array of the same shape in [0, 1]; floating inputs keep their dtype, others become
        float32.

    Example:

    >>> to_model_scale(np.array([0.0, 1.0, 100.0, 250.0], np.float32)).round(4)
    array([0.    , 0.1502, 1.    , 1.    ], dtype=float32)
    """
    rate = _float_array(rain_rate)
    x = np.log1p(np.clip(rate.astype(np.float64), 0.0, RAIN_RATE_MAX)) / _LOG1P_MAX
    return x.astype(rate.dtype)


def to_rain_rate(x, clip=False):
    """Maps model-scale values back to rain rates in mm/h, `expm1(x * log1p(100))`.

    The exact inverse of `to_model_scale` on [0, 1]. Model outputs may leave that interval:
    pass `clip=True` to clip `x` to [0, 1] first (rates then lie in [0, 100] mm/h).

    Args:
        x: array-like of model-scale values.
        clip: clip `x` to [0, 1] before the inverse transform.

    Returns:
        Array of rain rates in mm/h; floating inputs keep their dtype, others become float32.

    Example:

    >>> to_rain_rate(np.array([0.0, 0.3882, 1.0], np.float32)).round(2)
    array([  0.,   5., 100.], dtype=float32)
    """
    x = _float_array(x)
    values = x.astype(np.float64)
    if clip:
        values = np.clip(values, 0.0, 1.0)
    return np.expm1(values * _LOG1P_MAX).astype(x.dtype)
