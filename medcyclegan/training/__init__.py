"""Training a CycleGAN of one task: the tf.data input (:mod:`.data`), the networks, optimisers and
train step (:mod:`.trainer`), checkpoints and resume (:mod:`.checkpoints`), the run itself
(:mod:`.loop`) and what it records (:mod:`.metrics`, :mod:`.tensorboard`, :mod:`.curves`); the
devices it runs on (:mod:`.devices`), several replicas (:mod:`.distribute`) and a clean stop on
the signals clusters send (:mod:`.preemption`).

May import :mod:`~medcyclegan.gan`, :mod:`~medcyclegan.inference` (to export),
:mod:`~medcyclegan.io` and :mod:`~medcyclegan.config`.
"""
