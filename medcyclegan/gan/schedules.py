"""Learning-rate schedule of the reference CycleGAN: constant, then linear decay to zero."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="medcyclegan")
class ConstantThenLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(step) = initial`` for ``step < constant_steps``, then linear to 0 over ``decay_steps``.

    ``lr(constant_steps + k) = initial * (1 - k / decay_steps)``, clipped at 0 from
    ``constant_steps + decay_steps`` on. ``step`` is the optimizer's iteration counter (number of
    updates already applied), so a restored optimizer continues the schedule where it stopped.
    ``decay_steps = 0`` keeps the rate constant.
    """

    def __init__(self, initial_learning_rate: float, constant_steps: int, decay_steps: int):
        self.initial_learning_rate = float(initial_learning_rate)
        self.constant_steps = int(constant_steps)
        self.decay_steps = int(decay_steps)
        if self.constant_steps < 0 or self.decay_steps < 0:
            raise ValueError("constant_steps and decay_steps must be >= 0")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.initial_learning_rate, "float32")
        if self.decay_steps == 0:
            return lr
        frac = (step - float(self.constant_steps)) / float(self.decay_steps)
        factor = ops.clip(1.0 - frac, 0.0, 1.0)
        return lr * factor

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "constant_steps": self.constant_steps,
            "decay_steps": self.decay_steps,
        }


def from_config(cfg: dict) -> ConstantThenLinearDecay:
    """The schedule of a ``training`` config: ``steps`` in all, the last ``lr_decay_steps`` decaying."""
    steps = int(cfg["steps"])
    decay = min(int(cfg["lr_decay_steps"]), steps)
    return ConstantThenLinearDecay(cfg["learning_rate"], steps - decay, decay)
