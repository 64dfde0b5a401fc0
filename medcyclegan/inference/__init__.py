"""Using a trained model: the exported SavedModels, the TensorFlow runtime set-up, whole-volume
synthesis on the input's grid, and ``predict`` for a user's own file.

May import :mod:`~medcyclegan.preprocessing`, :mod:`~medcyclegan.ingest`, :mod:`~medcyclegan.io`
and :mod:`~medcyclegan.config`.
"""
