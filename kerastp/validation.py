"""Argument checks shared by kerastp layers and models; errors name the argument and value."""

import numpy as np


def positive_int(name, value):
    """Returns `value` as int, or raises `ValueError` if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {name}={value!r}")
    return int(value)


def positive_ints(**values):
    """`positive_int` over keyword arguments, in order."""
    return [positive_int(name, value) for name, value in values.items()]
