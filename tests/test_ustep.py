"""USTEP: the micro recurrence, macro attention, degenerate modes and training objectives."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastp import export, registry
from kerastp.layers import GatedUpdate, MicroTemporalCell, StackedFrameAttention
from kerastp.lite import LiteForecaster
from kerastp.models.ustep import USTEP

SMALL = {
    "input_frames": 4,
    "output_frames": 4,
    "height": 16,
    "width": 16,
    "channels": 1,
    "hid_s": 8,
    "hid_t": 16,
    "num_spatial": 2,
    "micro_frames": 2,
    "macro_frames": 4,
    "micro_blocks": 1,
    "macro_blocks": 1,
    "num_heads": 2,
    "kernel_size": 5,
    "mlp_ratio": 2.0,
}


def _past(batch=2, seed=0, frames=4, size=16):
    return np.random.default_rng(seed).random((batch, frames, size, size, 1), dtype=np.float32)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _conv_same(x, kernel, bias):
    """'same' 2-D convolution of (H, W, Cin) with (k, k, Cin, Cout), in NumPy."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    h, w = x.shape[:2]
    out = np.zeros((h, w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            out += padded[i : i + h, j : j + w] @ kernel[i, j]
    return out + bias


# ------------------------------------------------------------------ cell and blocks


def test_gated_update_golden_numbers():
    update = GatedUpdate(dim=2, kernel_size=1)
    update.build(((1, 2, 2, 2), (1, 2, 2, 2)))
    kernel = np.array(
        [[0.5, 0.0, 1.0, 0.0], [0.0, 0.5, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]],
        np.float32,
    )[None, None]
    update.set_weights([kernel, np.zeros(4, np.float32)])
    u = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2) / 8
    h = np.full((1, 2, 2, 2), 0.5, np.float32)
    out = np.asarray(update((u, h)))
    # gate = sigmoid(0.5 u + h), candidate = tanh(u): by hand for the first element, u = 0.
    g = _sigmoid(0.5 * 0.0 + 0.5)
    assert out[0, 0, 0, 0] == pytest.approx(g * math.tanh(0.0) + (1 - g) * 0.5, abs=1e-6)
    expected = _sigmoid(0.5 * u + h) * np.tanh(u) + (1 - _sigmoid(0.5 * u + h)) * h
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out[0, 1, 1, 1] == pytest.approx(0.64652542, abs=1e-6)


def test_gated_update_matches_reference_with_3x3_kernel():
    rng = np.random.default_rng(0)
    update = GatedUpdate(dim=3)
    u = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    h = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    out = np.asarray(update((u, h)))[0]
    kernel, bias = update.gates.get_weights()
    z = _conv_same(np.concatenate([u[0], h[0]], -1), kernel, bias)
    g, c = _sigmoid(z[..., :3]), np.tanh(z[..., 3:])
    np.testing.assert_allclose(out, g * c + (1 - g) * h[0], atol=1e-5)


def test_micro_cell_is_a_keras_rnn_cell_and_steps_by_hand():
    cell = MicroTemporalCell(dim=8, height=4, width=4, num_blocks=1, kernel_size=5)
    rnn = keras.layers.RNN(cell, unroll=True, return_sequences=True, return_state=True)
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4, 6)).astype(np.float32)
    sequence, last = rnn(x)
    assert sequence.shape == (2, 3, 4, 4, 8)
    # The same recurrence by hand: h0 = 0, h_k = update(F_micro(x_k), h_{k-1}).
    h = np.zeros((2, 4, 4, 8), np.float32)
    for k in range(3):
        h = np.asarray(cell.update((cell.features(x[:, k], training=False), h)))
        np.testing.assert_allclose(np.asarray(sequence[:, k]), h, atol=1e-5)
    np.testing.assert_allclose(np.asarray(last), h, atol=1e-5)


