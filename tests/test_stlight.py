"""STLight: faithfulness to SPEC §2 (paper parameter and FLOP counts, layer math, init)."""

import math

import keras
import numpy as np
import pytest

from kerastp import registry
from kerastp.flops import count_macs
from kerastp.layers import STLMixerBlock
from kerastp.models.stlight import STLight

# ---------------------------------------------------------------- NumPy reference


def _erf(x):
    return np.vectorize(math.erf)(x)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _depthwise(x, kernel, bias, dilation=1):
    """'same' depth-wise conv of (H, W, C) with a (k, k, C, 1) kernel."""
    k = kernel.shape[0]
    reach = dilation * (k - 1)
    before = reach // 2
    padded = np.pad(x, ((before, reach - before), (before, reach - before), (0, 0)))
    out = np.zeros_like(x, dtype=np.float64)
    h, w = x.shape[:2]
    for i in range(k):
        for j in range(k):
            di, dj = i * dilation, j * dilation
            out += padded[di : di + h, dj : dj + w] * kernel[i, j, :, 0]
    return out + bias


def _bn(x, layer):
    gamma, beta, mean, var = (np.asarray(v, np.float64) for v in layer.get_weights())
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def _mixer(x, block):
    k1, b1 = block.depthwise_1.get_weights()
    k2, b2 = block.depthwise_2.get_weights()
    branch = _depthwise(_depthwise(x, k1, b1), k2, b2, dilation=block.dilation)
    x = x + _bn(_gelu(branch), block.depthwise_norm)
    kernel, bias = block.pointwise.get_weights()
    return _bn(_gelu(x @ kernel[0, 0] + bias), block.pointwise_norm)


def _stlight_reference(model, past):
    """STLight written out from SPEC §2, for one sequence (T, H, W, C)."""
    t, h, w, c = past.shape
    p = model.patch_size
    x = past.transpose(1, 2, 0, 3).reshape(h, w, t * c)  # frame-major channels
    kernel, bias = model.encoder_conv.get_weights()
    patches = x.reshape(h // p, p, w // p, p, t * c).transpose(0, 2, 1, 3, 4)
    x = np.einsum("abijc,ijcd->abd", patches, kernel) + bias
    x = _gelu(_bn(x, model.encoder_norm))
    store, add = model.depth // 3, 2 * model.depth // 3
    for i, block in enumerate(model.mixer_blocks):
        if i == store:
            skip = x
        if i == add and store != add:
            x = x + skip
        x = _mixer(x, block)
    d = x.shape[-1]
    x = x.reshape(h // p, w // p, p, p, d // (p * p)).transpose(0, 2, 1, 3, 4)
    x = x.reshape(h, w, d // (p * p))
    kernel, bias = model.reassemble.get_weights()
    x = x @ kernel[0, 0] + bias
    k = model.frames_per_step
    return x.reshape(h, w, k, c).transpose(2, 0, 1, 3)


def _randomise_batchnorm(model, rng):
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape),
                    rng.uniform(0.5, 1.5, var.shape),
                ]
            )


# ---------------------------------------------------------------- mixer block


def test_mixer_block_golden_numbers():
    """Constant weights and an arange input: hand-checkable, hard-coded numbers."""
    block = STLMixerBlock(hidden_dim=4, kernel_size_1=3, kernel_size_2=3, dilation=2)
    block.build((1, 5, 5, 4))
    block.depthwise_1.set_weights([np.full((3, 3, 4, 1), 0.1), np.full((4,), 0.01)])
    block.depthwise_2.set_weights([np.full((3, 3, 4, 1), -0.05), np.zeros((4,))])
    block.pointwise.set_weights([np.eye(4)[None, None] * 0.5, np.full((4,), 0.1)])
    x = (np.arange(100, dtype=np.float32).reshape(1, 5, 5, 4) / 100.0).astype(np.float32)
    out = keras.ops.convert_to_numpy(block(x, training=False))
    # Independent NumPy computation of the same block.
    np.testing.assert_allclose(out[0], _mixer(x[0].astype(np.float64), block), atol=1e-5)
    # Hard-coded values: a refactor that changes the math fails here.
    expected = {
        (0, 0, 0): 0.04787607,
        (2, 2, 1): 0.19788892,
        (4, 4, 3): 0.41289624,
        (1, 3, 2): 0.14876280,
    }
    for (i, j, ch), value in expected.items():
        assert out[0, i, j, ch] == pytest.approx(value, abs=1e-5), (i, j, ch)


