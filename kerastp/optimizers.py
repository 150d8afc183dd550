"""The one-cycle policy of the STLight paper: a learning-rate schedule and an Adam whose beta_1
follows a schedule too.

PyTorch's `OneCycleLR` (cosine annealing, two phases) cycles the learning rate
`max_lr / div -> max_lr -> max_lr / div / final_div` and, at the same time, Adam's beta_1
`0.95 -> 0.85 -> 0.95`. `OneCycle` is one such curve as a Keras schedule;
`ScheduledAdam` is Adam whose `beta_1` may be a schedule; `one_cycle_adam()` wires both.
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerastp")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One cosine cycle: `start -> peak` over the warm-up, then `peak -> end`.

    Step counting follows PyTorch's `OneCycleLR(anneal_strategy="cos", three_phase=False)`:
    the warm-up ends at step `pct_start * total_steps - 1` and the cycle at
    `total_steps - 1`; steps past the end keep the end value.

    Args:
        start: value at step 0.
        peak: value at the end of the warm-up.
        end: value at the last step.
        total_steps: int, the number of optimizer steps of the whole run.
        pct_start: float in (0, 1), the warm-up fraction.

    Example:
    >>> lr = OneCycle(start=1.2e-4, peak=3e-3, end=1.2e-8, total_steps=100)
    >>> round(float(lr(0)), 6), round(float(lr(29)), 6)
    (0.00012, 0.003)
    """

    def __init__(self, start, peak, end, total_steps, pct_start=0.3):
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 2:
            raise ValueError(
                f"`total_steps` must be an integer >= 2, got total_steps={total_steps!r}"
            )
        if not 0.0 < float(pct_start) < 1.0:
            raise ValueError(f"`pct_start` must lie in (0, 1), got pct_start={pct_start!r}")
        self.start = float(start)
        self.peak = float(peak)
        self.end = float(end)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        # As PyTorch: a warm-up shorter than one step (warm_end < 0) is skipped, and the
        # annealing phase then starts from warm_end, not from step 0.
        warm_end = float(self.pct_start * self.total_steps) - 1.0
        last = float(self.total_steps - 1)

        def anneal(begin, finish, fraction):
            fraction = ops.clip(fraction, 0.0, 1.0)
            return finish + (begin - finish) / 2.0 * (1.0 + ops.cos(math.pi * fraction))

        rising = anneal(self.start, self.peak, step / warm_end) if warm_end > 0 else self.peak
        falling = anneal(self.peak, self.end, (step - warm_end) / (last - warm_end))
        return ops.where(step <= warm_end, rising, falling)

    def get_config(self):
        return {
            "start": self.start,
            "peak": self.peak,
            "end": self.end,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
        }


@keras.saving.register_keras_serializable(package="kerastp")
class ScheduledAdam(keras.optimizers.Adam):
    """Adam with PyTorch's update rule, whose `beta_1` may follow a schedule.

    The update is PyTorch's: `m_hat = m / (1 - b1^t)`, `v_hat = v / (1 - b2^t)`,
    `w -= lr * m_hat / (sqrt(v_hat) + epsilon)`, with `b1` the current value of the schedule
    (as `torch.optim.Adam` does when `OneCycleLR` cycles its momentum).

    Args:
        learning_rate: float or `LearningRateSchedule`.
        beta_1: float or `LearningRateSchedule` (evaluated at the optimizer's iteration).
        beta_2: float.
        epsilon: float, added to `sqrt(v_hat)`.
        **kwargs: other `keras.optimizers.Optimizer` arguments (`weight_decay`, `clipnorm`...).
    """

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, **kwargs):
        if kwargs.pop("amsgrad", False):
            raise ValueError("ScheduledAdam does not implement amsgrad; use keras.optimizers.Adam")
        super().__init__(
            learning_rate=learning_rate,
            beta_1=0.9,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=False,
            **kwargs,
        )
        if isinstance(beta_1, dict):
            beta_1 = keras.saving.deserialize_keras_object(beta_1)
        self.beta_1 = beta_1

    def _current_beta_1(self, dtype):
        if isinstance(self.beta_1, keras.optimizers.schedules.LearningRateSchedule):
            return ops.cast(self.beta_1(self.iterations), dtype)
        return ops.cast(self.beta_1, dtype)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        beta_1 = self._current_beta_1(variable.dtype)
        beta_2 = ops.cast(self.beta_2, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1.0 - beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1.0 - beta_2))
        m_hat = ops.divide(m, 1.0 - ops.power(beta_1, step))
        v_hat = ops.divide(v, 1.0 - ops.power(beta_2, step))
        update = ops.divide(ops.multiply(m_hat, lr), ops.add(ops.sqrt(v_hat), self.epsilon))
        self.assign_sub(variable, update)

    def get_config(self):
        config = super().get_config()
        config.pop("amsgrad", None)
        if isinstance(self.beta_1, keras.optimizers.schedules.LearningRateSchedule):
            config["beta_1"] = keras.saving.serialize_keras_object(self.beta_1)
        return config


def one_cycle_adam(
    max_learning_rate,
    total_steps,
    pct_start=0.3,
    div_factor=25.0,
    final_div_factor=1e4,
    max_beta_1=0.95,
    base_beta_1=0.85,
    epsilon=1e-8,
    **kwargs,
):
    """Adam under PyTorch's `OneCycleLR` defaults (the STLight paper's optimizer).

    Args:
        max_learning_rate: the peak learning rate (3e-3 for Moving MNIST in the paper).
        total_steps: the number of optimizer steps of the run (epochs * steps per epoch).
        pct_start, div_factor, final_div_factor: as in `torch.optim.lr_scheduler.OneCycleLR`.
        max_beta_1, base_beta_1: beta_1 runs `max -> base -> max` against the learning rate.
        epsilon: Adam's epsilon.
        **kwargs: passed to `ScheduledAdam`.

    Returns:
        A `ScheduledAdam`.
    """
    initial = max_learning_rate / div_factor
    learning_rate = OneCycle(
        start=initial,
        peak=max_learning_rate,
        end=initial / final_div_factor,
        total_steps=total_steps,
        pct_start=pct_start,
    )
    beta_1 = OneCycle(
        start=max_beta_1,
        peak=base_beta_1,
        end=max_beta_1,
        total_steps=total_steps,
        pct_start=pct_start,
    )
    return ScheduledAdam(learning_rate=learning_rate, beta_1=beta_1, epsilon=epsilon, **kwargs)
