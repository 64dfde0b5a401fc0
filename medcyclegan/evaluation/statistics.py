"""Paired comparison of the model with a baseline over test subjects: the mean difference and a
seeded bootstrap confidence interval (written to ``metrics.json`` by
:mod:`medcyclegan.evaluation.table`)."""

from __future__ import annotations

import numpy as np


def paired_bootstrap_ci(differences, n_resamples: int, seed: int, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of per-subject paired differences.

    Why this one: the subject is the unit that was sampled (voxels and slices of one head are
    strongly correlated, so resampling them would give far too narrow intervals); the model and
    the baseline are scored on the same subjects, so the per-subject difference removes the
    between-subject spread they share; and with a few dozen subjects the distribution of the mean
    difference need not be normal (one hard head shifts it), which the percentile bootstrap does
    not assume. It draws ``n_resamples`` sets of subjects with replacement, each the size of the
    original, takes the mean difference of each, and returns the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` percentiles (numpy's linear interpolation) of those means. ``seed`` feeds
    ``numpy.random.default_rng``, so the same scores always give the same interval.

    Non-finite differences are dropped. Fewer than 2 subjects: None (no spread to resample).
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    if d.size < 2:
        return None
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    means = np.empty(int(n_resamples), np.float64)
    chunk = max(1, 2_000_000 // d.size)  # bounded memory for large cohorts
    for start in range(0, int(n_resamples), chunk):
        stop = min(int(n_resamples), start + chunk)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100.0 * (1.0 - level) / 2.0, 100.0 * (1.0 + level) / 2.0])
    return float(lo), float(hi)


def paired_difference(model, baseline, *, n_resamples: int, seed: int, level: float = 0.95) -> dict:
    """``{"mean", "ci95": [lo, hi] | None, "n_subjects"}`` of ``model - baseline`` over the subjects
    that have both scores (plus ``"reason"`` when there is no interval)."""
    m = np.asarray(model, dtype=np.float64).ravel()
    b = np.asarray(baseline, dtype=np.float64).ravel()
    d = m - b
    d = d[np.isfinite(d)]
    out = {"mean": float(d.mean()) if d.size else None, "ci95": None, "n_subjects": int(d.size)}
    ci = paired_bootstrap_ci(d, n_resamples, seed, level)
    if ci is None:
        out["reason"] = f"{d.size} subject(s) with both scores; a bootstrap interval needs at least 2"
    else:
        out["ci95"] = [ci[0], ci[1]]
    return out
