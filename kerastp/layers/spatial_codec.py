"""SimVP's spatial encoder and decoder: the ConvSC stacks shared by SimVP, TAU and USTEP.

The encoder is `num_spatial` `ConvSC` layers (strides 1, 2, 1, 2, ...) applied to every
frame; the output of its first layer is kept as a skip. The decoder mirrors it (upsampling by
conv + depth_to_space where the encoder halved), adds the skip before its last layer, and a
1x1 readout maps back to the frame channels.

The stacks stay plain Python lists of `ConvSC` layers that a model stores as its `encoder`
and `decoder` attributes, with layer names `encoder_{i}` and `decoder_{i}`. That is where a
`.keras` file keeps their weights (`encoder/conv_sc_1/conv/vars/0`, ...) and what
`kerastp.flops` names in its tables (`encoder_0/conv`), so this module builds and runs those
lists instead of wrapping them in a new layer: files saved before it existed still load.

Example:
>>> import keras
>>> encoder = spatial_encoder(8, num_spatial=2)
>>> decoder = spatial_decoder(8, num_spatial=2)
>>> readout = keras.layers.Conv2D(1, 1, name="readout")
>>> latent_shape = build_encoder(encoder, (None, 16, 16, 1))
>>> build_decoder(decoder, readout, latent_shape)
>>> latents, skip = encode_frames(encoder, keras.ops.zeros((3, 16, 16, 1)))
>>> tuple(latents.shape), tuple(decode_frames(decoder, readout, latents, skip).shape)
((3, 8, 8, 8), (3, 16, 16, 1))

Reference:
    Gao, Tan, Wu, Li, "SimVP: Simpler yet Better Video Prediction", CVPR 2022; OpenSTL
    `openstl/models/simvp_model.py` (`Encoder`, `Decoder`).
"""

from kerastp.layers.conv_sc import ConvSC


def downsampling_layers(num_spatial):
    """Which of the `num_spatial` encoder layers halve the frame: the odd ones (1, 3, ...)."""
    return [i % 2 == 1 for i in range(num_spatial)]


def latent_size(height, width, num_spatial):
    """The latent `(height, width)` after the encoder's `num_spatial // 2` halvings.

    Raises:
        ValueError: `height` or `width` is not divisible by `2 ** (num_spatial // 2)`.
    """
    factor = 2 ** (num_spatial // 2)
    for arg, value in (("height", height), ("width", width)):
        if value % factor:
            raise ValueError(
                f"`{arg}` must be divisible by {factor} (num_spatial={num_spatial} "
                f"halves it {num_spatial // 2} times), got {arg}={value}"
            )
    return height // factor, width // factor


def spatial_encoder(filters, num_spatial, kernel_size=3):
    """The encoder: `num_spatial` `ConvSC(filters, kernel_size)` named `encoder_{i}`."""
    return [
        ConvSC(filters, kernel_size, sampling="down" if down else None, name=f"encoder_{i}")
        for i, down in enumerate(downsampling_layers(num_spatial))
    ]


def spatial_decoder(filters, num_spatial, kernel_size=3):
    """The decoder: the encoder's mirror, `ConvSC`s named `decoder_{i}` (no readout)."""
    return [
        ConvSC(filters, kernel_size, sampling="up" if up else None, name=f"decoder_{i}")
        for i, up in enumerate(reversed(downsampling_layers(num_spatial)))
    ]


def _build_stack(layers, shape):
    for layer in layers:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


def build_encoder(encoder, frame_shape):
    """Builds the encoder on frames `(N, H, W, C)`; returns the latent shape."""
    return _build_stack(encoder, tuple(frame_shape))


def build_decoder(decoder, readout, latent_shape):
    """Builds the decoder on latents `(N, h, w, filters)`, then the readout."""
    readout.build(_build_stack(decoder, tuple(latent_shape)))


def encode_frames(encoder, frames):
    """Frames `(N, H, W, C)` -> latents `(N, h, w, filters)` and the skip `(N, H, W, filters)`.

    The skip is the output of the first encoder layer.
    """
    x = frames
    skip = None
    for i, layer in enumerate(encoder):
        x = layer(x)
        if i == 0:
            skip = x
    return x, skip


def decode_frames(decoder, readout, latents, skip):
    """Latents `(N, h, w, filters)` and skips `(N, H, W, filters)` -> frames `(N, H, W, C)`.

    The skip is added before the last decoder layer, then the readout maps to frames.
    """
    x = latents
    for layer in decoder[:-1]:
        x = layer(x)
    return readout(decoder[-1](x + skip))
