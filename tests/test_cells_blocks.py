"""Golden-number tests of the recurrent cells and the SimVP translator blocks.

`ConvLSTMCell`, `SpatioTemporalLSTMCell`, `GSTABlock` and `TAUBlock` against independent
NumPy references (float64, channels-last, 'same' zero padding) written from OpenSTL's PyTorch
modules, with deterministic, platform-independent weights and inputs (sines of aranges), plus
a few hard-coded output values computed once from the references.
"""

import math

import keras
import numpy as np
import pytest

from kerastp.layers.conv_lstm_cell import ConvLSTMCell
from kerastp.layers.gsta import GSTABlock
from kerastp.layers.st_lstm_cell import SpatioTemporalLSTMCell
from kerastp.layers.tau_block import TAUBlock

ATOL = 1e-5
RTOL = 1e-5

# ---------------------------------------------------------------- deterministic values


def _pattern(shape, scale=0.1, offset=0.0, base=0.0):
    """`base + scale * sin(0.7 * arange + offset)` in `shape` (float32)."""
    shape = tuple(int(d) for d in shape)
    values = base + scale * np.sin(0.7 * np.arange(math.prod(shape)) + offset)
    return values.reshape(shape).astype("float32")


def _inputs(shape, scale=1.0, phase=0.0):
    """A smooth deterministic input tensor in `shape` (float32)."""
    shape = tuple(shape)
    grid = np.linspace(-3.0, 3.0, math.prod(shape))
    return (
        (scale * np.sin(2.3 * grid + phase) * np.cos(0.9 * grid)).reshape(shape).astype("float32")
    )


def _np(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)


def _fill_conv(layer, offset, scale=0.2):
    layer.kernel.assign(_pattern(layer.kernel.shape, scale, offset))
    if layer.use_bias:
        layer.bias.assign(_pattern(layer.bias.shape, 0.1, offset + 0.5))


def _fill_norm(layer, offset):
    layer.gamma.assign(_pattern(layer.gamma.shape, 0.2, offset, base=1.0))
    layer.beta.assign(_pattern(layer.beta.shape, 0.1, offset + 1.0))


def _fill_batch_norm(layer, offset):
    _fill_norm(layer, offset)
    layer.moving_mean.assign(_pattern(layer.moving_mean.shape, 0.3, offset + 2.0))
    variance = _pattern(layer.moving_variance.shape, 0.7, offset + 3.0)
    layer.moving_variance.assign((0.3 + variance**2).astype("float32"))


# ---------------------------------------------------------------- NumPy reference


def _conv(x, kernel, bias=None, dilation=1):
    """'same' zero-padded conv of (B, H, W, C_in) with a (k, k, C_in, C_out) kernel."""
    _, h, w, _ = x.shape
    k = kernel.shape[0]
    reach = dilation * (k - 1)
    before = reach // 2
    padded = np.pad(x, ((0, 0), (before, reach - before), (before, reach - before), (0, 0)))
    out = np.zeros((*x.shape[:3], kernel.shape[-1]))
    for u in range(k):
        for v in range(k):
            patch = padded[:, u * dilation : u * dilation + h, v * dilation : v * dilation + w]
            out += patch @ kernel[u, v]
    return out if bias is None else out + bias


