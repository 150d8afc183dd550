"""kerastp.layers.group_norm: Keras' GroupNormalization, computed with static shapes and
per-channel spatial means; the same values and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastp.layers.group_norm import GroupNormalization

CASES = [
    ((2, 5, 7, 6), 2, {}),
    ((2, 5, 7, 6), 3, {"epsilon": 0.1}),
    ((2, 5, 7, 6), 6, {"center": False}),
    ((2, 9, 6), 2, {"scale": False}),
    ((2, 3, 4, 5, 6), 3, {}),
    ((3, 6, 4, 4), 2, {"axis": 1}),  # channels first: Keras' computation
]


@pytest.mark.parametrize("shape,groups,kwargs", CASES)
def test_values_and_gradients_equal_keras(shape, groups, kwargs):
    rng = np.random.default_rng(0)
    # Heavy-tailed values with an offset: where E[x^2] - E[x]^2 would lose digits.
    x = tf.constant((rng.standard_t(3, size=shape) * 4 + 7).astype("float32"))
    ours = GroupNormalization(groups=groups, **kwargs)
    theirs = keras.layers.GroupNormalization(groups=groups, **kwargs)
    ours.build(shape)
    theirs.build(shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in theirs.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    upstream = tf.constant(rng.normal(size=shape).astype("float32"))
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * upstream)
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_weights])])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    assert ours.get_config() == {**theirs.get_config(), "name": ours.name}


def test_16_bit_inputs_normalise_in_float32_and_return_the_compute_dtype():
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 8)).astype("float32") * 100 + 50
    layer = GroupNormalization(groups=4, dtype="mixed_bfloat16")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    reference = keras.layers.GroupNormalization(groups=4)(x)
    np.testing.assert_allclose(np.asarray(tf.cast(y, "float32")), reference, atol=0.02)


def test_batch_agnostic_graph_converts_to_static_shapes(tmp_path):
    """No SHAPE op in the TFLite graph: every reshape is static apart from the batch."""
    inputs = keras.Input((16, 16, 8))
    model = keras.Model(inputs, GroupNormalization(groups=2)(inputs))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    flatbuffer = converter.convert()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    ops = {d["op_name"] for d in interpreter._get_ops_details()}
    assert "SHAPE" not in ops and "MEAN" in ops
    interpreter.resize_tensor_input(0, (3, 16, 16, 8))
    interpreter.allocate_tensors()
    x = np.random.default_rng(2).normal(size=(3, 16, 16, 8)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-5)
