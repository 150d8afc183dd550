"""USTEP's macro-temporal block: self-attention over the positions of a stacked-frame map."""

import keras
from keras import ops

from kerastp.validation import positive_ints


@keras.saving.register_keras_serializable(package="kerastp")
class StackedFrameAttention(keras.layers.Layer):
    """Pre-norm transformer block over the h*w positions of a macro segment's feature map.

    Every token is one spatial position whose channels carry all frames of the segment, so
    attention between tokens is global, cross-frame attention. Two residual parts:
    `x = x + MHSA(LN(x))` over the h*w tokens, then `x = x + FFN(LN(x))` with a convolutional
    feed-forward (1x1 to `mlp_ratio * dim`, depth-wise 3x3, GELU, 1x1 back).

    Args:
        dim: int, channels (`hid_T`).
        num_heads: int, attention heads; must divide `dim`.
        mlp_ratio: float, feed-forward expansion.
        dropout: float, attention and feed-forward dropout.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: (B, h, w, dim).
        training: bool.

    Example:
    >>> block = StackedFrameAttention(dim=8, num_heads=2)
    >>> block(keras.ops.zeros((2, 4, 4, 8))).shape
    (2, 4, 4, 8)
    """

    def __init__(self, dim, num_heads=8, mlp_ratio=4.0, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        positive_ints(dim=dim, num_heads=num_heads)
        if dim % num_heads:
            raise ValueError(f"`num_heads`={num_heads} must divide `dim`={dim}")
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_ratio = float(mlp_ratio)
        self.dropout = float(dropout)
        hidden = int(dim * mlp_ratio)
        dtype = self.dtype_policy
        self.norm_1 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm_1", dtype=dtype)
        self.attention = keras.layers.MultiHeadAttention(
            num_heads, dim // num_heads, dropout=self.dropout, name="attention", dtype=dtype
        )
        self.norm_2 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm_2", dtype=dtype)
        self.fc_1 = keras.layers.Conv2D(hidden, 1, name="fc_1", dtype=dtype)
        self.ffn_depthwise = keras.layers.DepthwiseConv2D(
            3, padding="same", name="ffn_depthwise", dtype=dtype
        )
        self.fc_2 = keras.layers.Conv2D(dim, 1, name="fc_2", dtype=dtype)
        self.ffn_dropout = keras.layers.Dropout(self.dropout, dtype=dtype)

    def build(self, input_shape):
        if input_shape[-1] != self.dim:
            raise ValueError(
                f"StackedFrameAttention(dim={self.dim}) got {input_shape[-1]} channels"
            )
        h, w = input_shape[1], input_shape[2]
        tokens = (input_shape[0], None if h is None or w is None else h * w, self.dim)
        self.norm_1.build(tokens)
        self.attention.build(tokens, tokens)
        self.norm_2.build(input_shape)
        self.fc_1.build(input_shape)
        hidden_shape = (*input_shape[:-1], int(self.dim * self.mlp_ratio))
        self.ffn_depthwise.build(hidden_shape)
        self.fc_2.build(hidden_shape)

    def call(self, inputs, training=None):
        h, w = inputs.shape[1], inputs.shape[2]
        tokens = ops.reshape(inputs, (-1, h * w, self.dim))
        normed = self.norm_1(tokens)
        tokens = tokens + self.attention(normed, normed, training=training)
        x = ops.reshape(tokens, (-1, h, w, self.dim))
        ffn = self.fc_1(self.norm_2(x))
        ffn = self.ffn_dropout(
            ops.gelu(self.ffn_depthwise(ffn), approximate=False), training=training
        )
        return x + self.ffn_dropout(self.fc_2(ffn), training=training)

    def extra_macs(self, input_shape, output_shape):
        """Attention products (QK^T and AV), which are not layers, for `kerastp.flops`."""
        tokens = int(input_shape[1]) * int(input_shape[2])
        lead = 1 if input_shape[0] is None else int(input_shape[0])
        return 2 * lead * tokens * tokens * self.dim

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dim": self.dim,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "dropout": self.dropout,
            }
        )
        return config
