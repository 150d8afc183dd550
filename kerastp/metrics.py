"""Keras metrics for `model.fit`: OpenSTL's per-frame MSE / MAE with `keras.ops`.

`FrameMSE` / `FrameMAE` (and the functions `frame_mse` / `frame_mae` they wrap) report the
same numbers as `kerastp.evaluation.mse` / `kerastp.evaluation.mae`: the per-frame SUM over
`H * W * C` of the squared / absolute error of `(B, T, H, W, C)` tensors, averaged over frames,
on the unclipped prediction. Every model compiles with them by default. The NumPy frame metrics
(SSIM, PSNR, the streaming evaluator) and the nowcasting verification live in
`kerastp.evaluation`.

Reference:
- [Tan et al., 2023, "OpenSTL: A Comprehensive Benchmark of Spatio-Temporal Predictive
  Learning"](https://arxiv.org/abs/2306.11249), NeurIPS Datasets and Benchmarks.
"""

import keras

__all__ = ["FrameMAE", "FrameMSE", "frame_mae", "frame_mse"]


def _frame_error_inputs(y_true, y_pred, fn_name):
    y_pred = keras.ops.convert_to_tensor(y_pred)
    y_true = keras.ops.cast(keras.ops.convert_to_tensor(y_true), y_pred.dtype)
    for name, tensor in (("y_pred", y_pred), ("y_true", y_true)):
        if len(tensor.shape) != 5:
            raise ValueError(
                f"{fn_name}: `{name}` must have rank 5 (B, T, H, W, C); received shape "
                f"{tuple(tensor.shape)}."
            )
    return y_true, y_pred


@keras.saving.register_keras_serializable(package="kerastp")
def frame_mse(y_true, y_pred):
    """Per-frame sum of squared errors over `H, W, C`, with `keras.ops`.

    Args:
        y_true: tensor of shape `(B, T, H, W, C)`.
        y_pred: tensor of the same shape.

    Returns:
        Tensor of shape `(B, T)`; its mean is the OpenSTL `mse`.
    """
    y_true, y_pred = _frame_error_inputs(y_true, y_pred, "frame_mse")
    return keras.ops.sum(keras.ops.square(y_pred - y_true), axis=(2, 3, 4))


@keras.saving.register_keras_serializable(package="kerastp")
def frame_mae(y_true, y_pred):
    """Per-frame sum of absolute errors over `H, W, C`, with `keras.ops`.

    Args:
        y_true: tensor of shape `(B, T, H, W, C)`.
        y_pred: tensor of the same shape.

    Returns:
        Tensor of shape `(B, T)`; its mean is the OpenSTL `mae`.
    """
    y_true, y_pred = _frame_error_inputs(y_true, y_pred, "frame_mae")
    return keras.ops.sum(keras.ops.abs(y_pred - y_true), axis=(2, 3, 4))


@keras.saving.register_keras_serializable(package="kerastp")
class FrameMSE(keras.metrics.MeanMetricWrapper):
    """OpenSTL MSE as a Keras metric: per-frame squared-error sum, averaged over frames.

    After `update_state` over any batches its `result()` equals `kerastp.evaluation.mse` on the
    concatenated batches (up to float32 rounding). Unclipped, like `mse`.

    Args:
        name: string name of the metric instance. Defaults to `"frame_mse"`.
        dtype: data type of the metric result.

    Example:

    ```python
    model.compile(optimizer="adam", loss="mse", metrics=[FrameMSE(), FrameMAE()])
    ```
    """

    def __init__(self, name="frame_mse", dtype=None):
        super().__init__(fn=frame_mse, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="kerastp")
class FrameMAE(keras.metrics.MeanMetricWrapper):
    """OpenSTL MAE as a Keras metric: per-frame absolute-error sum, averaged over frames.

    After `update_state` over any batches its `result()` equals `kerastp.evaluation.mae` on the
    concatenated batches (up to float32 rounding). Unclipped, like `mae`.

    Args:
        name: string name of the metric instance. Defaults to `"frame_mae"`.
        dtype: data type of the metric result.

    Example:

    ```python
    model.compile(optimizer="adam", loss="mse", metrics=[FrameMSE(), FrameMAE()])
    ```
    """

    def __init__(self, name="frame_mae", dtype=None):
        super().__init__(fn=frame_mae, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
