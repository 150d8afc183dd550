"""Mixed precision: low-precision compute, float32 variables, losses, outputs and artifacts.

`kerastp train --mixed-precision bfloat16|float16` builds the model under Keras'
`mixed_bfloat16` / `mixed_float16` dtype policy: layers compute in the low precision and keep
their variables in float32; every forecaster casts its forecast back to float32 (so losses and
metrics are computed in float32), and `compile` wraps the optimizer in Keras'
`LossScaleOptimizer` for float16 (bfloat16 has float32's exponent range and needs no scaling).
Exports go through `float32_model`, so a SavedModel, TFLite file or `.keras` written from a
mixed-precision model is a plain float32 model with the trained weights.
"""

import contextlib

import keras
import numpy as np

from kerastp import options

#: `--mixed-precision` value -> Keras dtype policy.
MIXED_PRECISION = {name: f"mixed_{name}" for name in options.MIXED_PRECISIONS}


def policy_name(mixed_precision):
    """The Keras dtype policy for a `mixed_precision` setting (None -> "float32")."""
    if mixed_precision in (None, "none", "float32"):
        return "float32"
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(
            "`mixed_precision` must be one of "
            f"{', '.join(repr(k) for k in (None, *MIXED_PRECISION))}, got "
            f"mixed_precision={mixed_precision!r}"
        )
    return MIXED_PRECISION[mixed_precision]


@contextlib.contextmanager
def policy_scope(policy):
    """Sets Keras' global dtype policy inside the block and restores the caller's after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def is_mixed(model):
    """True when `model` (built under a mixed policy) computes in a dtype other than float32."""
    policy = model.dtype_policy
    return policy.compute_dtype != policy.variable_dtype


def float32_model(model):
    """`model` itself if it is all float32, else a float32 twin carrying its weights.

    The twin is rebuilt from the model's config under the float32 policy, built on one
    batch and given the trained weights (variables are float32 in both). Its forecasts equal
    the mixed model's up to the low precision's rounding.
    """
    if not is_mixed(model):
        return model
    with policy_scope("float32"):
        config = {**model.get_config(), "dtype": "float32"}
        twin = type(model).from_config(config)
        twin(np.zeros((1, model.input_frames, *model.frame_shape), dtype="float32"))
    source = {v.path: v for v in model.weights}
    if len(source) != len(twin.weights) or any(v.path not in source for v in twin.weights):
        # Paths differ when layer names were uniquified differently: fall back to order.
        twin.set_weights(model.get_weights())
    else:
        for variable in twin.weights:
            variable.assign(source[variable.path])
    return twin
