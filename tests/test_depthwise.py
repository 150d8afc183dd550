"""kerastp.layers.depthwise: every implementation computes Keras' depth-wise convolution."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastp.layers import depthwise
from kerastp.layers.depthwise import DepthwiseConv2D, set_depthwise_implementation

CASES = [(3, 1, "same"), (7, 3, "same"), (5, 2, "valid")]


@pytest.fixture(autouse=True)
def _reset():
    yield
    set_depthwise_implementation(None)


def _inputs(kernel, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 13, 11, 3)).astype("float32")
    w = rng.normal(size=(kernel, kernel, 3, 1)).astype("float32")
    return x, w


@pytest.mark.parametrize("kernel,dilation,padding", CASES)
def test_shift_matches_keras_values_and_gradients_on_tensorflow(kernel, dilation, padding):
    x, w = _inputs(kernel)
    x, w = tf.constant(x), tf.constant(w)
    reference = keras.ops.depthwise_conv(x, w, 1, padding, dilation_rate=dilation)
    upstream = tf.constant(np.random.default_rng(1).normal(size=reference.shape), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, w])
        ours = depthwise.shift_depthwise(x, w, (dilation, dilation), padding)
        theirs = keras.ops.depthwise_conv(x, w, 1, padding, dilation_rate=dilation)
        loss_ours = tf.reduce_sum(ours * upstream)
        loss_theirs = tf.reduce_sum(theirs * upstream)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    for a, b in zip(tape.gradient(loss_ours, [x, w]), tape.gradient(loss_theirs, [x, w]),
                    strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.slow
def test_shift_matches_keras_values_and_gradients_on_jax():
    pytest.importorskip("jax")
    script = textwrap.dedent(
        f"""
        import json, os
        os.environ["KERAS_BACKEND"] = "jax"
        import jax, jax.numpy as jnp, keras, numpy as np
        from kerastp.layers import depthwise
        worst = {{}}
        for kernel, dilation, padding in {CASES!r}:
            rng = np.random.default_rng(0)
            x = jnp.asarray(rng.normal(size=(2, 13, 11, 3)), "float32")
            w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 1)), "float32")
            ref = lambda x, w: keras.ops.depthwise_conv(x, w, 1, padding, dilation_rate=dilation)
            g = jnp.asarray(rng.normal(size=ref(x, w).shape), "float32")
            for name in ("shift",):
                f = lambda x, w: depthwise.depthwise_conv(x, w, (dilation, dilation), padding,
                                                          name)
                value = float(jnp.abs(f(x, w) - ref(x, w)).max())
                grads = [jax.grad(lambda x, w, h=h: jnp.sum(h(x, w) * g), argnums=(0, 1))(x, w)
                         for h in (f, ref)]
                grad = max(float(jnp.abs(a - b).max()) for a, b in zip(*grads))
                worst[f"{{name}} k{{kernel}} d{{dilation}} {{padding}}"] = [value, grad]
        print(json.dumps(worst))
        """
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    worst = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(worst) == len(CASES)
    for case, (value, grad) in worst.items():
        assert value < 1e-5, case
        assert grad < 1e-4, case


def test_layer_keeps_keras_config_weights_and_outputs():
    x, _ = _inputs(3)
    ours = DepthwiseConv2D(7, padding="same", dilation_rate=3, bias_initializer="ones")
    theirs = keras.layers.DepthwiseConv2D(7, padding="same", dilation_rate=3)
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    assert {k: v for k, v in ours.get_config().items() if k != "name"} == {
        k: v for k, v in theirs.get_config().items() if k != "name"
    } | {"bias_initializer": ours.get_config()["bias_initializer"]}
    expected = np.asarray(theirs(x))
    for name in ("keras", "shift"):
        set_depthwise_implementation(name)
        np.testing.assert_allclose(np.asarray(ours(x)), expected, atol=1e-5, err_msg=name)


def test_strided_or_multiplied_layers_fall_back_to_keras():
    set_depthwise_implementation("shift")
    assert DepthwiseConv2D(3, strides=2)._alternative() is None
    assert DepthwiseConv2D(3, depth_multiplier=2)._alternative() is None
    assert DepthwiseConv2D(3)._alternative() == "shift"


def test_auto_uses_keras_off_the_measured_platforms():
    assert depthwise.depthwise_implementation() == "keras"  # TensorFlow, CPU
    for dtype in ("float32", "bfloat16"):
        assert depthwise.AUTO[("jax", "gpu", dtype, "dilated")] == "shift"
        assert ("jax", "gpu", dtype, "undilated") not in depthwise.AUTO
    # JAX on CPU: measured in float32 only, and only the dilated kernel is shifted.
    assert depthwise.AUTO[("jax", "cpu", "float32", "dilated")] == "shift"
    assert ("jax", "cpu", "float32", "undilated") not in depthwise.AUTO
    assert ("jax", "cpu", "bfloat16", "dilated") not in depthwise.AUTO
    assert not any(key[0] == "tensorflow" for key in depthwise.AUTO)  # exports keep Keras'


def test_auto_tells_dilated_from_undilated_kernels(monkeypatch):
    """On a measured platform "auto" shifts the dilated kernel and leaves the 3x3 to Keras."""
    monkeypatch.setattr(depthwise, "_platform", lambda: "gpu")
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert depthwise.depthwise_implementation("float32", dilated=True) == "shift"
    assert depthwise.depthwise_implementation("bfloat16", dilated=True) == "shift"
    assert depthwise.depthwise_implementation("float32", dilated=False) == "keras"
    assert DepthwiseConv2D(7, dilation_rate=3)._alternative() == "shift"
    assert DepthwiseConv2D(3)._alternative() is None


def test_shift_form_sums_16_bit_inputs_in_float32():
    """bfloat16 in, bfloat16 out, and the sum rounded once: closer to the float32 result than
    Keras' bfloat16 convolution, never further than one bfloat16 rounding of it."""
    x, _ = _inputs(3)
    rng = np.random.default_rng(1)
    w = rng.normal(size=(7, 7, x.shape[-1], 1)).astype("float32")
    exact = np.asarray(depthwise.depthwise_conv(x, w, (3, 3), "same", "keras"))
    low = depthwise.depthwise_conv(
        keras.ops.cast(x, "bfloat16"), keras.ops.cast(w, "float32"), (3, 3), "same", "shift"
    )
    assert keras.backend.standardize_dtype(low.dtype) == "bfloat16"
    x16 = np.asarray(keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32"))
    reference = np.asarray(depthwise.depthwise_conv(x16, w, (3, 3), "same", "keras"))
    low = np.asarray(keras.ops.cast(low, "float32"))
    # One rounding to bfloat16 (8 bits of mantissa): relative error at most 2**-8.
    np.testing.assert_allclose(low, reference, rtol=2**-8, atol=1e-6)
    assert np.abs(low - exact).max() < 0.05 * np.abs(exact).max()


def test_unknown_implementation_is_named(monkeypatch):
    with pytest.raises(ValueError, match="fastest"):
        set_depthwise_implementation("fastest")
    monkeypatch.setenv(depthwise.ENV_VAR, "cudnn")
    with pytest.raises(ValueError, match="KERASTP_DEPTHWISE.*cudnn"):
        depthwise.depthwise_implementation()
    monkeypatch.setenv(depthwise.ENV_VAR, "shift")
    assert depthwise.depthwise_implementation() == "shift"


def _in_litert(fn, x):
    """`fn(x)` converted to TFLite and run by LiteRT, where the native form runs.

    TensorFlow itself runs a dilated `DepthwiseConv2dNative` on a CPU only in its oneDNN path
    (on by default only on CPUs with AVX-512 VNNI / BF16, AVX-VNNI or AMX): the native form
    exists for TFLite, so its numbers are checked there, on any CPU.
    """
    from ai_edge_litert.interpreter import Interpreter

    concrete = tf.function(fn).get_concrete_function(tf.TensorSpec(x.shape, tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], fn)
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), ops


