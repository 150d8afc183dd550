"""MotionCast: learned motion, semi-Lagrangian advection and a learned growth/decay residual."""

import keras  # noqa: E402  (kerastp.models.base checked the backend)
import numpy as np
from keras import ops  # noqa: E402

from kerastp.layers.optical_flow import lucas_kanade, pyramid_scales
from kerastp.layers.stl_mixer import STLMixerBlock, batch_norm, he_normal_fan_out
from kerastp.layers.warp import semi_lagrangian_displacements, warp
from kerastp.models.base import Forecaster
from kerastp.validation import positive_int

#: Where MotionCast's motion starts (see `motion_prior`).
MOTION_PRIORS = ("lucas_kanade", "none")


@keras.saving.register_keras_serializable(package="kerastp")
class MotionCast(Forecaster):
    """A motion-aware forecaster: what pysteps' extrapolation does, learned end to end.

    Classical nowcasting (pysteps' Lucas-Kanade extrapolation, S-PROG) estimates one motion
    field from the last frames and moves the last observed field along it; recent neural
    nowcasters (e.g. NowcastNet's evolution operator) add a learned term for growth and
    decay. MotionCast does both inside one differentiable Keras model:

    1. motion encoder: time folded into channels `(B, H, W, T*C)` -> patch embedding
       `Conv2D(d, p, stride p)` -> BatchNorm -> GELU -> `motion_blocks` STLight mixer
       blocks (depth-wise 3x3, dilated depth-wise 7x7, point-wise; SPEC §2) -> context
       `(B, H/p, W/p, d)`;
    2. motion field: a dense Lucas-Kanade estimate from the last three frames
       (`kerastp.layers.optical_flow.lucas_kanade`, no weights; `motion_prior="none"` leaves
       it out) plus a learned correction, `Conv2D(2, 3)` on the context (zero-initialised,
       so training starts from Lucas-Kanade extrapolation) resized bilinearly to
       `(B, H, W, 2)`: the backward displacement of one time step, in pixels;
    3. advection: semi-Lagrangian trajectories through that stationary field,
       `D_k = D_{k-1} + v(p + D_{k-1})` (`kerastp.layers.warp.semi_lagrangian_displacements`),
       and the last input frame sampled once per lead time, `A_k(p) = x_T(p + D_k(p))`
       (bilinear; zero outside the domain);
    4. growth/decay residual, the same weights for every lead time `k`: the advected frame
       and a constant channel `k / input_frames` are patch-embedded, added to the context,
       passed through `residual_blocks` mixer blocks, brought back to full resolution with
       `Conv1x1(d -> p*p*r)` + `depth_to_space(p)`, and `Conv3x3([.., A_k] -> C)`
       (zero-initialised) gives `R_k`;
    5. forecast `Y_k = A_k + R_k` for k = 1..output_frames, in one pass.

    The weights do not depend on `output_frames` (a longer horizon follows the same
    trajectories further), so `frames_per_step` is `output_frames` and a shorter forecast is
    a crop of a longer one. Everything is `keras.ops`: it trains on every Keras backend and
    converts to TFLite builtin ops (GATHER, FLOOR, RESIZE_BILINEAR, ...).

    Args:
        input_frames: int, T_in.
        output_frames: int, T_out.
        height: int, frame height; must divide by `patch_size`.
        width: int, frame width; must divide by `patch_size`.
        channels: int, channels per frame (all are advected by the one motion field).
        hidden_dim: int, `d`, the width of the encoder and the residual network.
        motion_blocks: int, mixer blocks of the motion encoder.
        residual_blocks: int, mixer blocks of the residual network.
        patch_size: int, `p`, the encoder's downsampling factor.
        residual_channels: int, `r`, channels of the full-resolution residual features.
        kernel_size_1: int, first depth-wise kernel of the mixer blocks.
        kernel_size_2: int, dilated depth-wise kernel of the mixer blocks.
        dilation: int, dilation of the second depth-wise convolution.
        motion_prior: "lucas_kanade" (the learned motion corrects a dense Lucas-Kanade field
            of the last frames) or "none" (the learned motion alone, starting at rest).
        prior_iterations: int, solves of the Lucas-Kanade prior's iterative refinement
            (`lucas_kanade(iterations=...)`); 1 is a single linearised solve (the default, and
            what models saved before this setting existed used), per grid of
            `prior_downsample`.
        prior_downsample: int or sequence of ints, the prior's coarse grid block size, or
            block sizes from coarse to fine (`lucas_kanade(downsample=...)`); 2 is the
            default and what models saved before this setting existed used;
            `motioncast_radar` takes (2, 1) with one solve on each grid.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        past: (B, input_frames, height, width, channels) float frames in model scale.
        training: bool, BatchNorm mode.

    Example:
    >>> model = MotionCast(input_frames=4, output_frames=6, height=16, width=16, channels=1,
    ...                    hidden_dim=8, motion_blocks=1, residual_blocks=1)
    >>> model(keras.ops.zeros((2, 4, 16, 16, 1))).shape
    (2, 6, 16, 16, 1)

    Reference:
        Pulkkinen et al., "Pysteps: an open-source Python library for probabilistic
        precipitation nowcasting", GMD 2019 (semi-Lagrangian extrapolation); Zhang et al.,
        "Skilful nowcasting of extreme precipitation with NowcastNet", Nature 2023
        (learned motion and evolution).
    """

    default_learning_rate = 1e-3
    # int8 keeps in float what int8 cannot carry: the Lucas-Kanade solve (its DIV meets a zero
    # point), the sample positions of the advection (pixel indices), and the STLight mixers'
    # GELU -> BatchNorm pairs; the shipped radar model's held-out int8 MSE is then -0.06%,
    # its file 16% smaller and no faster than float32 on x86 (benchmarks/results/int8.md).
    int8_float_ops = ("GELU", "MUL")
    int8_float_layers = ("motion_prior", "advection")

    def __init__(
        self,
        input_frames=6,
        output_frames=12,
        height=64,
        width=64,
        channels=1,
        hidden_dim=64,
        motion_blocks=4,
        residual_blocks=2,
        patch_size=4,
        residual_channels=8,
        kernel_size_1=3,
        kernel_size_2=7,
        dilation=3,
        motion_prior="lucas_kanade",
        prior_iterations=1,
        prior_downsample=2,
        **kwargs,
    ):
        super().__init__(input_frames, output_frames, height, width, channels, **kwargs)
        self.hidden_dim = positive_int("hidden_dim", hidden_dim)
        self.motion_blocks = positive_int("motion_blocks", motion_blocks)
        self.residual_blocks = positive_int("residual_blocks", residual_blocks)
        self.patch_size = positive_int("patch_size", patch_size)
        self.residual_channels = positive_int("residual_channels", residual_channels)
        self.kernel_size_1 = positive_int("kernel_size_1", kernel_size_1)
        self.kernel_size_2 = positive_int("kernel_size_2", kernel_size_2)
        self.dilation = positive_int("dilation", dilation)
        if motion_prior not in MOTION_PRIORS:
            raise ValueError(
                f"`motion_prior` must be one of {', '.join(MOTION_PRIORS)}, got "
                f"motion_prior={motion_prior!r}"
            )
        self.motion_prior = motion_prior
        self.prior_iterations = positive_int("prior_iterations", prior_iterations)
        # The frame size must divide the block sizes only where the prior runs.
        size = (self.height, self.width) if motion_prior == "lucas_kanade" else (None, None)
        scales = pyramid_scales(prior_downsample, *size, name="prior_downsample")
        # An int stays an int in the config (models saved before the setting read the same).
        self.prior_downsample = scales[0] if len(scales) == 1 else scales
        p = self.patch_size
        for arg, value in (("height", self.height), ("width", self.width)):
            if value % p:
                raise ValueError(f"`{arg}` must be divisible by patch_size={p}, got {arg}={value}")
        d, dtype = self.hidden_dim, self.dtype_policy

        def mixers(prefix, count):
            return [
                STLMixerBlock(
                    d,
                    kernel_size_1=self.kernel_size_1,
                    kernel_size_2=self.kernel_size_2,
                    dilation=self.dilation,
                    name=f"{prefix}_{i}",
                    dtype=dtype,
                )
                for i in range(count)
            ]

        def patch_embedding(name):
            return keras.layers.Conv2D(
                d,
                p,
                strides=p,
                kernel_initializer=he_normal_fan_out(d * p * p),
                name=name,
                dtype=dtype,
            )

        self.encoder_conv = patch_embedding("encoder_conv")
        self.encoder_norm = batch_norm("encoder_norm", dtype=dtype)
        self.motion_mixers = mixers("motion", self.motion_blocks)
        self.motion_head = keras.layers.Conv2D(
            2, 3, padding="same", kernel_initializer="zeros", name="motion_head", dtype=dtype
        )
        self.lead_conv = patch_embedding("lead_conv")
        self.lead_norm = batch_norm("lead_norm", dtype=dtype)
        self.residual_mixers = mixers("residual", self.residual_blocks)
        self.expand = keras.layers.Conv2D(
            p * p * self.residual_channels, 1, name="expand", dtype=dtype
        )
        self.residual_head = keras.layers.Conv2D(
            self.channels,
            3,
            padding="same",
            kernel_initializer="zeros",
            name="residual_head",
            dtype=dtype,
        )
        self.build(self.input_signature_shape)

    @property
    def frames_per_step(self):
        """One pass forecasts the whole horizon."""
        return self.output_frames

    def build(self, input_shape=None):
        if self.built:
            return
        p, d, c = self.patch_size, self.hidden_dim, self.channels
        h, w = self.height, self.width
        latent = (None, h // p, w // p, d)
        self.encoder_conv.build((None, h, w, self.input_frames * c))
        self.encoder_norm.build(latent)
        for block in (*self.motion_mixers, *self.residual_mixers):
            block.build(latent)
        self.motion_head.build(latent)
        self.lead_conv.build((None, h, w, c + 1))
        self.lead_norm.build(latent)
        self.expand.build(latent)
        self.residual_head.build((None, h, w, self.residual_channels + c))

    def motion(self, window, training=None):
        """(context (B, H/p, W/p, d), velocity (B, H, W, 2)) of an input window."""
        t, h, w, c = self.input_frames, self.height, self.width, self.channels
        x = ops.reshape(ops.transpose(window, (0, 2, 3, 1, 4)), (-1, h, w, t * c))
        x = self.encoder_conv(x)
        x = ops.gelu(self.encoder_norm(x, training=training), approximate=False)
        for block in self.motion_mixers:
            x = block(x, training=training)
        velocity = self.motion_head(x)
        velocity = ops.image.resize(velocity, (h, w), interpolation="bilinear")
        if self.motion_prior == "lucas_kanade" and t >= 2:
            # The name scope lets an int8 export keep the solve in float (`int8_float_layers`).
            with keras.name_scope("motion_prior"):
                prior = lucas_kanade(
                    window,
                    pairs=min(2, t - 1),
                    downsample=self.prior_downsample,
                    iterations=self.prior_iterations,
                )
            velocity = velocity + ops.cast(prior, velocity.dtype)
        return x, velocity

    def forward(self, window, training=None):
        k, h, w, c = self.frames_per_step, self.height, self.width, self.channels
        context, velocity = self.motion(window, training=training)
        last = window[:, -1]
        with keras.name_scope("advection"):  # sample positions: kept float by int8 exports
            advected = [warp(last, d) for d in semi_lagrangian_displacements(velocity, k)]
        # Lead times go to the batch axis (b-major), so one set of weights serves every lead.
        stacked = ops.stack(advected, axis=1)
        advected = ops.reshape(stacked, (-1, h, w, c))
        lead = np.arange(1, k + 1, dtype="float32").reshape(1, k, 1, 1, 1) / self.input_frames
        lead = ops.zeros_like(stacked[..., :1]) + ops.cast(lead, stacked.dtype)
        lead = ops.reshape(lead, (-1, h, w, 1))
        x = self.lead_conv(ops.concatenate([advected, lead], axis=-1))
        x = ops.gelu(self.lead_norm(x, training=training), approximate=False)
        x = x + ops.repeat(context, k, axis=0)
        for block in self.residual_mixers:
            x = block(x, training=training)
        x = ops.depth_to_space(self.expand(x), self.patch_size)
        residual = self.residual_head(ops.concatenate([x, advected], axis=-1))
        return ops.reshape(advected + residual, (-1, k, h, w, c))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "motion_blocks": self.motion_blocks,
                "residual_blocks": self.residual_blocks,
                "patch_size": self.patch_size,
                "residual_channels": self.residual_channels,
                "kernel_size_1": self.kernel_size_1,
                "kernel_size_2": self.kernel_size_2,
                "dilation": self.dilation,
                "motion_prior": self.motion_prior,
                "prior_iterations": self.prior_iterations,
                "prior_downsample": (
                    self.prior_downsample
                    if isinstance(self.prior_downsample, int)
                    else list(self.prior_downsample)
                ),
            }
        )
        return config
