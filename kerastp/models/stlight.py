"""STLight: recurrent-free, fully convolutional spatio-temporal forecasting."""

import math

import keras  # noqa: E402  (kerastp.models.base checked the backend)
from keras import ops  # noqa: E402

from kerastp.layers.stl_mixer import STLMixerBlock, batch_norm, he_normal_fan_out
from kerastp.models.base import Forecaster
from kerastp.validation import positive_int


@keras.saving.register_keras_serializable(package="kerastp")
class STLight(Forecaster):
    """STLight (Alfarano et al., WACV 2025), faithful to kerastp's SPEC §2.

    Time is folded into channels, so every layer sees all frames of the clip at once:

    1. `(B, T, H, W, C) -> (B, H, W, T*C)`, frame-major;
    2. patch encoder: `Conv2D(d, kernel=p*max(1, O), stride=p)` -> BatchNorm -> GELU;
    3. `depth` `STLMixerBlock`s with a skip from the input of block `depth//3` to the input
       of block `2*depth//3`;
    4. `depth_to_space(p)`: (B, H/p, W/p, d) -> (B, H, W, d/p^2);
    5. reassemble: Conv1x1(d/p^2 -> T_out*C), no activation;
    6. unfold to (B, T_out, H, W, C).

    Learnable layers are one dense encoder convolution, depth-wise and point-wise
    convolutions and BatchNorm affine parameters. When `output_frames > input_frames` the
    network predicts `input_frames` frames per pass and `call()` rolls out.

    Args:
        input_frames: int, T_in.
        output_frames: int, T_out.
        height: int, frame height; must divide by `patch_size`.
        width: int, frame width; must divide by `patch_size`.
        channels: int, channels per frame.
        hidden_dim: int, `d`, the mixer width; must divide by `patch_size**2`.
        depth: int, number of mixer blocks.
        patch_size: int, `p`.
        overlap: int, `O`; 0 gives a `p x p` encoder kernel without padding, `O > 0` a
            `p*O` kernel zero-padded so that the output stays `H/p x W/p`.
        kernel_size_1: int, first depth-wise kernel.
        kernel_size_2: int, dilated depth-wise kernel.
        dilation: int, dilation of the second depth-wise convolution.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        past: (B, input_frames, height, width, channels) float frames in model scale.
        training: bool, BatchNorm mode.

    Example:
    >>> model = STLight(input_frames=4, output_frames=6, height=16, width=16, channels=1,
    ...                 hidden_dim=16, depth=2)
    >>> model(keras.ops.zeros((2, 4, 16, 16, 1))).shape
    (2, 6, 16, 16, 1)

    Reference:
        Alfarano, Venuto, Sartori, Bouchard, Milani, "Efficient Spatio-Temporal Forecasting
        with STLight", WACV 2025, arXiv:2411.10198.
    """

    default_learning_rate = 3e-3
    #: The PyTorch twin declares its depth-wise convolutions with padding="same", which
    #: fvcore does not count (see `kerastp.flops`).
    fvcore_skips_same_padding = True
    # BatchNorm after GELU scales each channel of a per-tensor int8 GELU output: kept in
    # float, the trained demo model's int8 MSE goes from +57% to +0.8% and STLight-XS runs
    # faster than fully integer (benchmarks/results/int8.md).
    int8_float_ops = ("GELU", "MUL")

    def __init__(
        self,
        input_frames=10,
        output_frames=10,
        height=64,
        width=64,
        channels=1,
        hidden_dim=800,
        depth=16,
        patch_size=2,
        overlap=0,
        kernel_size_1=3,
        kernel_size_2=7,
        dilation=3,
        **kwargs,
    ):
        super().__init__(input_frames, output_frames, height, width, channels, **kwargs)
        self.hidden_dim = positive_int("hidden_dim", hidden_dim)
        self.depth = positive_int("depth", depth)
        self.patch_size = positive_int("patch_size", patch_size)
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
            raise ValueError(f"`overlap` must be a non-negative integer, got overlap={overlap!r}")
        self.overlap = overlap
        self.kernel_size_1 = positive_int("kernel_size_1", kernel_size_1)
        self.kernel_size_2 = positive_int("kernel_size_2", kernel_size_2)
        self.dilation = positive_int("dilation", dilation)
        p = self.patch_size
        for arg, value in (("height", self.height), ("width", self.width)):
            if value % p:
                raise ValueError(f"`{arg}` must be divisible by patch_size={p}, got {arg}={value}")
        if self.hidden_dim % (p * p):
            raise ValueError(
                f"`hidden_dim` must be divisible by patch_size**2={p * p} for the "
                f"depth_to_space reconstruction, got hidden_dim={self.hidden_dim}"
            )

        kernel = p * max(1, overlap)
        in_channels = self.input_frames * self.channels
        self.encoder_padding = (
            keras.layers.ZeroPadding2D((kernel - p) // 2, name="encoder_padding")
            if overlap > 0 and kernel > p
            else None
        )
        self.encoder_conv = keras.layers.Conv2D(
            self.hidden_dim,
            kernel,
            strides=p,
            padding="valid",
            kernel_initializer=he_normal_fan_out(self.hidden_dim * kernel * kernel),
            bias_initializer="zeros",
            name="encoder_conv",
        )
        self.encoder_norm = batch_norm("encoder_norm")
        self.mixer_blocks = [
            STLMixerBlock(
                self.hidden_dim,
                kernel_size_1=self.kernel_size_1,
                kernel_size_2=self.kernel_size_2,
                dilation=self.dilation,
                name=f"mixer_{i}",
            )
            for i in range(self.depth)
        ]
        shuffled = self.hidden_dim // (p * p)
        bound = 1.0 / math.sqrt(shuffled)
        self.reassemble = keras.layers.Conv2D(
            self.frames_per_step * self.channels,
            1,
            kernel_initializer=keras.initializers.RandomUniform(-bound, bound),
            bias_initializer=keras.initializers.RandomUniform(-bound, bound),
            name="reassemble",
        )
        self._in_channels = in_channels
        self.build(self.input_signature_shape)

    @property
    def skip_blocks(self):
        """(store, add): the skip takes the input of block `store` to that of block `add`."""
        return self.depth // 3, 2 * self.depth // 3

    def build(self, input_shape=None):
        if self.built:
            return
        p = self.patch_size
        folded = (None, self.height, self.width, self._in_channels)
        if self.encoder_padding is not None:
            self.encoder_padding.build(folded)
            folded = self.encoder_padding.compute_output_shape(folded)
        self.encoder_conv.build(folded)
        latent = (None, self.height // p, self.width // p, self.hidden_dim)
        self.encoder_norm.build(latent)
        for block in self.mixer_blocks:
            block.build(latent)
        self.reassemble.build((None, self.height, self.width, self.hidden_dim // (p * p)))

    def forward(self, window, training=None):
        t, h, w, c = self.input_frames, self.height, self.width, self.channels
        # (B, T, H, W, C) -> (B, H, W, T*C), frame-major channels.
        x = ops.reshape(ops.transpose(window, (0, 2, 3, 1, 4)), (-1, h, w, t * c))
        if self.encoder_padding is not None:
            x = self.encoder_padding(x)
        x = self.encoder_conv(x)
        x = ops.gelu(self.encoder_norm(x, training=training), approximate=False)
        store, add = self.skip_blocks
        skip = None
        for i, block in enumerate(self.mixer_blocks):
            if store != add:
                if i == store:
                    skip = x
                if i == add:
                    x = ops.add(x, skip)
            x = block(x, training=training)
        x = ops.depth_to_space(x, self.patch_size)
        x = self.reassemble(x)
        k = self.frames_per_step
        # (B, H, W, k*C) -> (B, k, H, W, C)
        return ops.transpose(ops.reshape(x, (-1, h, w, k, c)), (0, 3, 1, 2, 4))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "depth": self.depth,
                "patch_size": self.patch_size,
                "overlap": self.overlap,
                "kernel_size_1": self.kernel_size_1,
                "kernel_size_2": self.kernel_size_2,
                "dilation": self.dilation,
            }
        )
        return config
