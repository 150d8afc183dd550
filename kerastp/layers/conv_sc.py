"""ConvSC: the conv + GroupNorm + SiLU unit of SimVP's spatial encoder and decoder."""

import keras
from keras import ops

from kerastp.layers.group_norm import GroupNormalization
from kerastp.validation import positive_int


@keras.saving.register_keras_serializable(package="kerastp")
class ConvSC(keras.layers.Layer):
    """SimVP's ConvSC: Conv(k) -> GroupNorm(2) -> SiLU, optionally down- or up-sampling by 2.

    - `sampling="down"`: stride 2, zero padding `(k - 1) // 2` on each side (PyTorch's
      `padding=(k - stride + 1) // 2`), so an even H becomes H/2;
    - `sampling="up"`: stride 1 to `4 * filters` channels, then `depth_to_space(2)`;
    - `sampling=None`: stride 1, 'same' padding.

    Weights: truncated normal with std 0.02, zero bias (OpenSTL's `BasicConv2d`).

    Args:
        filters: int, output channels.
        kernel_size: int, odd.
        sampling: None, "down" or "up".
        act_norm: bool, apply GroupNorm(2) and SiLU.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:
    >>> ConvSC(8, sampling="down")(keras.ops.zeros((1, 16, 16, 3))).shape
    (1, 8, 8, 8)

    Reference:
        Gao et al., "SimVP: Simpler yet Better Video Prediction", CVPR 2022; OpenSTL
        `openstl/modules/simvp_modules.py`.
    """

    def __init__(self, filters, kernel_size=3, sampling=None, act_norm=True, **kwargs):
        super().__init__(**kwargs)
        positive_int("filters", filters)
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, int)
            or kernel_size % 2 == 0
        ):
            raise ValueError(
                f"`kernel_size` must be an odd integer, got kernel_size={kernel_size!r}"
            )
        if sampling not in (None, "down", "up"):
            raise ValueError(f"`sampling` must be None, 'down' or 'up', got sampling={sampling!r}")
        if filters % 2 and act_norm:
            raise ValueError(f"GroupNorm(2) needs an even `filters`, got filters={filters}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.sampling = sampling
        self.act_norm = bool(act_norm)
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.padding = (
            keras.layers.ZeroPadding2D(
                (kernel_size - 1) // 2, name="padding", dtype=self.dtype_policy
            )
            if sampling == "down"
            else None
        )
        self.conv = keras.layers.Conv2D(
            4 * filters if sampling == "up" else filters,
            kernel_size,
            strides=2 if sampling == "down" else 1,
            padding="valid" if sampling == "down" else "same",
            kernel_initializer=init,
            name="conv",
            dtype=self.dtype_policy,
        )
        self.norm = (
            GroupNormalization(
                groups=2, epsilon=1e-5, name="norm", dtype=self.dtype_policy
            )
            if act_norm
            else None
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.padding is not None:
            self.padding.build(shape)
            shape = self.padding.compute_output_shape(shape)
        self.conv.build(shape)
        if self.norm is not None:
            self.norm.build(self.compute_output_shape(input_shape))

    def call(self, inputs):
        x = inputs if self.padding is None else self.padding(inputs)
        x = self.conv(x)
        if self.sampling == "up":
            x = ops.depth_to_space(x, 2)
        if self.norm is not None:
            x = ops.silu(self.norm(x))
        return x

    def compute_output_shape(self, input_shape):
        batch, h, w = input_shape[0], input_shape[1], input_shape[2]
        if self.sampling == "down":
            h, w = (None if h is None else (h + 1) // 2), (None if w is None else (w + 1) // 2)
        elif self.sampling == "up":
            h, w = (None if h is None else 2 * h), (None if w is None else 2 * w)
        return (batch, h, w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "sampling": self.sampling,
                "act_norm": self.act_norm,
            }
        )
        return config