def _depthwise(x, kernel, bias=None, dilation=1):
    """'same' zero-padded depth-wise conv of (B, H, W, C) with a (k, k, C, 1) kernel."""
    _, h, w, _ = x.shape
    k = kernel.shape[0]
    reach = dilation * (k - 1)
    before = reach // 2
    padded = np.pad(x, ((0, 0), (before, reach - before), (before, reach - before), (0, 0)))
    out = np.zeros(x.shape)
    for u in range(k):
        for v in range(k):
            patch = padded[:, u * dilation : u * dilation + h, v * dilation : v * dilation + w]
            out += patch * kernel[u, v, :, 0]
    return out if bias is None else out + bias


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _layer_norm_chw(x, gamma, beta, eps=1e-5):
    """PyTorch's `nn.LayerNorm([C, H, W])`: statistics over the whole map of each sample."""
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    var = x.var(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _batch_norm(x, layer, eps=1e-5):
    """Inference-mode BatchNorm with the layer's moving statistics."""
    scale = _np(layer.gamma) / np.sqrt(_np(layer.moving_variance) + eps)
    return (x - _np(layer.moving_mean)) * scale + _np(layer.beta)


def _apply_conv(layer, x, dilation=1):
    bias = _np(layer.bias) if layer.use_bias else None
    return _conv(x, _np(layer.kernel), bias, dilation)


def _apply_depthwise(layer, x, dilation=1):
    bias = _np(layer.bias) if layer.use_bias else None
    return _depthwise(x, _np(layer.kernel), bias, dilation)


def _apply_norm(layer, x):
    return x if layer is None else _layer_norm_chw(x, _np(layer.gamma), _np(layer.beta))


def _conv_lstm_reference(cell, x, h, c):
    """OpenSTL's `ConvLSTMCell.forward` (plus the optional bias and forget bias)."""
    x_gates = _apply_norm(cell.norm_x, _apply_conv(cell.conv_x, x))
    h_gates = _apply_norm(cell.norm_h, _apply_conv(cell.conv_h, h))
    i, f, g, o = np.split(x_gates + h_gates, 4, axis=-1)
    c_new = _sigmoid(f + cell.forget_bias) * c + _sigmoid(i) * np.tanh(g)
    h_new = _sigmoid(o) * np.tanh(c_new)
    return h_new, c_new


def _st_lstm_reference(cell, x, h, c, m):
    """OpenSTL's `SpatioTemporalLSTMCell.forward` (predrnn_modules.py)."""
    norms = cell.norms or {}
    x_cat = _apply_norm(norms.get("x"), _apply_conv(cell.conv_x, x))
    h_cat = _apply_norm(norms.get("h"), _apply_conv(cell.conv_h, h))
    m_cat = _apply_norm(norms.get("m"), _apply_conv(cell.conv_m, m))
    i_x, f_x, g_x, i_xp, f_xp, g_xp, o_x = np.split(x_cat, 7, axis=-1)
    i_h, f_h, g_h, o_h = np.split(h_cat, 4, axis=-1)
    i_m, f_m, g_m = np.split(m_cat, 3, axis=-1)
    b = cell.forget_bias
    c_new = _sigmoid(f_x + f_h + b) * c + _sigmoid(i_x + i_h) * np.tanh(g_x + g_h)
    m_new = _sigmoid(f_xp + f_m + b) * m + _sigmoid(i_xp + i_m) * np.tanh(g_xp + g_m)
    mem = np.concatenate([c_new, m_new], axis=-1)
    o = _sigmoid(o_x + o_h + _apply_norm(norms.get("o"), _apply_conv(cell.conv_o, mem)))
    h_new = o * np.tanh(_apply_conv(cell.conv_last, mem))
    return h_new, c_new, m_new


def _gsta_gating(block, u):
    """OpenSTL's `AttentionModule`: sigmoid(g) * f of conv1(conv_spatial(conv0(u)))."""
    attn = _apply_depthwise(block.lka_local, u)
    attn = _apply_depthwise(block.lka_far, attn, dilation=block.dilation)
    f, g = np.split(_apply_conv(block.lka_gate, attn), 2, axis=-1)
    return _sigmoid(g) * f


def _tau_gating(block, u):
    """OpenSTL's `TemporalAttentionModule`: se_atten * conv1(conv_spatial(conv0(u))) * u."""
    attn = _apply_depthwise(block.lka_local, u)
    attn = _apply_depthwise(block.lka_far, attn, dilation=block.dilation)
    statical = _apply_conv(block.lka_gate, attn)
    pooled = u.mean(axis=(1, 2))
    hidden = np.maximum(pooled @ _np(block.channel_reduce.kernel), 0.0)
    dynamical = _sigmoid(hidden @ _np(block.channel_expand.kernel))
    return dynamical[:, None, None, :] * statical * u


def _block_reference(block, x, gating):
    """OpenSTL's `GASubBlock.forward` in eval mode, with the given gating unit."""
    # x = x + ls1 * SpatialAttention(norm1(x)), SpatialAttention with attn_shortcut.
    y = _batch_norm(x, block.norm_1)
    u = _gelu(_apply_conv(block.proj_1, y))
    attention = _apply_conv(block.proj_2, gating(block, u)) + y
    x = x + _np(block.layer_scale_1) * attention
    # x = x + ls2 * MixMlp(norm2(x)): fc1, depth-wise 3x3, GELU, fc2.
    mlp = _apply_conv(block.fc_1, _batch_norm(x, block.norm_2))
    mlp = _apply_conv(block.fc_2, _gelu(_apply_depthwise(block.mlp_depthwise, mlp)))
    return x + _np(block.layer_scale_2) * mlp


# ---------------------------------------------------------------- ConvLSTMCell


def test_conv_lstm_cell_matches_keras_conv_lstm_2d():
    batch, steps, size, channels, filters, k = 2, 4, 5, 3, 4, 3
    frames = _inputs((batch, steps, size, size, channels), scale=1.5)
    reference = keras.layers.ConvLSTM2D(
        filters, k, padding="same", return_sequences=True, use_bias=True
    )
    reference.build(frames.shape)
    rng = np.random.default_rng(7)
    cell_weights = reference.cell
    cell_weights.kernel.assign(rng.normal(0, 0.4, cell_weights.kernel.shape).astype("float32"))
    cell_weights.recurrent_kernel.assign(
        rng.normal(0, 0.4, cell_weights.recurrent_kernel.shape).astype("float32")
    )
    cell_weights.bias.assign(rng.normal(0.2, 0.5, cell_weights.bias.shape).astype("float32"))
    expected = keras.ops.convert_to_numpy(reference(frames))

    cell = ConvLSTMCell(filters, kernel_size=k, use_bias=True)
    h = c = np.zeros((batch, size, size, filters), "float32")
    cell(frames[:, 0], h, c)
    cell.conv_x.kernel.assign(cell_weights.kernel)
    cell.conv_h.kernel.assign(cell_weights.recurrent_kernel)
    cell.conv_x.bias.assign(cell_weights.bias)
    assert len(cell.weights) == 3
    for t in range(steps):
        h, c = cell(frames[:, t], h, c)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(h), expected[:, t], atol=ATOL)
    # The sequence really evolves (a wrong state update could not pass by accident).
    assert np.abs(expected[:, -1] - expected[:, 0]).max() > 0.05


