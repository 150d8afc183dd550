"""Contract harness for every public layer in `kerastp.layers` (cf. Keras' `run_layer_test`).

Per layer, on small inputs (8 x 8 maps, a few channels, batch 2), called the way its models
call it (recurrent cells with their states):

1. config round trip through JSON: equal config, equal outputs once weights are copied;
2. symbolic (`KerasTensor`) and `compute_output_shape` shapes equal the eager ones;
3. one gradient step: every trainable weight gets a finite, non-zero gradient, and one SGD
   step lowers the loss;
4. mixed precision: built with `dtype="mixed_bfloat16"`, float32 variables and finite
   bfloat16 outputs (so every sublayer follows the layer's policy);
5. serialisation: `serialize_keras_object` / `deserialize_keras_object` under the "kerastp"
   package, and the layer inside a functional model saved to `.keras` and reloaded with equal
   outputs.

A layer added to `kerastp.layers.__all__` without a case here fails
`test_every_public_layer_has_a_case`.
"""

import dataclasses
import inspect
import json
from collections.abc import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerastp.layers
from kerastp.layers import (
    ConvLSTMCell,
    ConvSC,
    GatedUpdate,
    GSTABlock,
    MicroTemporalCell,
    SpatioTemporalLSTMCell,
    StackedFrameAttention,
    STLMixerBlock,
    TAUBlock,
)

BATCH, SIZE = 2, 8


def _maps(channels, size=SIZE):
    """A factory of (BATCH, size, size, channels) inputs drawn from a given generator."""
    return lambda rng: rng.standard_normal((BATCH, size, size, channels)).astype("float32")


@dataclasses.dataclass(frozen=True)
class Case:
    """One layer configuration and the positional arguments of its `call`.

    `args` maps a NumPy generator to the call's positional arguments: a tuple whose items are
    arrays or nests (list/tuple) of arrays, e.g. `((u, h),)` for `GatedUpdate`, `(x, [h])` for
    `MicroTemporalCell`.
    """

    id: str
    cls: type
    kwargs: dict
    args: Callable

    def make(self, **extra):
        return self.cls(**self.kwargs, **extra)

    def inputs(self, seed=0):
        return self.args(np.random.default_rng(seed))


CASES = [
    Case(
        "ConvLSTMCell",
        ConvLSTMCell,
        {"filters": 4, "kernel_size": 3, "use_bias": True, "forget_bias": 1.0, "layer_norm": True},
        lambda rng: (_maps(3)(rng), _maps(4)(rng), _maps(4)(rng)),
    ),
    Case("ConvSC-same", ConvSC, {"filters": 6}, lambda rng: (_maps(3)(rng),)),
    Case("ConvSC-down", ConvSC, {"filters": 4, "sampling": "down"}, lambda rng: (_maps(3)(rng),)),
    Case(
        "ConvSC-up",
        ConvSC,
        {"filters": 4, "kernel_size": 5, "sampling": "up"},
        lambda rng: (_maps(4, size=4)(rng),),
    ),
    Case(
        "GSTABlock",
        GSTABlock,
        {"dim": 8, "kernel_size": 7, "mlp_ratio": 2.0},
        lambda rng: (_maps(8)(rng),),
    ),
    Case("GatedUpdate", GatedUpdate, {"dim": 4}, lambda rng: ((_maps(4)(rng), _maps(4)(rng)),)),
    Case(
        "MicroTemporalCell",
        MicroTemporalCell,
        {"dim": 8, "height": SIZE, "width": SIZE, "num_blocks": 1, "kernel_size": 5},
        lambda rng: (_maps(6)(rng), [_maps(8)(rng)]),
    ),
    Case(
        "STLMixerBlock",
        STLMixerBlock,
        {"hidden_dim": 8, "kernel_size_2": 5, "dilation": 2},
        lambda rng: (_maps(8)(rng),),
    ),
    Case(
        "SpatioTemporalLSTMCell",
        SpatioTemporalLSTMCell,
        {"filters": 4, "kernel_size": 3, "layer_norm": True},
        lambda rng: (_maps(3)(rng), _maps(4)(rng), _maps(4)(rng), _maps(4)(rng)),
    ),
    Case(
        "StackedFrameAttention",
        StackedFrameAttention,
        {"dim": 8, "num_heads": 2, "mlp_ratio": 2.0},
        lambda rng: (_maps(8)(rng),),
    ),
    Case(
        "TAUBlock",
        TAUBlock,
        {"dim": 16, "kernel_size": 7, "mlp_ratio": 2.0},
        lambda rng: (_maps(16)(rng),),
    ),
]

#: Trainable weights whose gradient is zero by construction, with the reason.
ZERO_GRADIENT = {
    # softmax(q . (k + b)) == softmax(q . k): a key bias shifts every logit of a query equally.
    ("StackedFrameAttention", "attention/key/bias"),
}

cases = pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])


def _flat(structure):
    return keras.tree.flatten(structure)


def _numpy(structure):
    return [keras.ops.convert_to_numpy(x) for x in _flat(structure)]


