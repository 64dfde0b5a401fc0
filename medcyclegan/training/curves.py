"""Training curves for the report, read from the run's metrics (:mod:`medcyclegan.training.metrics`)."""

from __future__ import annotations

import math

from medcyclegan.training.metrics import read_records


def read_training_curves(path) -> dict[str, list[tuple[int, float]]]:
    """``{series: [(step, value), ...]}`` for every loss and the learning rate (``lr``)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in read_records(path):
        step = int(record["step"])
        for name, value in record.get("losses", {}).items():
            series.setdefault(name, []).append((step, float(value)))
        lr = record.get("lr")
        if lr is not None and math.isfinite(lr):
            series.setdefault("lr", []).append((step, float(lr)))
    return series
