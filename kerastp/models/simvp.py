"""SimVP (Gao et al. 2022; Tan et al. 2022, gSTA translator) at OpenSTL fidelity."""

import keras  # noqa: E402  (kerastp.models.base checked the backend)
import numpy as np
from keras import ops  # noqa: E402

from kerastp.layers.conv_lstm_cell import odd_kernel
from kerastp.layers.gsta import GSTABlock, pytorch_default_init
from kerastp.layers.spatial_codec import (
    build_decoder,
    build_encoder,
    decode_frames,
    encode_frames,
    latent_size,
    spatial_decoder,
    spatial_encoder,
)
from kerastp.layers.tau_block import TAUBlock
from kerastp.models.base import Forecaster
from kerastp.validation import positive_int

#: Translator block per `model_type`.
TRANSLATOR_BLOCKS = {"gsta": GSTABlock, "tau": TAUBlock}


def _default_conv(filters, fan_in, name):
    kernel_init, bias_init = pytorch_default_init(fan_in)
    return keras.layers.Conv2D(
        filters, 1, kernel_initializer=kernel_init, bias_initializer=bias_init, name=name
    )


def drop_path_rates(num_blocks, drop_path):
    """OpenSTL's stochastic-depth rule: `linspace(1e-2, drop_path, num_blocks)`.

    Note that OpenSTL starts at 0.01 even for `drop_path=0`; kerastp keeps that.
    """
    return [float(rate) for rate in np.linspace(1e-2, drop_path, num_blocks)]


