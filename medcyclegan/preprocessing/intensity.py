"""Intensity mapping to [-1, 1] without losing the physical scale.

Every mapping is linear between ``value_lo`` (-> -1) and ``value_hi`` (-> +1), stored with
each slice, so HU (CT) or scanner units (MR, PET) can be restored exactly inside the window.
"""

from __future__ import annotations

import numpy as np


def ct_window(window_hu) -> tuple[float, float]:
    lo, hi = (float(v) for v in window_hu)
    if not hi > lo:
        raise ValueError(f"CT window must be increasing, got {window_hu}")
    return lo, hi


def percentile_window(values: np.ndarray, percentiles) -> tuple[float, float]:
    """Robust window from percentiles of the in-mask values (nnU-Net style)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no values inside the mask to compute a percentile window from")
    lo, hi = np.percentile(values, percentiles)
    if not hi > lo:
        raise ValueError(f"degenerate intensity window [{lo}, {hi}] (constant image inside the mask?)")
    return float(lo), float(hi)


def to_unit_range(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``[lo, hi]`` -> ``[-1, 1]``, clipped after the affine map: clipping the input instead would let
    a float64 window edge that float32 rounds up map to just above 1."""
    x = np.asarray(x, dtype=np.float32)
    return np.clip(2.0 * (x - lo) / (hi - lo) - 1.0, -1.0, 1.0).astype(np.float32)


def to_physical(y: np.ndarray, lo: float, hi: float, dtype=np.float32) -> np.ndarray:
    """[-1, 1] -> physical units (HU for CT): ``lo + (y + 1) / 2 * (hi - lo)``, computed in ``dtype``
    (float32 for images that are stored; evaluation asks for float64 before it sums many pixels)."""
    return (lo + (np.asarray(y, dtype=dtype) + 1.0) * 0.5 * (hi - lo)).astype(dtype)