@pytest.mark.parametrize("dilation, padding", [(3, "same"), (2, "valid"), (1, "same")])
def test_native_form_matches_keras_forward(dilation, padding):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 21, 19, 5)).astype(np.float32)
    k = tf.constant(rng.standard_normal((7, 7, 5, 1)).astype(np.float32))
    native, ops = _in_litert(
        lambda t: depthwise.depthwise_conv(t, k, (dilation, dilation), padding, "native"), x
    )
    reference = depthwise.depthwise_conv(tf.constant(x), k, (dilation, dilation), padding, "keras")
    np.testing.assert_allclose(native, reference.numpy(), atol=1e-5)
    assert "DEPTHWISE_CONV_2D" in ops and "SPACE_TO_BATCH_ND" not in ops, ops


@pytest.mark.parametrize("kernel, dilation, padding, max_taps", [
    ((7, 7), (3, 3), "same", 25), ((7, 5), (2, 3), "valid", 25), ((5, 3), (1, 1), "same", 3),
    ((6, 4), (2, 1), "same", 8), ((4, 3), (3, 2), "valid", 1), ((7, 7), (8, 3), "same", 25),
])  # fmt: skip
def test_native_row_bands_sum_to_the_whole_kernel(kernel, dilation, padding, max_taps):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 23, 20, 3)).astype(np.float32)
    k = tf.constant(rng.standard_normal((*kernel, 3, 1)).astype(np.float32))
    bands = depthwise._band_edges(kernel[0], kernel[1], max_taps)
    assert bands[0][0] == 0 and bands[-1][1] == kernel[0] and len(bands) > 1
    assert all(b[0] == a[1] for a, b in zip(bands[:-1], bands[1:], strict=True))
    assert all((stop - start) * kernel[1] <= max(max_taps, kernel[1]) for start, stop in bands)
    split, _ = _in_litert(
        lambda t: depthwise.native_depthwise(t, k, dilation, padding, max_taps=max_taps), x
    )
    reference = depthwise.depthwise_conv(tf.constant(x), k, dilation, padding, "keras")
    assert split.shape == tuple(reference.shape)
    np.testing.assert_allclose(split, reference.numpy(), atol=1e-5)