def _conv_lstm_case(layer_norm, forget_bias=1.0):
    batch, size, channels, filters = 2, 5, 3, 4
    x = _inputs((batch, size, size, channels), scale=1.2)
    h = _inputs((batch, size, size, filters), scale=0.8, phase=1.0)
    c = _inputs((batch, size, size, filters), scale=1.1, phase=2.0)
    cell = ConvLSTMCell(filters, kernel_size=3, forget_bias=forget_bias, layer_norm=layer_norm)
    cell(x, h, c)
    _fill_conv(cell.conv_x, 0.0, scale=0.25)
    _fill_conv(cell.conv_h, 1.3, scale=0.25)
    if layer_norm:
        _fill_norm(cell.norm_x, 0.4)
        _fill_norm(cell.norm_h, 0.9)
    return cell, (x, h, c)


# h'[0, 1, 2, 3], sum(h'), sum(c') of the NumPy reference (forget_bias=1, no layer norm).
CONV_LSTM_GOLDEN = (0.0397782981, -8.2493088229, -14.0461976442)


def test_conv_lstm_cell_numpy_reference_and_golden():
    cell, (x, h, c) = _conv_lstm_case(layer_norm=False)
    got_h, got_c = (keras.ops.convert_to_numpy(t) for t in cell(x, h, c))
    want_h, want_c = _conv_lstm_reference(cell, x, h, c)
    np.testing.assert_allclose(got_h, want_h, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got_c, want_c, rtol=RTOL, atol=ATOL)
    golden = CONV_LSTM_GOLDEN
    for values in ((want_h, want_c), (got_h, got_c)):
        assert values[0][0, 1, 2, 3] == pytest.approx(golden[0], abs=1e-5)
        assert values[0].sum() == pytest.approx(golden[1], abs=1e-4)
        assert values[1].sum() == pytest.approx(golden[2], abs=1e-4)


