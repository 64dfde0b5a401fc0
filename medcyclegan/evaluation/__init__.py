"""Scoring synthetic CT: image metrics (:mod:`~medcyclegan.evaluation.metrics`), the two intensity
baselines (:mod:`~medcyclegan.evaluation.baselines`), the slice-level check on the demo's ground
truth (:mod:`~medcyclegan.evaluation.slice_eval`), per-volume scores
(:mod:`~medcyclegan.evaluation.volume`) and the metrics table (:mod:`~medcyclegan.evaluation.table`).

May import :mod:`~medcyclegan.inference` and every stage below it.
"""
