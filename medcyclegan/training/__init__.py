"""Training a CycleGAN of one task: the tf.data input (:mod:`.data`), the networks, optimisers and
train step (:mod:`.trainer`), checkpoints and resume (:mod:`.checkpoints`), the run itself
(:mod:`.loop`) and what it records (:mod:`.metrics`, :mod:`.tensorboard`, :mod:`.curves`).

May import :mod:`~medcyclegan.gan`, :mod:`~medcyclegan.inference` (to export),
:mod:`~medcyclegan.io` and :mod:`~medcyclegan.config`.
"""
