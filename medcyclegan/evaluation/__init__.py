"""Scoring synthetic CT: image metrics, the two intensity baselines, per-volume scores and the
metrics table.

May import :mod:`~medcyclegan.inference` and every stage below it.
"""
