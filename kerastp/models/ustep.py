"""USTEP: unified recurrent (micro-temporal) and recurrent-free (macro-temporal) forecasting."""

import keras  # noqa: E402  (kerastp.models.base checked the backend)
from keras import ops  # noqa: E402

from kerastp.layers.gated_update import GatedUpdate
from kerastp.layers.micro_cell import MicroTemporalCell
from kerastp.layers.spatial_codec import (
    build_decoder,
    build_encoder,
    decode_frames,
    encode_frames,
    latent_size,
    spatial_decoder,
    spatial_encoder,
)
from kerastp.layers.stacked_frame_attention import StackedFrameAttention
from kerastp.models.base import Forecaster
from kerastp.validation import positive_int


def _fraction(name, value):
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1), got {name}={value!r}")
    return float(value)


def _non_negative(name, value):
    if not float(value) >= 0.0:
        raise ValueError(f"`{name}` must be >= 0, got {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="kerastp")
class USTEP(Forecaster):
    """USTEP (Tan et al., arXiv 2310.05829) as specified in kerastp's SPEC §3.

    The input frames are encoded by a shared spatial encoder (SimVP's ConvSC stack,
    `kerastp.layers.spatial_codec`), then
    modelled at two temporal scales:

    - micro: frames grouped into `T_in / micro_frames` segments stacked on channels; a
      `keras.layers.RNN(MicroTemporalCell, unroll=True)` runs over the segments (hidden-state
      recurrence with a convolutional gated update);
    - macro: frames grouped into `T_in / macro_frames` segments stacked on channels,
      projected, then `StackedFrameAttention` blocks (self-attention across the positions of
      the stacked map: cross-frame global attention); consecutive segments are linked by a
      `GatedUpdate`.

    The last micro state `h` and macro state `H` are fused, `z = h + sigmoid(Conv1x1([h, H])) * H`,
    projected to the latents of the next `micro_frames` frames and decoded (mirror of the
    encoder, skip from the first encoder layer of the last input frame). Longer horizons
    continue the micro recurrence on the encoded predictions inside `call()`; the output is
    cropped to `output_frames`. `micro_frames = macro_frames = 1` behaves like a recurrent
    model, `micro_frames = macro_frames = T_in` like a recurrent-free one.

    Optional training objectives (added with `add_loss` when `training=True` only, so they are
    absent from inference and exported graphs):

    - hierarchical masked prediction (`mask_weight > 0`): whole frames inside micro segments
      (probability `frame_mask_ratio`) and `mask_patch_size` patches inside the remaining frames
      (probability `patch_mask_ratio`) are zeroed; the micro state of each segment is decoded
      back to the segment's frames and the MSE on the masked pixels is the loss;
    - contrastive regulariser (`contrastive_weight > 0`): InfoNCE between the pooled, projected
      last micro and macro states of the same sequence, the batch's other sequences as
      negatives (symmetric, temperature `temperature`).

    Args:
        input_frames, output_frames, height, width, channels: the forecasting contract.
        hid_s: int, spatial channels.
        hid_t: int, temporal channels.
        num_spatial: int, ConvSC layers in the encoder (and decoder); strides 1, 2, 1, 2, ...
        micro_frames: int, `dt`, frames per micro segment; divides `input_frames`.
        macro_frames: int, `DT`, frames per macro segment; divides `input_frames`, >= `dt`.
        micro_blocks: int, gSTA blocks in the micro cell.
        macro_blocks: int, attention blocks per macro segment.
        num_heads: int, attention heads; divides `hid_t`.
        kernel_size: int, gSTA large kernel.
        mlp_ratio: float, expansion of the gSTA and attention feed-forwards.
        mask_weight: float, weight of the masked-prediction loss (0 disables it).
        frame_mask_ratio: float, probability that a frame is masked whole.
        patch_mask_ratio: float, probability that a patch of another frame is masked.
        mask_patch_size: int, side of the masked patches in pixels.
        contrastive_weight: float, weight of the InfoNCE loss (0 disables it).
        temperature: float, InfoNCE temperature.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        past: (B, input_frames, height, width, channels) frames in model scale.
        training: bool; turns on BatchNorm updates and the auxiliary objectives.

    Example:
    >>> model = USTEP(4, 6, 16, 16, 1, hid_s=8, hid_t=16, num_spatial=2, micro_frames=2,
    ...               macro_frames=4, micro_blocks=1, macro_blocks=1, num_heads=2, kernel_size=5)
    >>> model(keras.ops.zeros((2, 4, 16, 16, 1))).shape
    (2, 6, 16, 16, 1)

    Reference:
        Tan, Li, Wang, Liu, Li, "Temporal Attention Unit"/"USTEP: Spatio-Temporal Predictive
        Learning under a Unified View", arXiv:2310.05829. Where the paper is silent, the layer
        list follows kerastp's SPEC §3.
    """

    #: Operator types XNNPACK does not run in int8: each falls back to LiteRT's kernels and
    #: cuts the delegated graph (ustep_tiny: 76 partitions, `kerastp.lite.delegation`), and
    #: the int8 file ran at 1.00 / 1.27x its fp32 latency (1 / 2 threads). Kept in float they
    #: stay delegated, with QUANTIZE / DEQUANTIZE around them (34 partitions): 0.74 / 0.74x
    #: fp32 at the same +3.2% held-out MSE (benchmarks/results/int8.md, radar-trained).
    int8_float_ops = ("GELU", "RSQRT", "SOFTMAX", "BATCH_MATMUL", "SQUARED_DIFFERENCE")

    @property
    def int8_float_layers(self):
        """The first encoder layer (GroupNorm of the raw frames) and the last decoder layer
        (back at the frames' scale): in int8 either alone leaves the radar-trained
        ustep_tiny's MSE at +11% to +15%, the two in float bring it to +3.2% (fully integer:
        +14.6%; a greedy search over its 16 layers and 8 operator types)."""
        return ("encoder_0", f"decoder_{self.num_spatial - 1}")

    def __init__(
        self,
        input_frames=10,
        output_frames=10,
        height=64,
        width=64,
        channels=1,
        hid_s=64,
        hid_t=256,
        num_spatial=4,
        micro_frames=2,
        macro_frames=5,
        micro_blocks=2,
        macro_blocks=2,
        num_heads=8,
        kernel_size=21,
        mlp_ratio=4.0,
        mask_weight=0.0,
        frame_mask_ratio=0.25,
        patch_mask_ratio=0.25,
        mask_patch_size=8,
        contrastive_weight=0.0,
        temperature=0.1,
        **kwargs,
    ):
        super().__init__(input_frames, output_frames, height, width, channels, **kwargs)
        self.hid_s = positive_int("hid_s", hid_s)
        self.hid_t = positive_int("hid_t", hid_t)
        self.num_spatial = positive_int("num_spatial", num_spatial)
        self.micro_frames = positive_int("micro_frames", micro_frames)
        self.macro_frames = positive_int("macro_frames", macro_frames)
        self.micro_blocks = int(micro_blocks)
        self.macro_blocks = int(macro_blocks)
        if self.micro_blocks < 0 or self.macro_blocks < 0:
            raise ValueError(
                f"`micro_blocks` and `macro_blocks` must be >= 0, got {micro_blocks!r}, "
                f"{macro_blocks!r}"
            )
        self.num_heads = positive_int("num_heads", num_heads)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        self.mlp_ratio = float(mlp_ratio)
        self.mask_weight = _non_negative("mask_weight", mask_weight)
        self.frame_mask_ratio = _fraction("frame_mask_ratio", frame_mask_ratio)
        self.patch_mask_ratio = _fraction("patch_mask_ratio", patch_mask_ratio)
        self.mask_patch_size = positive_int("mask_patch_size", mask_patch_size)
        self.contrastive_weight = _non_negative("contrastive_weight", contrastive_weight)
        if not float(temperature) > 0:
            raise ValueError(f"`temperature` must be > 0, got temperature={temperature!r}")
        self.temperature = float(temperature)

        t_in = self.input_frames
        for arg, value in (
            ("micro_frames", self.micro_frames),
            ("macro_frames", self.macro_frames),
        ):
            if t_in % value:
                raise ValueError(f"`{arg}` must divide input_frames={t_in}, got {arg}={value}")
        if self.micro_frames > self.macro_frames:
            raise ValueError(
                "`micro_frames` (dt) must not exceed `macro_frames` (DT), got "
                f"micro_frames={self.micro_frames}, macro_frames={self.macro_frames}"
            )
        if self.hid_t % self.num_heads:
            raise ValueError(f"`num_heads`={self.num_heads} must divide `hid_t`={self.hid_t}")
        self.latent_height, self.latent_width = latent_size(
            self.height, self.width, self.num_spatial
        )
        for arg, value in (("height", self.height), ("width", self.width)):
            if self.mask_weight and value % self.mask_patch_size:
                raise ValueError(
                    f"`{arg}`={value} must be divisible by mask_patch_size={self.mask_patch_size}"
                )

        self.encoder = spatial_encoder(self.hid_s, self.num_spatial)
        self.decoder = spatial_decoder(self.hid_s, self.num_spatial)
        self.readout = keras.layers.Conv2D(self.channels, 1, name="readout")
        self.micro_cell = MicroTemporalCell(
            self.hid_t,
            self.latent_height,
            self.latent_width,
            num_blocks=self.micro_blocks,
            kernel_size=self.kernel_size,
            mlp_ratio=self.mlp_ratio,
            name="micro_cell",
        )
        self.micro_rnn = keras.layers.RNN(
            self.micro_cell,
            unroll=True,
            return_sequences=True,
            return_state=True,
            name="micro_rnn",
        )
        self.macro_projection = keras.layers.Conv2D(self.hid_t, 1, name="macro_projection")
        self.macro_blocks_ = [
            StackedFrameAttention(
                self.hid_t, self.num_heads, mlp_ratio=self.mlp_ratio, name=f"macro_attention_{i}"
            )
            for i in range(self.macro_blocks)
        ]
        # Links consecutive macro segments; a single segment (DT = T_in) has nothing to link.
        self.macro_update = (
            GatedUpdate(self.hid_t, name="macro_update")
            if self.input_frames // self.macro_frames > 1
            else None
        )
        self.fusion_gate = keras.layers.Conv2D(self.hid_t, 1, name="fusion_gate")
        self.predict_head = keras.layers.Conv2D(
            self.micro_frames * self.hid_s, 1, name="predict_head"
        )
        self.reconstruct_head = (
            keras.layers.Conv2D(self.micro_frames * self.hid_s, 1, name="reconstruct_head")
            if self.mask_weight
            else None
        )
        self.contrast_micro = self.contrast_macro = None
        if self.contrastive_weight:
            self.contrast_micro = keras.layers.Dense(self.hid_t, name="contrast_micro")
            self.contrast_macro = keras.layers.Dense(self.hid_t, name="contrast_macro")
        self.seed_generator = keras.random.SeedGenerator(0)
        self.build(self.input_signature_shape)

    @property
    def frames_per_step(self):
        # USTEP rolls out itself, continuing its micro recurrence on its own predictions.
        return self.output_frames

    def build(self, input_shape=None):
        if self.built:
            return
        build_encoder(self.encoder, (None, self.height, self.width, self.channels))
        latent = (None, self.latent_height, self.latent_width, self.hid_t)
        n_micro = self.input_frames // self.micro_frames
        segment = (None, self.latent_height, self.latent_width, self.micro_frames * self.hid_s)
        self.micro_rnn.build((None, n_micro, *segment[1:]))
        self.macro_projection.build(
            (None, self.latent_height, self.latent_width, self.macro_frames * self.hid_s)
        )
        for block in self.macro_blocks_:
            block.build(latent)
        if self.macro_update is not None:
            self.macro_update.build((latent, latent))
        self.fusion_gate.build((*latent[:-1], 2 * self.hid_t))
        self.predict_head.build(latent)
        if self.reconstruct_head is not None:
            self.reconstruct_head.build(latent)
        build_decoder(
            self.decoder, self.readout, (None, self.latent_height, self.latent_width, self.hid_s)
        )
        if self.contrast_micro is not None:
            self.contrast_micro.build((None, self.hid_t))
            self.contrast_macro.build((None, self.hid_t))

    # ------------------------------------------------------------------ pieces

    def encode(self, frames):
        """(B, T, H, W, C) -> latents (B, T, h, w, hid_s) and the skip of the last frame."""
        t = frames.shape[1]
        x, skip = encode_frames(
            self.encoder, ops.reshape(frames, (-1, self.height, self.width, self.channels))
        )
        latents = ops.reshape(x, (-1, t, self.latent_height, self.latent_width, self.hid_s))
        skip = ops.reshape(skip, (-1, t, self.height, self.width, self.hid_s))[:, -1]
        return latents, skip

    def _stack(self, latents, start, length):
        """Frames [start, start+length) of (B, T, h, w, c) stacked on channels, frame-major."""
        segment = latents[:, start : start + length]
        segment = ops.transpose(segment, (0, 2, 3, 1, 4))
        return ops.reshape(
            segment, (-1, self.latent_height, self.latent_width, length * self.hid_s)
        )

    def _segments(self, latents, length):
        """(B, T, h, w, c) -> (B, T/length, h, w, length*c)."""
        segments = [
            self._stack(latents, start, length) for start in range(0, latents.shape[1], length)
        ]
        return ops.stack(segments, axis=1)

    def macro_state(self, latents, training=None):
        """The last macro state H after the gated links over the macro segments."""
        state = None
        for start in range(0, self.input_frames, self.macro_frames):
            u = self.macro_projection(self._stack(latents, start, self.macro_frames))
            for block in self.macro_blocks_:
                u = block(u, training=training)
            state = u if state is None else self.macro_update((u, state))
        return state

    def fuse(self, micro, macro):
        gate = ops.sigmoid(self.fusion_gate(ops.concatenate([micro, macro], axis=-1)))
        return micro + gate * macro

    def decode(self, state, head, skip):
        """A state (B, h, w, hid_t) -> the next `micro_frames` frames (B, dt, H, W, C)."""
        dt = self.micro_frames
        x = ops.reshape(head(state), (-1, self.latent_height, self.latent_width, dt, self.hid_s))
        x = ops.reshape(
            ops.transpose(x, (0, 3, 1, 2, 4)),
            (-1, self.latent_height, self.latent_width, self.hid_s),
        )
        skip = ops.reshape(
            ops.repeat(ops.expand_dims(skip, 1), dt, axis=1),
            (-1, self.height, self.width, self.hid_s),
        )
        x = decode_frames(self.decoder, self.readout, x, skip)
        return ops.reshape(x, (-1, dt, self.height, self.width, self.channels))

    def forward(self, window, training=None):
        latents, skip = self.encode(window)
        micro_states, micro = self.micro_rnn(
            self._segments(latents, self.micro_frames), training=training
        )
        macro = self.macro_state(latents, training=training)
        if training:
            self._add_auxiliary_losses(window, micro, macro, training)
        outputs = []
        produced = 0
        while True:
            frames = self.decode(self.fuse(micro, macro), self.predict_head, skip)
            outputs.append(frames)
            produced += self.micro_frames
            if produced >= self.output_frames:
                break
            encoded, _ = self.encode(frames)
            micro, _ = self.micro_cell(
                self._stack(encoded, 0, self.micro_frames), [micro], training=training
            )
        future = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=1)
        return future[:, : self.output_frames]

    # ------------------------------------------------------------------ objectives

    def masked_frames(self, frames):
        """Frames with whole frames and patches zeroed, and the mask (1 = masked)."""
        b = ops.shape(frames)[0]
        t, h, w = self.input_frames, self.height, self.width
        p = self.mask_patch_size
        frame_mask = ops.cast(
            keras.random.uniform((b, t, 1, 1, 1), seed=self.seed_generator) < self.frame_mask_ratio,
            frames.dtype,
        )
        patches = ops.cast(
            keras.random.uniform((b, t, h // p, 1, w // p, 1, 1), seed=self.seed_generator)
            < self.patch_mask_ratio,
            frames.dtype,
        )
        patch_mask = ops.reshape(
            ops.broadcast_to(patches, (b, t, h // p, p, w // p, p, 1)), (b, t, h, w, 1)
        )
        mask = ops.maximum(frame_mask, patch_mask)
        return frames * (1.0 - mask), mask

    def masked_prediction_loss(self, frames, training=None):
        """Hierarchical masked prediction: reconstruct masked inputs from the micro states."""
        masked, mask = self.masked_frames(frames)
        latents, skip = self.encode(masked)
        states, _ = self.micro_rnn(self._segments(latents, self.micro_frames), training=training)
        dt = self.micro_frames
        reconstructed = [
            self.decode(states[:, k], self.reconstruct_head, skip)
            for k in range(self.input_frames // dt)
        ]
        reconstructed = ops.concatenate(reconstructed, axis=1)
        mask = ops.broadcast_to(mask, ops.shape(frames))
        error = ops.sum(ops.square(reconstructed - frames) * mask)
        return error / (ops.sum(mask) + 1.0)

    def contrastive_loss(self, micro, macro):
        """Symmetric InfoNCE between pooled micro and macro states across the batch."""
        a = self.contrast_micro(ops.mean(micro, axis=(1, 2)))
        b = self.contrast_macro(ops.mean(macro, axis=(1, 2)))
        a = a / (ops.norm(a, axis=-1, keepdims=True) + 1e-6)
        b = b / (ops.norm(b, axis=-1, keepdims=True) + 1e-6)
        logits = ops.matmul(a, ops.transpose(b)) / self.temperature
        labels = ops.arange(ops.shape(logits)[0])
        forward = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        backward = keras.losses.sparse_categorical_crossentropy(
            labels, ops.transpose(logits), from_logits=True
        )
        return 0.5 * (ops.mean(forward) + ops.mean(backward))

    def _add_auxiliary_losses(self, window, micro, macro, training):
        if self.mask_weight:
            self.add_loss(self.mask_weight * self.masked_prediction_loss(window, training))
        if self.contrastive_weight:
            self.add_loss(self.contrastive_weight * self.contrastive_loss(micro, macro))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hid_s": self.hid_s,
                "hid_t": self.hid_t,
                "num_spatial": self.num_spatial,
                "micro_frames": self.micro_frames,
                "macro_frames": self.macro_frames,
                "micro_blocks": self.micro_blocks,
                "macro_blocks": self.macro_blocks,
                "num_heads": self.num_heads,
                "kernel_size": self.kernel_size,
                "mlp_ratio": self.mlp_ratio,
                "mask_weight": self.mask_weight,
                "frame_mask_ratio": self.frame_mask_ratio,
                "patch_mask_ratio": self.patch_mask_ratio,
                "mask_patch_size": self.mask_patch_size,
                "contrastive_weight": self.contrastive_weight,
                "temperature": self.temperature,
            }
        )
        return config