@keras.saving.register_keras_serializable(package="kerastp")
class SimVP(Forecaster):
    """SimVP: spatial encoder, a recurrent-free translator over time folded into channels,
    spatial decoder.

    1. Encoder, shared over frames (`kerastp.layers.spatial_codec`, also USTEP's):
       `num_spatial` ConvSC layers (conv, GroupNorm(2), SiLU), strides 1, 2, 1, 2, ...; the
       first layer's output of every frame is kept as a skip.
    2. Translator: latents of the `T_in` frames stacked on channels (`T_in * hid_s`,
       frame-major), `num_temporal` blocks (`model_type` "gsta": `GSTABlock`, "tau":
       `TAUBlock`) with MLP ratio `mlp_ratio`. When `T_in * hid_s != hid_t` the first block
       runs at `T_in * hid_s` and is followed by a 1x1 reduction to `hid_t`; the last runs at
       `hid_t` and is followed by a 1x1 expansion back (OpenSTL's `MidMetaNet`).
    3. Decoder, shared over frames: mirror of the encoder (upsampling by conv +
       depth_to_space), each frame's skip added before the last layer, 1x1 readout.

    One pass maps `T_in` frames to the next `T_in`; `call()` crops or rolls out to
    `output_frames`.

    Args:
        input_frames, output_frames, height, width, channels: the forecasting contract.
        hid_s: int, spatial channels (64).
        hid_t: int, translator channels (512).
        num_spatial: int, ConvSC layers in encoder and decoder (4).
        num_temporal: int, translator blocks, >= 2 (8).
        model_type: "gsta" (SimVP v2) or "tau" (TAU's blocks).
        mlp_ratio: float, translator MLP expansion (8).
        kernel_size: int, the translator's large kernel (21).
        drop_rate: float, MLP dropout.
        drop_path: float, stochastic depth of the last block; earlier blocks follow
            `drop_path_rates`.
        spatio_kernel_enc: int, odd, encoder conv size (3).
        spatio_kernel_dec: int, odd, decoder conv size (3).
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        past: (B, input_frames, height, width, channels) float frames in model scale.
        training: bool.

    Example:
    >>> model = SimVP(input_frames=4, output_frames=4, height=16, width=16, channels=1,
    ...               hid_s=8, hid_t=16, num_spatial=2, num_temporal=2, kernel_size=7)
    >>> model(keras.ops.zeros((2, 4, 16, 16, 1))).shape
    (2, 4, 16, 16, 1)

    Reference:
        Gao, Tan, Wu, Li, "SimVP: Simpler yet Better Video Prediction", CVPR 2022; Tan, Li,
        Gao, Li, "SimVP: Towards Simple yet Powerful Spatiotemporal Predictive Learning",
        arXiv:2211.12509; OpenSTL `openstl/models/simvp_model.py`.
    """

    # The first encoder layer (conv, GroupNorm, SiLU on the raw frames) in int8 loses the
    # GroupNorm variance of heavy-tailed inputs; kept in float, the radar-trained simvp_tiny's
    # int8 MSE goes from +21.9% to +5.5% (benchmarks/results/int8.md).
    int8_float_layers = ("encoder_0",)

    def __init__(
        self,
        input_frames=10,
        output_frames=10,
        height=64,
        width=64,
        channels=1,
        hid_s=64,
        hid_t=512,
        num_spatial=4,
        num_temporal=8,
        model_type="gsta",
        mlp_ratio=8.0,
        kernel_size=21,
        drop_rate=0.0,
        drop_path=0.0,
        spatio_kernel_enc=3,
        spatio_kernel_dec=3,
        **kwargs,
    ):
        super().__init__(input_frames, output_frames, height, width, channels, **kwargs)
        self.hid_s = positive_int("hid_s", hid_s)
        self.hid_t = positive_int("hid_t", hid_t)
        self.num_spatial = positive_int("num_spatial", num_spatial)
        self.num_temporal = positive_int("num_temporal", num_temporal)
        if self.num_temporal < 2:
            raise ValueError(
                f"`num_temporal` must be >= 2 (OpenSTL's MidMetaNet), got {num_temporal!r}"
            )
        if model_type not in TRANSLATOR_BLOCKS:
            raise ValueError(
                f"`model_type` must be one of {sorted(TRANSLATOR_BLOCKS)}, got {model_type!r}"
            )
        self.model_type = model_type
        if not float(mlp_ratio) > 1.0:
            raise ValueError(f"`mlp_ratio` must be > 1, got mlp_ratio={mlp_ratio!r}")
        self.mlp_ratio = float(mlp_ratio)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        self.drop_rate = float(drop_rate)
        self.drop_path = float(drop_path)
        for arg, value in (("drop_rate", self.drop_rate), ("drop_path", self.drop_path)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{arg}` must lie in [0, 1), got {arg}={value!r}")
        self.spatio_kernel_enc = odd_kernel("spatio_kernel_enc", spatio_kernel_enc)
        self.spatio_kernel_dec = odd_kernel("spatio_kernel_dec", spatio_kernel_dec)
        if self.hid_s % 2:
            raise ValueError(f"`hid_s` must be even (GroupNorm(2)), got hid_s={hid_s!r}")
        self.latent_height, self.latent_width = latent_size(
            self.height, self.width, self.num_spatial
        )

        self.encoder = spatial_encoder(self.hid_s, self.num_spatial, self.spatio_kernel_enc)
        self.decoder = spatial_decoder(self.hid_s, self.num_spatial, self.spatio_kernel_dec)
        self.readout = _default_conv(self.channels, self.hid_s, "readout")

        stacked = self.input_frames * self.hid_s
        block = TRANSLATOR_BLOCKS[self.model_type]
        self.translator_widths = [stacked] + [self.hid_t] * (self.num_temporal - 1)
        self.translator = [
            block(
                width,
                kernel_size=self.kernel_size,
                mlp_ratio=self.mlp_ratio,
                drop_rate=self.drop_rate,
                drop_path=rate,
                name=f"translator_{i}",
            )
            for i, (width, rate) in enumerate(
                zip(
                    self.translator_widths,
                    drop_path_rates(self.num_temporal, self.drop_path),
                    strict=True,
                )
            )
        ]
        self.reduce = self.expand = None
        if stacked != self.hid_t:
            self.reduce = _default_conv(self.hid_t, stacked, "translator_reduce")
            self.expand = _default_conv(stacked, self.hid_t, "translator_expand")
        self.build(self.input_signature_shape)

    def build(self, input_shape=None):
        if self.built:
            return
        build_encoder(self.encoder, (None, self.height, self.width, self.channels))
        latent = (None, self.latent_height, self.latent_width)
        for block, width in zip(self.translator, self.translator_widths, strict=True):
            block.build((*latent, width))
        if self.reduce is not None:
            self.reduce.build((*latent, self.input_frames * self.hid_s))
            self.expand.build((*latent, self.hid_t))
        build_decoder(self.decoder, self.readout, (*latent, self.hid_s))

    def encode(self, frames):
        """(B, T, H, W, C) -> latents (B*T, h, w, hid_s) and skips (B*T, H, W, hid_s)."""
        return encode_frames(
            self.encoder, ops.reshape(frames, (-1, self.height, self.width, self.channels))
        )

    def translate(self, latents, training=None):
        """Latents (B*T, h, w, hid_s) -> translated latents of the same shape."""
        t, h, w, c = self.input_frames, self.latent_height, self.latent_width, self.hid_s
        z = ops.reshape(latents, (-1, t, h, w, c))
        z = ops.reshape(ops.transpose(z, (0, 2, 3, 1, 4)), (-1, h, w, t * c))
        last = len(self.translator) - 1
        for i, block in enumerate(self.translator):
            z = block(z, training=training)
            if self.reduce is not None and i == 0:
                z = self.reduce(z)
            if self.expand is not None and i == last:
                z = self.expand(z)
        z = ops.transpose(ops.reshape(z, (-1, h, w, t, c)), (0, 3, 1, 2, 4))
        return ops.reshape(z, (-1, h, w, c))

    def decode(self, latents, skip):
        """Latents (B*T, h, w, hid_s) and skips -> frames (B, T, H, W, C)."""
        x = decode_frames(self.decoder, self.readout, latents, skip)
        return ops.reshape(x, (-1, self.input_frames, self.height, self.width, self.channels))

    def forward(self, window, training=None):
        latents, skip = self.encode(window)
        future = self.decode(self.translate(latents, training=training), skip)
        return future[:, : self.frames_per_step]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hid_s": self.hid_s,
                "hid_t": self.hid_t,
                "num_spatial": self.num_spatial,
                "num_temporal": self.num_temporal,
                "model_type": self.model_type,
                "mlp_ratio": self.mlp_ratio,
                "kernel_size": self.kernel_size,
                "drop_rate": self.drop_rate,
                "drop_path": self.drop_path,
                "spatio_kernel_enc": self.spatio_kernel_enc,
                "spatio_kernel_dec": self.spatio_kernel_dec,
            }
        )
        return config