def test_mixer_block_matches_reference_with_random_weights():
    rng = np.random.default_rng(0)
    block = STLMixerBlock(hidden_dim=8)
    block.build((2, 9, 9, 8))
    _randomise_batchnorm(block, rng)
    x = rng.normal(size=(2, 9, 9, 8)).astype(np.float32)
    out = keras.ops.convert_to_numpy(block(x, training=False))
    for n in range(2):
        np.testing.assert_allclose(out[n], _mixer(x[n].astype(np.float64), block), atol=1e-4)


def test_mixer_block_config_round_trip_and_validation():
    block = STLMixerBlock(hidden_dim=8, kernel_size_1=5, kernel_size_2=9, dilation=2, name="b")
    clone = STLMixerBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    with pytest.raises(ValueError, match="hidden_dim"):
        STLMixerBlock(hidden_dim=0)
    with pytest.raises(ValueError, match="got inputs with 6 channels"):
        STLMixerBlock(hidden_dim=8).build((1, 4, 4, 6))


# ---------------------------------------------------------------- whole model


@pytest.mark.parametrize("depth, overlap", [(3, 0), (6, 0), (4, 2)])
def test_stlight_matches_spec_reference(depth, overlap):
    rng = np.random.default_rng(depth)
    model = STLight(3, 3, 8, 8, 2, hidden_dim=8, depth=depth, overlap=overlap)
    _randomise_batchnorm(model, rng)
    past = rng.random((2, 3, 8, 8, 2), dtype=np.float32)
    out = keras.ops.convert_to_numpy(model(past, training=False))
    if overlap:
        # O > 0: kernel p*O, zero-padded by (p*O - p) / 2 on each side.
        assert model.encoder_conv.kernel_size == (4, 4)
        assert model.encoder_padding.padding == ((1, 1), (1, 1))
        return
    for n in range(2):
        np.testing.assert_allclose(
            out[n], _stlight_reference(model, past[n].astype(np.float64)), atol=1e-4
        )


def test_skip_connects_block_depth_over_3_to_2_depth_over_3():
    assert STLight(hidden_dim=8, depth=16, height=8, width=8).skip_blocks == (5, 10)
    assert STLight(hidden_dim=8, depth=6, height=8, width=8).skip_blocks == (2, 4)


def test_layers_are_only_dense_encoder_depthwise_pointwise_and_batchnorm():
    model = STLight(4, 4, 8, 8, 1, hidden_dim=8, depth=3)
    kinds = {type(layer).__name__ for layer in model._flatten_layers(include_self=False)}
    assert kinds == {"Conv2D", "DepthwiseConv2D", "BatchNormalization", "STLMixerBlock"}
    convs = [lay for lay in model._flatten_layers() if type(lay).__name__ == "Conv2D"]
    # One dense (k > 1) convolution: the encoder; the rest are 1x1.
    assert [c.name for c in convs if c.kernel_size != (1, 1)] == ["encoder_conv"]


def test_initialisation_scheme():
    d = 256
    model = STLight(10, 10, 16, 16, 1, hidden_dim=d, depth=2)
    block = model.mixer_blocks[0]
    for conv, k in ((block.depthwise_1, 3), (block.depthwise_2, 7)):
        kernel = conv.get_weights()[0]
        assert kernel.std() == pytest.approx(math.sqrt(2 / (d * k * k)), rel=0.05)
        assert not conv.get_weights()[1].any()
    pointwise = block.pointwise.get_weights()[0]
    assert pointwise.std() == pytest.approx(math.sqrt(2 / d), rel=0.05)
    encoder = model.encoder_conv.get_weights()[0]
    assert encoder.std() == pytest.approx(math.sqrt(2 / (d * 4)), rel=0.05)
    kernel, bias = model.reassemble.get_weights()
    bound = 1 / math.sqrt(d // 4)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    assert np.abs(kernel).max() > 0.8 * bound
    norm = block.pointwise_norm
    assert (norm.momentum, norm.epsilon) == (0.9, 1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_dim": 10}, "divisible by patch_size\\*\\*2=4"),
        ({"height": 63}, "`height` must be divisible by patch_size=2"),
        ({"depth": 0}, "`depth` must be a positive integer"),
        ({"overlap": -1}, "`overlap`"),
        ({"output_frames": 2.5}, "`output_frames`"),
    ],
)
def test_invalid_arguments(kwargs, message):
    config = {"hidden_dim": 8, "depth": 2, "height": 16, "width": 16, **kwargs}
    with pytest.raises(ValueError, match=message):
        STLight(**config)


