"""Per-volume ``.npz`` stacks (slice stacks, ground-truth slices, evaluation panels) and the
check every reader of one needs first: is it a rejection placeholder?"""

from __future__ import annotations

import os

import numpy as np

from medcyclegan.io.placeholders import npz_rejection


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, read once (an open ``NpzFile`` decompresses on every access)."""
    with np.load(path) as f:
        return {key: f[key] for key in f.files}


def read_stack(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str] | None]:
    """``(arrays, rejection)`` of a per-volume ``.npz``: ``rejection`` is None for a real stack,
    else the row its placeholder carries (the arrays then hold no slice, only ``volume`` & co)."""
    arrays = load_npz(path)
    if "rejected" not in arrays:
        return arrays, None
    return arrays, npz_rejection(arrays)