def test_conv_lstm_cell_forget_bias_changes_output():
    cell, (x, h, c) = _conv_lstm_case(layer_norm=False, forget_bias=0.0)
    h0, c0 = cell(x, h, c)
    cell.forget_bias = 1.0
    h1, c1 = cell(x, h, c)
    assert np.abs(keras.ops.convert_to_numpy(c1 - c0)).max() > 0.05


def test_conv_lstm_cell_layer_norm():
    cell, (x, h, c) = _conv_lstm_case(layer_norm=True)
    # Conv weights + two LayerNorms over the (H, W, 4 * filters) gate maps.
    assert cell.norm_x.gamma.shape == (5, 5, 16)
    got_h, got_c = (keras.ops.convert_to_numpy(t) for t in cell(x, h, c))
    want_h, want_c = _conv_lstm_reference(cell, x, h, c)
    np.testing.assert_allclose(got_h, want_h, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got_c, want_c, rtol=RTOL, atol=ATOL)
    plain, _ = _conv_lstm_case(layer_norm=False)
    assert np.abs(got_h - keras.ops.convert_to_numpy(plain(x, h, c)[0])).max() > 1e-3


def test_conv_lstm_cell_config_round_trip():
    cell, (x, h, c) = _conv_lstm_case(layer_norm=True, forget_bias=0.5)
    config = cell.get_config()
    assert config["filters"] == 4 and config["kernel_size"] == 3
    assert config["forget_bias"] == 0.5 and config["layer_norm"] is True
    assert config["use_bias"] is False
    clone = ConvLSTMCell.from_config(config)
    assert clone.get_config() == config
    clone(x, h, c)
    clone.set_weights(cell.get_weights())
    for a, b in zip(clone(x, h, c), cell(x, h, c), strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


# ---------------------------------------------------------------- SpatioTemporalLSTMCell


def _st_lstm_case(layer_norm=False):
    batch, size, channels, filters = 2, 5, 3, 4
    x = _inputs((batch, size, size, channels), scale=1.2)
    h = _inputs((batch, size, size, filters), scale=0.8, phase=1.0)
    c = _inputs((batch, size, size, filters), scale=1.1, phase=2.0)
    m = _inputs((batch, size, size, filters), scale=0.9, phase=3.0)
    cell = SpatioTemporalLSTMCell(filters, kernel_size=3, forget_bias=1.0, layer_norm=layer_norm)
    cell(x, h, c, m)
    for offset, conv in enumerate(
        (cell.conv_x, cell.conv_h, cell.conv_m, cell.conv_o, cell.conv_last)
    ):
        _fill_conv(conv, float(offset), scale=0.2)
    if layer_norm:
        for offset, name in enumerate(("x", "h", "m", "o")):
            _fill_norm(cell.norms[name], 0.5 + offset)
    return cell, (x, h, c, m)


# h'[0, 1, 2, 3], sum(h'), sum(c'), sum(m') of the NumPy reference.
ST_LSTM_GOLDEN = (-0.0060183882, 0.1045480652, -12.6789573123, -2.1564027811)


def test_st_lstm_cell_layout():
    cell, _ = _st_lstm_case()
    shapes = {
        name: tuple(getattr(cell, name).kernel.shape)
        for name in ("conv_x", "conv_h", "conv_m", "conv_o", "conv_last")
    }
    assert shapes == {
        "conv_x": (3, 3, 3, 28),
        "conv_h": (3, 3, 4, 16),
        "conv_m": (3, 3, 4, 12),
        "conv_o": (3, 3, 8, 4),
        "conv_last": (1, 1, 8, 4),
    }
    assert len(cell.weights) == 5  # no biases


def test_st_lstm_cell_numpy_reference_and_golden():
    cell, (x, h, c, m) = _st_lstm_case()
    got = [keras.ops.convert_to_numpy(t) for t in cell(x, h, c, m)]
    want = _st_lstm_reference(cell, x, h, c, m)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    golden = ST_LSTM_GOLDEN
    for h_new, c_new, m_new in (want, got):
        assert h_new[0, 1, 2, 3] == pytest.approx(golden[0], abs=1e-5)
        assert h_new.sum() == pytest.approx(golden[1], abs=1e-4)
        assert c_new.sum() == pytest.approx(golden[2], abs=1e-4)
        assert m_new.sum() == pytest.approx(golden[3], abs=1e-4)


def test_st_lstm_cell_layer_norm_and_config():
    cell, inputs = _st_lstm_case(layer_norm=True)
    got = [keras.ops.convert_to_numpy(t) for t in cell(*inputs)]
    want = _st_lstm_reference(cell, *inputs)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    config = cell.get_config()
    assert config["forget_bias"] == 1.0 and config["layer_norm"] is True
    clone = SpatioTemporalLSTMCell.from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("cell_kind", ["conv_lstm", "st_lstm"])
def test_none_state_equals_zero_state_bit_for_bit(cell_kind, layer_norm):
    """A None state (the first step) skips the convolutions of zeros and gives exactly what a
    zero state gives; with LayerNorm (whose offset makes a zero map non-zero) too."""
    if cell_kind == "conv_lstm":
        cell, (x, h, _) = _conv_lstm_case(layer_norm)
        states = [h, h]  # (h, c)
    else:
        cell, (x, h, _, m) = _st_lstm_case(layer_norm)
        states = [h, h, m]  # (h, c, m)
    # Every combination of None and non-None states a recurrence meets (PredRNN's first
    # step above the bottom layer has h = c = None but a real m).
    for drop in ([0, 1], [0, 1, 2], [2])[: len(states) - 1]:
        given = [None if k in drop else s for k, s in enumerate(states)]
        zeros = [np.zeros_like(s) if k in drop else s for k, s in enumerate(states)]
        got = [keras.ops.convert_to_numpy(t) for t in cell(x, *given)]
        want = [keras.ops.convert_to_numpy(t) for t in cell(x, *zeros)]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        assert np.abs(want[0]).sum() > 0.1


# ---------------------------------------------------------------- GSTABlock / TAUBlock


def _fill_block(block):
    _fill_batch_norm(block.norm_1, 0.0)
    _fill_batch_norm(block.norm_2, 5.0)
    convs = ("proj_1", "lka_local", "lka_far", "lka_gate", "proj_2", "fc_1", "mlp_depthwise")
    for offset, name in enumerate((*convs, "fc_2")):
        _fill_conv(getattr(block, name), 1.0 + offset, scale=0.3)
    block.layer_scale_1.assign(_pattern(block.layer_scale_1.shape, 0.2, 10.0, base=0.6))
    block.layer_scale_2.assign(_pattern(block.layer_scale_2.shape, 0.2, 11.0, base=0.5))
    if isinstance(block, TAUBlock):
        block.channel_reduce.kernel.assign(_pattern(block.channel_reduce.kernel.shape, 0.8, 12.0))
        block.channel_expand.kernel.assign(_pattern(block.channel_expand.kernel.shape, 0.8, 13.0))


def _block_case(cls, dim, **kwargs):
    x = _inputs((2, 6, 6, dim), scale=1.5)
    block = cls(dim, kernel_size=9, **kwargs)
    block(x, training=False)
    _fill_block(block)
    return block, x


# out[0, 1, 2, 3], sum(out), sum(|out - x|) of the NumPy references.
GSTA_GOLDEN = (-0.8571651492, -0.1368038166, 110.1887840461)
TAU_GOLDEN = (-0.9364848624, -5.2491652317, 252.4896021436)


def test_gsta_block_layout():
    block, _ = _block_case(GSTABlock, 4)
    # kernel_size 9, dilation 3: a 5x5 depth-wise conv, a 3x3 one dilated by 3.
    assert tuple(block.lka_local.kernel.shape) == (5, 5, 4, 1)
    assert tuple(block.lka_far.kernel.shape) == (3, 3, 4, 1)
    assert tuple(block.lka_far.dilation_rate) == (3, 3)
    assert tuple(block.lka_gate.kernel.shape) == (1, 1, 4, 8)
    assert tuple(block.fc_1.kernel.shape) == (1, 1, 4, 16)
    assert tuple(block.mlp_depthwise.kernel.shape) == (3, 3, 16, 1)


def _check_block(block, x, gating, golden):
    got = keras.ops.convert_to_numpy(block(x, training=False))
    want = _block_reference(block, x.astype(np.float64), gating)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # Both residual branches matter at these layer scales.
    assert np.abs(want - x).mean() > 0.1
    for out in (want, got):
        assert out[0, 1, 2, 3] == pytest.approx(golden[0], abs=1e-5)
        assert out.sum() == pytest.approx(golden[1], abs=1e-3)
        assert np.abs(out - x).sum() == pytest.approx(golden[2], abs=1e-3)


def test_gsta_block_numpy_reference_and_golden():
    block, x = _block_case(GSTABlock, 4)
    _check_block(block, x, _gsta_gating, GSTA_GOLDEN)


def test_tau_block_layout():
    block, _ = _block_case(TAUBlock, 8)
    # OpenSTL: reduction = max(dim // 16, 4) = 4, Linear(dim, dim // reduction) = 8 -> 2.
    assert block.channel_hidden == 2
    assert tuple(block.channel_reduce.kernel.shape) == (8, 2)
    assert tuple(block.channel_expand.kernel.shape) == (2, 8)
    assert tuple(block.lka_gate.kernel.shape) == (1, 1, 8, 8)
    assert not block.channel_reduce.use_bias and not block.channel_expand.use_bias


def test_tau_block_numpy_reference_and_golden():
    block, x = _block_case(TAUBlock, 8)
    _check_block(block, x, _tau_gating, TAU_GOLDEN)


def test_block_config_round_trip():
    block, x = _block_case(TAUBlock, 8, mlp_ratio=2.0, reduction=4, drop_path=0.25)
    config = block.get_config()
    assert config["reduction"] == 4 and config["drop_path"] == 0.25
    clone = TAUBlock.from_config(config)
    assert clone.get_config() == config
    clone(x, training=False)
    clone.set_weights(block.get_weights())
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(clone(x, training=False)),
        keras.ops.convert_to_numpy(block(x, training=False)),
    )


