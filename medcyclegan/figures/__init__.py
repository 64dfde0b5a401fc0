"""Pictures for people: example grids, evaluation panels, QC previews and training curves.

May import every stage below it; no stage imports it except :mod:`~medcyclegan.workflow`.
"""