def _call(layer, args, training=False):
    """Calls `layer` the way models do: positional arguments, plus `training` if it takes one."""
    if "training" in inspect.signature(layer.call).parameters:
        return layer(*args, training=training)
    return layer(*args)


def _json(value):
    return json.loads(json.dumps(value))


def _shapes(structure):
    """The shapes in a nest of shapes (a shape is a tuple of ints and None)."""
    if isinstance(structure, tuple | list) and all(
        d is None or isinstance(d, int) for d in structure
    ):
        return [tuple(structure)]
    return [shape for item in structure for shape in _shapes(item)]


def test_every_public_layer_has_a_case():
    assert {case.cls.__name__ for case in CASES} == set(kerastp.layers.__all__)
    for case in CASES:
        assert getattr(kerastp.layers, case.cls.__name__) is case.cls


@cases
def test_config_round_trip_through_json(case):
    layer = case.make()
    args = case.inputs()
    expected = _numpy(_call(layer, args))
    config = _json(layer.get_config())
    clone = case.cls.from_config(config)
    assert _json(clone.get_config()) == config
    _call(clone, args)  # builds the clone
    assert len(clone.weights) == len(layer.weights)
    clone.set_weights(layer.get_weights())
    for got, want in zip(_numpy(_call(clone, args)), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@cases
def test_symbolic_and_eager_shapes_agree(case):
    layer = case.make()
    args = case.inputs()
    symbolic_args = keras.tree.map_structure(
        lambda a: keras.KerasTensor((None, *a.shape[1:]), dtype="float32"), args
    )
    symbolic = _flat(_call(layer, symbolic_args))
    eager = _flat(_call(layer, args))
    eager_shapes = [tuple(x.shape) for x in eager]
    assert [tuple(x.shape) for x in symbolic] == [(None, *s[1:]) for s in eager_shapes]
    assert all(len(s) == 4 and s[0] == BATCH for s in eager_shapes)
    if type(layer).compute_output_shape is not keras.layers.Layer.compute_output_shape:
        shapes = keras.tree.map_structure(lambda a: a.shape, args)
        assert _shapes(layer.compute_output_shape(*shapes)) == eager_shapes
        unbatched = keras.tree.map_structure(lambda a: (None, *a.shape[1:]), args)
        assert _shapes(layer.compute_output_shape(*unbatched)) == [
            (None, *s[1:]) for s in eager_shapes
        ]


@cases
def test_one_gradient_step_lowers_the_loss(case):
    layer = case.make()
    args = keras.tree.map_structure(tf.constant, case.inputs())
    rng = np.random.default_rng(1)
    targets = [rng.standard_normal(x.shape).astype("float32") for x in _numpy(_call(layer, args))]

    def loss():
        outputs = _flat(_call(layer, args, training=True))
        return sum(
            keras.ops.mean(keras.ops.square(y - t)) for y, t in zip(outputs, targets, strict=True)
        )

    weights = layer.trainable_weights
    assert weights, f"{case.id} has no trainable weights"
    with tf.GradientTape() as tape:
        before = loss()
    gradients = tape.gradient(before, weights)
    for weight, gradient in zip(weights, gradients, strict=True):
        assert gradient is not None, f"no gradient reaches {weight.path}"
        gradient = keras.ops.convert_to_numpy(gradient)
        assert np.all(np.isfinite(gradient)), weight.path
        relative = weight.path.split("/", 1)[1]
        if (case.cls.__name__, relative) not in ZERO_GRADIENT:
            assert np.any(gradient != 0), f"zero gradient for {weight.path}"
    keras.optimizers.SGD(learning_rate=0.01).apply(gradients, weights)
    after = loss()
    assert np.isfinite(float(after))
    assert float(after) < float(before)


@cases
def test_mixed_bfloat16_keeps_float32_variables(case):
    layer = case.make(dtype="mixed_bfloat16")
    outputs = _call(layer, case.inputs())
    assert layer.compute_dtype == "bfloat16"
    assert layer.weights
    for weight in layer.weights:
        assert keras.backend.standardize_dtype(weight.dtype) == "float32", weight.path
    for output in _flat(outputs):
        assert keras.backend.standardize_dtype(output.dtype) == "bfloat16"
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(output, "float32"))))


@cases
def test_serialization_and_keras_file_round_trip(case, tmp_path):
    layer = case.make()
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"kerastp>{case.cls.__name__}"
    revived = keras.saving.deserialize_keras_object(_json(serialized))
    assert type(revived) is case.cls
    assert _json(revived.get_config()) == _json(layer.get_config())

    args = case.inputs()
    inputs = keras.tree.map_structure(lambda a: keras.Input(shape=a.shape[1:]), args)
    model = keras.Model(_flat(inputs), _flat(_call(layer, inputs)))
    flat_args = _flat(args)
    expected = _numpy(model(flat_args))
    for got, want in zip(expected, _numpy(_call(layer, args)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    path = tmp_path / "layer.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    inner = [sub for sub in reloaded.layers if isinstance(sub, case.cls)]
    assert len(inner) == 1
    for got, want in zip(_numpy(reloaded(flat_args)), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