@pytest.mark.parametrize("branch", [1, 2])
def test_tau_block_drop_path_drops_whole_samples(branch):
    """Stochastic depth: each sample keeps (x 1/(1-p)) or drops a whole residual branch."""
    rate, batch, dim = 0.5, 64, 8
    x = np.random.default_rng(3).normal(size=(batch, 4, 4, dim)).astype("float32")
    block = TAUBlock(dim, kernel_size=9, drop_path=rate)
    twin = TAUBlock(dim, kernel_size=9)
    for layer in (block, twin):
        layer(x, training=False)
        _fill_block(layer)
        # Only the tested branch contributes.
        ones, zeros = np.ones(dim, "float32"), np.zeros(dim, "float32")
        layer.layer_scale_1.assign(ones if branch == 1 else zeros)
        layer.layer_scale_2.assign(zeros if branch == 1 else ones)

    # Inference is deterministic and ignores drop_path.
    first = keras.ops.convert_to_numpy(block(x, training=False))
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(block(x, training=False)))
    np.testing.assert_allclose(
        first, keras.ops.convert_to_numpy(twin(x, training=False)), rtol=RTOL, atol=ATOL
    )

    # Training: BatchNorm uses the batch statistics in both blocks alike.
    delta = keras.ops.convert_to_numpy(block(x, training=True)) - x
    full = keras.ops.convert_to_numpy(twin(x, training=True)) - x
    assert np.abs(full).reshape(batch, -1).max(axis=1).min() > 1e-3
    dropped = np.all(delta == 0.0, axis=(1, 2, 3))
    assert 0.25 * batch <= dropped.sum() <= 0.75 * batch
    np.testing.assert_allclose(delta[~dropped], full[~dropped] / (1.0 - rate), rtol=1e-4, atol=1e-4)