def test_micro_cell_golden_numbers():
    cell = MicroTemporalCell(dim=2, height=2, width=2, num_blocks=0)
    cell.build((None, 2, 2, 2))
    cell.projection.set_weights([np.eye(2, dtype=np.float32)[None, None], np.zeros(2, np.float32)])
    gates = np.zeros((3, 3, 4, 4), np.float32)
    gates[1, 1, 0, 0] = gates[1, 1, 1, 1] = 1.0  # gate from u
    gates[1, 1, 0, 2] = gates[1, 1, 1, 3] = 2.0  # candidate from u
    cell.update.gates.set_weights([gates, np.zeros(4, np.float32)])
    x = np.array([[[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.6], [0.7, 0.8]]]], np.float32)
    out, _ = cell(x, [np.full((1, 2, 2, 2), 0.25, np.float32)])
    expected = _sigmoid(x) * np.tanh(2 * x) + (1 - _sigmoid(x)) * 0.25
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-6)
    assert float(out[0, 1, 1, 1]) == pytest.approx(0.71343416, abs=1e-6)


def _attention_reference(block, x):
    """NumPy pre-norm transformer block over the h*w tokens (one sample)."""
    h, w, d = x.shape
    tokens = x.reshape(h * w, d).astype(np.float64)

    def layer_norm(v, layer):
        gamma, beta = layer.get_weights()
        mean, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mean) / np.sqrt(var + layer.epsilon) * gamma + beta

    mha = block.attention
    wq, bq = mha.query_dense.get_weights()
    wk, bk = mha.key_dense.get_weights()
    wv, bv = mha.value_dense.get_weights()
    wo, bo = mha.output_dense.get_weights()
    n = layer_norm(tokens, block.norm_1)
    q = np.einsum("td,dhk->htk", n, wq) + bq.transpose(0, 1)[:, None]
    k = np.einsum("td,dhk->htk", n, wk) + bk[:, None]
    v = np.einsum("td,dhk->htk", n, wv) + bv[:, None]
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    attended = np.einsum("htk,hkd->td", scores @ v, wo) + bo
    x = (tokens + attended).reshape(h, w, d)
    ffn = layer_norm(x, block.norm_2)
    k1, b1 = block.fc_1.get_weights()
    ffn = ffn @ k1[0, 0] + b1
    kd, bd = block.ffn_depthwise.get_weights()
    padded = np.pad(ffn, ((1, 1), (1, 1), (0, 0)))
    conv = sum(padded[i : i + h, j : j + w] * kd[i, j, :, 0] for i in range(3) for j in range(3))
    conv = conv + bd
    gelu = 0.5 * conv * (1 + np.vectorize(math.erf)(conv / math.sqrt(2)))
    k2, b2 = block.fc_2.get_weights()
    return x + gelu @ k2[0, 0] + b2


def test_stacked_frame_attention_matches_reference():
    rng = np.random.default_rng(2)
    block = StackedFrameAttention(dim=8, num_heads=2, mlp_ratio=2.0)
    x = rng.normal(size=(2, 3, 4, 8)).astype(np.float32)
    out = np.asarray(block(x, training=False))
    for n in range(2):
        np.testing.assert_allclose(out[n], _attention_reference(block, x[n]), atol=1e-4)


def test_stacked_frame_attention_golden_numbers():
    block = StackedFrameAttention(dim=4, num_heads=1, mlp_ratio=1.0)
    block.build((1, 2, 2, 4))
    block.set_weights([np.full(w.shape, 0.1, np.float32) for w in block.get_weights()])
    x = (np.arange(16, dtype=np.float32).reshape(1, 2, 2, 4) / 16.0).astype(np.float32)
    out = np.asarray(block(x, training=False))
    np.testing.assert_allclose(out[0], _attention_reference(block, x[0]), atol=1e-5)
    assert float(out[0, 0, 0, 0]) == pytest.approx(0.291068, abs=1e-5)
    assert float(out[0, 1, 1, 3]) == pytest.approx(1.228568, abs=1e-5)


# ------------------------------------------------------------------ the model


