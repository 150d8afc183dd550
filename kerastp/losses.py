"""Training losses of kerastp models beyond the mean squared error."""

import math

import keras
from keras import ops


def differential_divergence(y_true, y_pred, temperature=0.1, epsilon=1e-12):
    """TAU's differential divergence regulariser (OpenSTL's `diff_div_reg`).

    The frame-to-frame differences of the forecast and of the truth are turned into
    distributions over pixels with a softmax at `temperature`, and the KL divergence
    `p * log(p / (q + eps) + eps)` of the forecast's from the truth's is averaged over
    sequences, frame gaps and pixels. Sequences of two frames or fewer give 0.

    Args:
        y_true: (B, T, H, W, C).
        y_pred: (B, T, H, W, C).
        temperature: float, softmax temperature (OpenSTL: 0.1).
        epsilon: float, OpenSTL's stabiliser.

    Returns:
        Per-sequence values, shape (B,).
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    shape = tuple(y_pred.shape)
    if len(shape) != 5 or any(d is None for d in shape[1:]):
        raise ValueError(
            "differential_divergence expects (B, T, H, W, C) with static T, H, W, C, got "
            f"shape {shape}"
        )
    if shape[1] <= 2:
        return ops.zeros_like(y_pred[:, 0, 0, 0, 0])
    gaps, pixels = shape[1] - 1, math.prod(shape[2:])

    def distribution(y):
        gap = ops.reshape(y[:, 1:] - y[:, :-1], (-1, gaps, pixels))
        return ops.softmax(gap / temperature, axis=-1)

    p = distribution(y_pred)
    q = distribution(y_true)
    divergence = p * ops.log(p / (q + epsilon) + epsilon)
    return ops.mean(divergence, axis=(1, 2))


@keras.saving.register_keras_serializable(package="kerastp")
class MSEWithDifferentialDivergence(keras.losses.Loss):
    """TAU's training loss: `MSE + weight * differential_divergence` (OpenSTL's `alpha`).

    Args:
        weight: float, weight of the regulariser (TAU: 0.1).
        temperature: float, its softmax temperature (0.1).
        **kwargs: base `keras.losses.Loss` arguments.

    Example:
    >>> loss = MSEWithDifferentialDivergence(weight=0.1)
    >>> y = keras.ops.ones((2, 4, 8, 8, 1))
    >>> float(loss(y, y))
    0.0
    """

    def __init__(
        self, weight=0.1, temperature=0.1, name="mse_with_differential_divergence", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        if not float(weight) >= 0.0:
            raise ValueError(f"`weight` must be >= 0, got weight={weight!r}")
        if not float(temperature) > 0.0:
            raise ValueError(f"`temperature` must be > 0, got temperature={temperature!r}")
        self.weight = float(weight)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        rank = len(y_pred.shape)
        mse = ops.mean(ops.square(y_pred - y_true), axis=tuple(range(1, rank)))
        if not self.weight:
            return mse
        return mse + self.weight * differential_divergence(y_true, y_pred, self.temperature)

    def get_config(self):
        config = super().get_config()
        config.update({"weight": self.weight, "temperature": self.temperature})
        return config


#: Rain rates (mm/h) where `IntensityWeightedLoss`'s weights step up, and the weights below,
#: between and above them: the balanced MSE / MAE of Shi et al. (TrajGRU, NeurIPS 2017).
RAIN_RATE_STEPS = (2.0, 5.0, 10.0, 30.0)
RAIN_RATE_WEIGHTS = (1.0, 2.0, 5.0, 10.0, 30.0)
#: Rain rates (mm/h) of the soft CSI term (the nowcasting benchmark's 1 and 5 mm/h scores).
CSI_RAIN_RATES = (1.0, 5.0)


def _radar_scale(rates):
    """Rain rates in mm/h -> radar model scale (`kerastp.data.radar.to_model_scale`)."""
    from kerastp.rain_scale import to_model_scale

    return tuple(float(v) for v in to_model_scale([float(r) for r in rates]))


def _float_tuple(name, values, minimum=None):
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a sequence of numbers, got {name}={values!r}") from None
    if not all(math.isfinite(v) and (minimum is None or v >= minimum) for v in values):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"`{name}` must hold finite numbers{bound}, got {name}={values!r}")
    return values


@keras.saving.register_keras_serializable(package="kerastp")
class IntensityWeightedLoss(keras.losses.Loss):
    """A loss that does not give up on heavy rain: balanced MSE + MAE and a soft CSI term.

    A plain MSE lets a model forecast smooth, rain-shy fields: heavy rain covers few pixels.
    This loss weighs each pixel's squared and absolute error by the intensity of the truth
    there (Shi et al.'s balanced MSE / MAE: weight 1 below 2 mm/h, then 2, 5, 10 and 30 above
    2, 5, 10 and 30 mm/h), and can add `csi_weight * (1 - soft CSI)` at chosen thresholds:
    the forecast's exceedance is a sigmoid of `(y_pred - threshold) / temperature`, so hits,
    misses and false alarms, and the critical success index `hits / (hits + misses + false
    alarms)`, become differentiable (averaged over thresholds, per sequence, with one pseudo
    count so that dry sequences give 0).

    Thresholds are in the model's scale. By default they are the rain rates above mapped to
    kerastp's radar scale (`log1p(R) / log1p(100)`, `kerastp.data.radar.to_model_scale`);
    for other data give `thresholds` / `csi_thresholds` in that data's scale.

    Args:
        thresholds: increasing model-scale values where the weight steps up; None: the rain
            rates `RAIN_RATE_STEPS` (2, 5, 10, 30 mm/h) in radar scale.
        weights: one weight below the first threshold, then one above each
            (`len(thresholds) + 1` values, >= 0); default `RAIN_RATE_WEIGHTS`.
        mse_weight: float >= 0, weight of the balanced MSE.
        mae_weight: float >= 0, weight of the balanced MAE.
        csi_weight: float >= 0, weight of `1 - soft CSI` (0 leaves it out).
        csi_thresholds: model-scale thresholds of the CSI term; None: 1 and 5 mm/h in radar
            scale (`CSI_RAIN_RATES`).
        temperature: float > 0, the sigmoid's width in model-scale units.
        **kwargs: base `keras.losses.Loss` arguments.

    Example:
    >>> loss = IntensityWeightedLoss()
    >>> truth = keras.ops.ones((1, 2, 4, 4, 1)) * 0.5  # 9.1 mm/h: weight 5
    >>> float(loss(truth, truth + 0.1))  # 5 * (0.1**2 + 0.1)
    0.55...

    Reference:
        Shi et al., "Deep Learning for Precipitation Nowcasting: A Benchmark and a New
        Model", NeurIPS 2017 (balanced MSE / MAE); Lebedev et al., "Precipitation
        nowcasting with satellite imagery", KDD 2019 (a differentiable CSI).
    """

    def __init__(
        self,
        thresholds=None,
        weights=RAIN_RATE_WEIGHTS,
        mse_weight=1.0,
        mae_weight=1.0,
        csi_weight=0.0,
        csi_thresholds=None,
        temperature=0.02,
        name="intensity_weighted_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        thresholds = _radar_scale(RAIN_RATE_STEPS) if thresholds is None else thresholds
        csi_thresholds = _radar_scale(CSI_RAIN_RATES) if csi_thresholds is None else csi_thresholds
        self.thresholds = _float_tuple("thresholds", thresholds)
        self.weights = _float_tuple("weights", weights, minimum=0.0)
        self.csi_thresholds = _float_tuple("csi_thresholds", csi_thresholds)
        if any(b <= a for a, b in zip(self.thresholds, self.thresholds[1:], strict=False)):
            raise ValueError(f"`thresholds` must increase, got thresholds={thresholds!r}")
        if len(self.weights) != len(self.thresholds) + 1:
            raise ValueError(
                f"`weights` needs len(thresholds) + 1 = {len(self.thresholds) + 1} values (one "
                f"below the first threshold, one above each), got weights={weights!r}"
            )
        for arg, value in (
            ("mse_weight", mse_weight),
            ("mae_weight", mae_weight),
            ("csi_weight", csi_weight),
        ):
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and math.isfinite(value) and value >= 0
            ):
                raise ValueError(f"`{arg}` must be a finite number >= 0, got {arg}={value!r}")
        if not (mse_weight or mae_weight or csi_weight):
            raise ValueError("at least one of mse_weight, mae_weight, csi_weight must be > 0")
        if csi_weight and not self.csi_thresholds:
            raise ValueError("`csi_weight` > 0 needs at least one of `csi_thresholds`")
        if isinstance(temperature, bool) or not (
            isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0
        ):
            raise ValueError(f"`temperature` must be > 0, got temperature={temperature!r}")
        self.mse_weight = float(mse_weight)
        self.mae_weight = float(mae_weight)
        self.csi_weight = float(csi_weight)
        self.temperature = float(temperature)

    def pixel_weights(self, y_true):
        """The balanced loss's weight of every pixel, from the truth's intensity."""
        weight = ops.full_like(y_true, self.weights[0])
        for threshold, below, above in zip(
            self.thresholds, self.weights, self.weights[1:], strict=False
        ):
            weight = weight + ops.cast(y_true >= threshold, y_true.dtype) * (above - below)
        return weight

    def soft_csi(self, y_true, y_pred):
        """Differentiable CSI per sequence, averaged over `csi_thresholds`: shape (B,)."""
        rank = len(y_pred.shape)
        axes = tuple(range(1, rank))
        scores = []
        for threshold in self.csi_thresholds:
            observed = ops.cast(y_true >= threshold, y_pred.dtype)
            forecast = ops.sigmoid((y_pred - threshold) / self.temperature)
            hits = ops.sum(forecast * observed, axis=axes)
            misses = ops.sum((1.0 - forecast) * observed, axis=axes)
            false_alarms = ops.sum(forecast * (1.0 - observed), axis=axes)
            scores.append((hits + 1.0) / (hits + misses + false_alarms + 1.0))
        return ops.mean(ops.stack(scores, axis=0), axis=0)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        axes = tuple(range(1, len(y_pred.shape)))
        weight = self.pixel_weights(y_true)
        error = y_pred - y_true
        terms = []
        if self.mse_weight:
            terms.append(self.mse_weight * ops.mean(weight * ops.square(error), axis=axes))
        if self.mae_weight:
            terms.append(self.mae_weight * ops.mean(weight * ops.abs(error), axis=axes))
        if self.csi_weight:
            terms.append(self.csi_weight * (1.0 - self.soft_csi(y_true, y_pred)))
        return sum(terms[1:], terms[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "thresholds": list(self.thresholds),
                "weights": list(self.weights),
                "mse_weight": self.mse_weight,
                "mae_weight": self.mae_weight,
                "csi_weight": self.csi_weight,
                "csi_thresholds": list(self.csi_thresholds),
                "temperature": self.temperature,
            }
        )
        return config


#: Losses `Forecaster.compile(loss=NAME)` and `kerastp train --loss NAME` accept by name
#: (besides "auto", the model's own, and Keras' names): name -> constructor.
NAMED_LOSSES = {
    "mse": lambda: keras.losses.MeanSquaredError(),
    "intensity": lambda: IntensityWeightedLoss(),
    "intensity_csi": lambda: IntensityWeightedLoss(csi_weight=0.5),
}


def get(name):
    """The loss registered under `name` in `NAMED_LOSSES` (a new instance)."""
    if name not in NAMED_LOSSES:
        raise ValueError(
            f"`loss` must be one of {', '.join(['auto', *NAMED_LOSSES])}, got loss={name!r}"
        )
    return NAMED_LOSSES[name]()