# ---------------------------------------------------------------- paper presets


PAPER = {
    # preset: (paper params, MACs of every layer, fvcore-convention MACs measured on
    # PyTorch STLight: 10.58 G for d=800 and 32.28 G for d=1400; see SPEC §2)
    "stlight_extra_small": (11.1e6, 11.29e9, 10.58e9),
    "stlight_small": (17.1e6, 17.39e9, 16.50e9),
    "stlight_medium": (24.3e6, 24.80e9, 23.74e9),
    "stlight_large": (32.9e6, 33.52e9, 32.28e9),
}


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_paper_presets_match_parameter_and_flop_counts(preset, paper_counts):
    # Counts of the paper-size model from kerastp/preset_counts.json (CI's slow step rebuilds the
    # model and recounts: test_slow.py::test_paper_counts_cache_matches_a_recount).
    params, macs, fvcore = PAPER[preset]
    counted = paper_counts[preset]
    assert counted["params"] == pytest.approx(params, rel=0.01)
    assert counted["macs"] == pytest.approx(macs, rel=0.01)
    assert counted["fvcore_macs"] == pytest.approx(fvcore, rel=0.005)
    # The paper's FLOPs (as fvcore counted) are the registry's `paper.flops`.
    assert counted["fvcore_macs"] == pytest.approx(
        registry.get_preset(preset)["paper"]["flops"], rel=0.01
    )


def test_mac_counter_by_hand_on_a_small_model():
    model = STLight(2, 2, 8, 8, 1, hidden_dim=8, depth=1, patch_size=2)
    report = count_macs(model)
    positions = 4 * 4
    encoder = positions * (2 * 2 * 2) * 8
    depthwise = positions * (9 + 49) * 8
    pointwise = positions * 8 * 8
    reassemble = 8 * 8 * 2 * 2
    assert report.macs == encoder + depthwise + pointwise + reassemble
    batchnorm = 2 * (3 * positions * 8)
    assert report.fvcore_macs == encoder + pointwise + reassemble + batchnorm
    # A rollout runs the network again: twice the frames, twice the MACs.
    long = STLight(2, 4, 8, 8, 1, hidden_dim=8, depth=1, patch_size=2)
    assert count_macs(long).macs == 2 * report.macs


# ---------------------------------------------------------------- exported layout


def test_export_layout_groups_channels_and_chunks_measured_widths():
    from kerastp.layers import stl_mixer

    assert stl_mixer.export_layout(64) == (1, 1)  # tiny: the plain block
    assert stl_mixer.export_layout(512) == (3, 1)  # groups of at most 200 channels
    assert stl_mixer.export_layout(800) == (4, 1)
    assert stl_mixer.export_layout(1000) == (5, 2)
    # At most 5 groups: XNNPACK delegates no wider CONCATENATION.
    assert stl_mixer.export_layout(1200) == (stl_mixer.MAX_EXPORT_GROUPS, 2)
    assert stl_mixer.export_layout(1400) == (stl_mixer.MAX_EXPORT_GROUPS, 1)
    assert stl_mixer._slices(10, 3) == [(0, 3), (3, 6), (6, 10)]


@pytest.mark.parametrize("training", [False, True])
def test_exported_layout_is_the_same_block(monkeypatch, training):
    """In a float TFLite export's trace the block runs in channel groups and point-wise
    chunks, and computes the same numbers; training never takes that path."""
    import tensorflow as tf

    from kerastp.layers import stl_mixer

    monkeypatch.setattr(stl_mixer, "EXPORT_GROUP_CHANNELS", 4)
    monkeypatch.setattr(stl_mixer, "EXPORT_POINTWISE_CHUNKS", {12: 2})
    rng = np.random.default_rng(0)
    block = STLMixerBlock(hidden_dim=12, kernel_size_1=3, kernel_size_2=5, dilation=2)
    block.build((2, 9, 9, 12))
    _randomise_batchnorm(block, rng)
    for layer in (block.depthwise_1, block.depthwise_2, block.pointwise):
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    x = rng.normal(size=(2, 9, 9, 12)).astype(np.float32)
    plain = keras.ops.convert_to_numpy(block(x, training=training))
    assert block._export_layout() is None  # outside an export: the plain block
    with stl_mixer.using_float_tflite_layout():
        assert block._export_layout() == (3, 2)
        graph = tf.function(lambda t: block(t, training=training)).get_concrete_function(
            tf.TensorSpec(x.shape, tf.float32)
        )
        exported = graph(tf.constant(x)).numpy()
    ops = {op.type for op in graph.graph.get_operations()}
    assert ("ConcatV2" in ops) is (not training), ops
    np.testing.assert_allclose(exported, plain, atol=1e-5)
    if not training:
        np.testing.assert_allclose(exported[0], _mixer(x[0].astype(np.float64), block), atol=1e-4)


