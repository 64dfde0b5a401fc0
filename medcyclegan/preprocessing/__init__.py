"""Preprocessing of a canonical volume: common geometry, head mask, useful slices, 256x256
window, intensity scaling, the subject-level split and the QC tables.

May import :mod:`~medcyclegan.config`, :mod:`~medcyclegan.io` and :mod:`~medcyclegan.ingest`.
"""
