"""Training a CycleGAN of one task: per-task settings, the tf.data input, the trainer,
checkpoints and resume, the run loop and its metrics.

May import :mod:`~medcyclegan.gan`, :mod:`~medcyclegan.inference` (to export),
:mod:`~medcyclegan.io` and :mod:`~medcyclegan.config`.
"""
