"""Evaluation of forecasts, apart from training: NumPy scores of predicted frames.

- `kerastp.evaluation.frames`: OpenSTL's frame metrics (`mse`, `mae`, `per_pixel_mse`,
  `per_pixel_mae`, `ssim`, `psnr`), the streaming `ForecastEvaluator` and `evaluate_arrays`.
- `kerastp.evaluation.nowcasting`: radar nowcasting verification with pysteps' conventions
  (`Contingency`, `contingency`, `csi`, `pod`, `far`, `fss`, `NowcastingEvaluator`).

The Keras metrics that models compile with (`FrameMSE`, `FrameMAE`) stay in `kerastp.metrics`.
Importing this package needs only NumPy: nothing imported here may import TensorFlow or Keras,
so anything that scores a model goes into a submodule that its users import themselves.
"""

from kerastp.evaluation.frames import (
    ForecastEvaluator,
    evaluate_arrays,
    mae,
    mse,
    per_pixel_mae,
    per_pixel_mse,
    psnr,
    ssim,
)
from kerastp.evaluation.nowcasting import (
    Contingency,
    NowcastingEvaluator,
    contingency,
    csi,
    far,
    fss,
    pod,
)

__all__ = [
    "Contingency",
    "ForecastEvaluator",
    "NowcastingEvaluator",
    "contingency",
    "csi",
    "evaluate_arrays",
    "far",
    "fss",
    "mae",
    "mse",
    "per_pixel_mae",
    "per_pixel_mse",
    "pod",
    "psnr",
    "ssim",
]