def test_exported_tflite_runs_grouped_layout_in_one_xnnpack_partition(tmp_path, monkeypatch):
    from kerastp import export
    from kerastp.layers import stl_mixer
    from kerastp.lite import LiteForecaster, delegation

    monkeypatch.setattr(stl_mixer, "EXPORT_GROUP_CHANNELS", 16)
    monkeypatch.setattr(stl_mixer, "EXPORT_POINTWISE_CHUNKS", {64: 2})
    model = registry.build_model("stlight_tiny", height=16, width=16, input_frames=4,
                                 output_frames=4)  # fmt: skip
    _randomise_batchnorm(model, np.random.default_rng(1))
    sidecar = export.export_tflite(model, tmp_path / "grouped.tflite")
    assert sidecar["parity"]["passed"], sidecar["parity"]
    assert not stl_mixer._float_tflite_layout["active"]  # restored after the trace
    lite = LiteForecaster(tmp_path / "grouped.tflite")
    assert "CONCATENATION" in lite.ops, lite.ops
    lite.predict(export.probe_batch(model, batch_size=1))  # XNNPACK applies on allocation
    placed = delegation(lite.interpreter)
    assert placed["partitions"] == 1 and not placed["fallback_ops"], placed


@pytest.mark.slow
def test_integer_exports_keep_the_plain_layout(tmp_path, monkeypatch):
    """Integer files keep the plain graph (the grouped one ran slower in int8), under the
    settings that make the float file grouped in the test above (slow: one more export)."""
    from kerastp import export
    from kerastp.layers import stl_mixer
    from kerastp.lite import LiteForecaster

    monkeypatch.setattr(stl_mixer, "EXPORT_GROUP_CHANNELS", 16)
    monkeypatch.setattr(stl_mixer, "EXPORT_POINTWISE_CHUNKS", {64: 2})
    model = registry.build_model("stlight_tiny", height=16, width=16, input_frames=4,
                                 output_frames=4)  # fmt: skip
    export.export_tflite(model, tmp_path / "dynamic.tflite", quantize="dynamic")
    assert "CONCATENATION" not in LiteForecaster(tmp_path / "dynamic.tflite").ops


def test_grouped_layout_follows_the_depthwise_form():
    """The grouped branch computes each depth-wise convolution in the form the layer itself
    would use (Keras' form wraps a dilated one in SpaceToBatchND; the native one does not)."""
    import tensorflow as tf

    from kerastp.layers import stl_mixer
    from kerastp.layers.depthwise import using_depthwise_implementation

    block = STLMixerBlock(hidden_dim=8, kernel_size_2=3, dilation=2)
    block.build((1, 8, 8, 8))
    spec = tf.TensorSpec((1, 8, 8, 8), tf.float32)
    for form, wrapped in (("keras", True), ("native", False)):
        with using_depthwise_implementation(form), stl_mixer.using_float_tflite_layout(
            layout=(2, 2)
        ):
            graph = tf.function(lambda t: block(t, training=False)).get_concrete_function(spec)
        ops = [op.type for op in graph.graph.get_operations()]
        assert ("SpaceToBatchND" in ops) is wrapped, (form, sorted(set(ops)))
        assert ops.count("DepthwiseConv2dNative") >= 4, (form, ops)  # 2 convs x 2 groups
    with pytest.raises(ValueError, match="stride 1"):
        from kerastp.layers.depthwise import DepthwiseConv2D

        strided = DepthwiseConv2D(3, strides=2)
        strided.build((1, 8, 8, 4))
        strided.call_channels(np.zeros((1, 8, 8, 2), "float32"), 0, 2)