def test_training_in_the_native_form_is_refused_by_name(monkeypatch):
    """Its gradients would ignore the dilation (or abort in oneDNN): fit says why instead."""
    monkeypatch.setenv(depthwise.ENV_VAR, "native")
    model = keras.Sequential([
        keras.Input((12, 12, 3)), DepthwiseConv2D(7, padding="same", dilation_rate=3),
    ])  # fmt: skip
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((2, 12, 12, 3), "float32")
    # Inference still traces (what an export does; running it on a CPU needs oneDNN, see
    # `_in_litert`).
    spec = tf.TensorSpec(x.shape, tf.float32)
    graph = tf.function(lambda t: model(t, training=False)).get_concrete_function(spec).graph
    assert "DepthwiseConv2dNative" in [op.type for op in graph.get_operations()]
    with pytest.raises(ValueError, match="'native' depth-wise form is for inference"):
        model.fit(x, x, epochs=1, verbose=0)


def test_export_scope_uses_the_native_form_and_restores_the_choice():
    layer = DepthwiseConv2D(7, padding="same", dilation_rate=3)
    layer.build((None, 16, 16, 4))
    assert layer._alternative() is None
    with depthwise.using_depthwise_implementation("native"):
        assert layer._alternative() == "native"
        undilated = DepthwiseConv2D(3, padding="same")
        undilated.build((None, 16, 16, 4))
        assert undilated._alternative() is None  # the same op either way
        large = DepthwiseConv2D(7, padding="same")  # 49 taps: split into XNNPACK's bands
        large.build((None, 16, 16, 4))
        assert large._alternative() == "native"
    assert layer._alternative() is None
    set_depthwise_implementation("shift")
    try:
        with depthwise.using_depthwise_implementation("native"):
            pass
        assert layer._alternative() == "shift"
    finally:
        set_depthwise_implementation(None)


@pytest.mark.parametrize(
    "preset", ["stlight_tiny", pytest.param("simvp_tiny", marks=pytest.mark.slow)]
)
def test_exported_dilated_convolutions_are_single_tflite_ops(preset, tmp_path):
    """SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND pairs are gone from every exported graph."""
    from kerastp import export, registry
    from kerastp.lite import LiteForecaster

    model = registry.build_model(preset, height=16, width=16, input_frames=4, output_frames=4)
    sidecar = export.export_tflite(model, tmp_path / f"{preset}.tflite")
    ops = LiteForecaster(tmp_path / f"{preset}.tflite").ops
    assert "DEPTHWISE_CONV_2D" in ops and sidecar["parity"]["passed"]
    assert not {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"} & set(ops), (preset, ops)
    # Every depth-wise kernel fits XNNPACK's single-pass micro-kernels.
    interpreter = LiteForecaster(tmp_path / f"{preset}.tflite").interpreter
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    taps = [
        int(np.prod(details[op["inputs"][1]]["shape"][1:3]))
        for op in interpreter._get_ops_details()
        if op["op_name"] == "DEPTHWISE_CONV_2D"
    ]
    assert taps and max(taps) <= depthwise.XNNPACK_MAX_TAPS, (preset, taps)
    # Training graphs keep Keras' form: TensorFlow's CPU gradients of the native op ignore
    # the dilation.
    assert depthwise.depthwise_implementation() == "keras"


@pytest.mark.slow
def test_keras_form_export_holds_the_pairs_the_native_form_removes(tmp_path, monkeypatch):
    """The former export (Keras' form) holds SPACE_TO_BATCH_ND: what the test above checks
    is gone can be seen (slow: one more export)."""
    from kerastp import export, registry
    from kerastp.lite import LiteForecaster

    model = registry.build_model("simvp_tiny", height=16, width=16, input_frames=4,
                                 output_frames=4)  # fmt: skip
    monkeypatch.setattr(export, "DEPTHWISE_FORM", "keras")
    export.export_tflite(model, tmp_path / "keras_form.tflite")
    assert "SPACE_TO_BATCH_ND" in LiteForecaster(tmp_path / "keras_form.tflite").ops


def test_the_served_saved_model_has_no_dilated_native_convolution(tmp_path):
    """The SavedModel served to users keeps Keras' form: TensorFlow runs a dilated
    `DepthwiseConv2dNative` on a CPU only with oneDNN (not on an AVX2 AMD EPYC, say), while
    the graph that TFLite conversions start from uses the native form."""
    from tensorflow.core.protobuf import saved_model_pb2

    from kerastp import export, registry

    model = registry.build_model(
        "stlight_tiny", height=16, width=16, input_frames=4, output_frames=4
    )

    def depthwise_dilations(directory):
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((directory / "saved_model.pb").read_bytes())
        graph = proto.meta_graphs[0].graph_def
        nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
        return [
            max(node.attr["dilations"].list.i or [1])  # absent: the default, 1
            for node in nodes
            if node.op == "DepthwiseConv2dNative"
        ]

    export.export_saved_model(model, tmp_path / "served")
    served = depthwise_dilations(tmp_path / "served")
    assert served and max(served) == 1, served
    export.write_tflite_source(model, tmp_path / "source")
    assert max(depthwise_dilations(tmp_path / "source")) == 3