def test_micro_branch_is_a_keras_rnn_unrolled():
    model = USTEP(**SMALL)
    assert isinstance(model.micro_rnn, keras.layers.RNN)
    assert model.micro_rnn.unroll is True
    assert isinstance(model.micro_rnn.cell, MicroTemporalCell)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"micro_frames": 3}, "`micro_frames` must divide input_frames=4"),
        ({"macro_frames": 3}, "`macro_frames` must divide input_frames=4"),
        ({"micro_frames": 4, "macro_frames": 2}, "must not exceed `macro_frames`"),
        ({"num_heads": 3}, "must divide `hid_t`=16"),
        ({"height": 17}, "`height` must be divisible by 2"),
        ({"frame_mask_ratio": 1.0}, "frame_mask_ratio"),
        ({"temperature": 0.0}, "temperature"),
        ({"mask_weight": -1.0}, "mask_weight"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        USTEP(**{**SMALL, **kwargs})


def _scaled(dt, big_dt, **kwargs):
    return USTEP(
        **{**SMALL, "micro_frames": dt, "macro_frames": big_dt, "output_frames": 6, **kwargs}
    )


@pytest.mark.parametrize("dt, big_dt", [(1, 1), (4, 4), (2, 4)])
def test_scales_build_with_the_right_segment_counts(dt, big_dt):
    model = _scaled(dt, big_dt)
    past = _past(batch=2)
    latents, _ = model.encode(past)
    assert model._segments(latents, dt).shape[1] == 4 // dt
    assert (model.macro_update is None) == (big_dt == 4)
    assert np.asarray(model(past, training=False)).shape == (2, 6, 16, 16, 1)


@pytest.mark.parametrize("dt, big_dt", [pytest.param(1, 1, marks=pytest.mark.slow), (4, 4)])
def test_degenerate_scales_build_and_train(dt, big_dt):
    """(1, 1) is recurrent-like, (T, T) recurrent-free-like: both build and train. Both
    auxiliary objectives are on, so the same fit checks that they train (two epochs)."""
    model = _scaled(dt, big_dt, mask_patch_size=4, mask_weight=0.5, contrastive_weight=0.2)
    assert len(model.micro_rnn.cell.state_size) == 1
    model.compile()
    past = _past(batch=4)
    future = np.concatenate([past, past[:, :2]], axis=1)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(past, future, batch_size=4, epochs=2, verbose=0).history["loss"]
    assert len(history) == 2 and all(np.isfinite(history))
    moved = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    assert sum(moved) > len(moved) // 2


@pytest.mark.slow
@pytest.mark.parametrize("dt, big_dt", [(1, 1), (4, 4), (2, 4)])
def test_scales_export_to_tflite_with_builtin_ops(dt, big_dt, tmp_path):
    model = _scaled(dt, big_dt)
    past = _past(batch=2)
    sidecar = export.export_tflite(model, tmp_path / "m.tflite")
    assert "WHILE" not in sidecar["ops"] and not any(op.startswith("Flex") for op in sidecar["ops"])
    lite = LiteForecaster(tmp_path / "m.tflite")
    np.testing.assert_allclose(
        lite.predict(past[:1]), np.asarray(model(past[:1], training=False)), atol=1e-4
    )


def _aux_model(**kwargs):
    return USTEP(**{**SMALL, "mask_patch_size": 4, **kwargs})


def test_auxiliary_losses_are_finite_and_only_in_training():
    model = _aux_model(mask_weight=0.5, contrastive_weight=0.2)
    past = _past(batch=4)
    model(past, training=True)
    assert len(model.losses) == 2
    assert all(np.isfinite(float(loss)) and float(loss) > 0 for loss in model.losses)
    model(past, training=False)
    assert model.losses == []


def test_auxiliary_objectives_leave_inference_unchanged():
    plain = _aux_model()
    aux = _aux_model(mask_weight=0.5, contrastive_weight=0.2)
    plain_paths = {w.path.split("/", 1)[1] for w in plain.weights}
    by_path = {w.path.split("/", 1)[1]: w for w in aux.weights}
    for w in plain.weights:
        by_path[w.path.split("/", 1)[1]].assign(w)
    extra = sorted(set(by_path) - plain_paths)
    assert extra and all(("reconstruct" in p or "contrast" in p) for p in extra)
    past = _past(batch=2)
    np.testing.assert_allclose(
        np.asarray(aux(past, training=False)), np.asarray(plain(past, training=False)), atol=1e-6
    )


def _encoder_gradient(model, past, future):
    with tf.GradientTape() as tape:
        prediction = model(past, training=True)
        loss = tf.reduce_mean(tf.square(prediction - future)) + tf.add_n(
            [tf.constant(0.0), *model.losses]
        )
    variables = [model.encoder[0].conv.kernel, model.micro_cell.update.gates.kernel]
    return [g.numpy() for g in tape.gradient(loss, variables)]


@pytest.mark.parametrize("objective", ["mask_weight", "contrastive_weight"])
def test_auxiliary_objectives_change_the_gradients(objective):
    past = _past(batch=4, seed=3)
    future = _past(batch=4, seed=4)
    plain = _aux_model()
    aux = _aux_model(**{objective: 1.0})
    by_path = {w.path.split("/", 1)[1]: w for w in aux.weights}
    for w in plain.weights:
        by_path[w.path.split("/", 1)[1]].assign(w)
    keras.utils.set_random_seed(0)
    base = _encoder_gradient(plain, past, future)
    keras.utils.set_random_seed(0)
    with_aux = _encoder_gradient(aux, past, future)
    for a, b in zip(base, with_aux, strict=True):
        assert np.all(np.isfinite(b))
        assert np.abs(a - b).max() > 1e-6


def test_masks_cover_whole_frames_and_patches():
    model = _aux_model(frame_mask_ratio=0.5, patch_mask_ratio=0.5, mask_weight=1.0)
    keras.utils.set_random_seed(7)
    frames = np.ones((8, 4, 16, 16, 1), np.float32)
    masked, mask = (np.asarray(t) for t in model.masked_frames(frames))
    np.testing.assert_array_equal(masked, 1.0 - mask)
    whole = mask.reshape(8, 4, -1).min(axis=-1) == 1
    assert whole.any() and not whole.all()
    # Patch masks are constant over 4x4 blocks.
    blocks = mask[..., 0].reshape(8, 4, 4, 4, 4, 4)
    assert np.all(blocks.min(axis=(3, 5)) == blocks.max(axis=(3, 5)))


def test_presets_and_flops():
    spec = registry.get_preset("ustep_mmnist")["config"]
    assert (spec["hid_s"], spec["hid_t"], spec["num_spatial"]) == (64, 256, 4)
    assert (spec["micro_frames"], spec["macro_frames"], spec["num_heads"]) == (2, 5, 8)
    assert (spec["micro_blocks"], spec["macro_blocks"]) == (2, 2)
    summary = registry.preset_summary("ustep_tiny")
    assert summary["params"] > 0 and summary["macs"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["fp16", "int8"])
def test_quantized_tflite_has_builtin_ops_and_dynamic_batch(quantize, tmp_path):
    model = USTEP(**SMALL)
    calibration = _past(batch=8, seed=9)
    sidecar = export.export_tflite(
        model, tmp_path / "q.tflite", quantize=quantize, representative_data=calibration
    )
    assert sidecar["parity"]["passed"]
    assert "WHILE" not in sidecar["ops"] and not any(op.startswith("Flex") for op in sidecar["ops"])
    if quantize == "int8":
        # The first encoder and last decoder layers stay in float, whatever num_spatial is.
        assert sidecar["float_layers"] == ["encoder_0", f"decoder_{SMALL['num_spatial'] - 1}"]
        assert "DEQUANTIZE" in sidecar["ops"] and not sidecar["fully_integer"]
    lite = LiteForecaster(tmp_path / "q.tflite")
    for batch in (1, 3):
        assert lite.predict(_past(batch=batch)).shape == (batch, 4, 16, 16, 1)
