"""The metrics table of a task: ``results/{task}/metrics.csv`` (one row per scored subject of a
split, then the mean and the population std) and ``metrics.json`` (the same with definitions, the
summary per method and metric, the paired difference model - baseline per metric with a seeded
bootstrap 95% interval over subjects (:mod:`medcyclegan.evaluation.statistics`), and whether the
model beats each baseline on MAE, by the means and by that interval). The same table scores the
test split (``metrics.*``) and the validation split (``validation_metrics.*``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medcyclegan.evaluation.statistics import paired_difference
from medcyclegan.io import atomic as io

log = logging.getLogger("medcyclegan.evaluation")

METHODS = ("model", "mean_ct", "intensity_map", "intensity_map_unpaired")
METRICS = ("mae_hu", "psnr_db", "ssim")
BASELINES = METHODS[1:]

DEFINITIONS = {
    "mae_hu": "mean |real - synthetic| in HU over the evaluation mask, unclipped",
    "psnr_db": "10 log10(4024^2 / MSE) over the mask, both volumes clipped to [-1024, 3000] HU",
    "ssim": "scikit-image SSIM (7x7x7 uniform window, data range 4024) of both volumes clipped to "
    "[-1024, 3000], outside the mask set to -1024; map averaged over the mask (3-voxel border excluded)",
    "mask": "real CT head/body mask restricted to the synthesised slab (kept slices, 256x256 window); "
    "SynthRAD2023 volumes: see mask_whole",
    "mask_whole": "SynthRAD2023 volumes: the whole given mask.nii.gz (every slice holding mask is "
    "translated); fov_coverage is then the share of the mask inside the translated slices' windows",
    "std": "population standard deviation over subjects (ddof=0)",
    "split": "the subject split scored: test (metrics.json) or validation (validation_metrics.json)",
    "model_minus_baseline": "per baseline and metric: mean over subjects of the paired difference "
    "model - baseline (subjects with both scores; negative MAE / positive PSNR, SSIM favour the model), "
    "ci95 its percentile bootstrap 95% interval: subjects resampled with replacement bootstrap_resamples "
    "times (numpy default_rng(bootstrap_seed)), 2.5 and 97.5 percentiles of the resampled means; "
    "null with a reason for fewer than 2 subjects",
    "model_beats_baseline_mae": "model mean MAE < baseline mean MAE",
    "model_beats_baseline_mae_ci": "upper end of the ci95 of model - baseline MAE < 0 (null without an interval)",
    "model_to_baseline_mae_ratio": "model mean MAE / baseline mean MAE (of the means over subjects)",
    "methods": {
        "model": "synthetic CT of the trained generator",
        "mean_ct": "baseline (a): mean head HU of the CT training slices inside the input's head",
        "intensity_map": "baseline (b): piecewise-linear input intensity -> HU map fitted on the training "
        "subjects' paired real CT (median HU per equal-count intensity bin)",
        "intensity_map_unpaired": "baseline (b'): input intensity quantiles -> CT HU quantiles of the "
        "training data (histogram matching, no pairs needed)",
    },
}


def metrics_table(
    eval_jsons,
    out_csv,
    out_json,
    *,
    task: str,
    model_manifest: dict | None = None,
    split: str = "test",
    bootstrap_resamples: int = 10000,
    bootstrap_seed: int = 0,
) -> dict:
    """Per-subject rows and mean +- std (population std, ddof=0) per method and metric, and the
    paired model - baseline differences with their bootstrap intervals over the ``split``'s subjects."""
    rows, rejected = subject_rows(eval_jsons)
    table = pd.DataFrame(rows)
    summary = summarise(table)
    _write_csv(table, out_csv)
    model_mae = summary["model"]["mae_hu"]["mean"]
    differences = paired_differences(table, n_resamples=bootstrap_resamples, seed=bootstrap_seed)
    result = {
        "task": task,
        "split": split,
        "model_step": (model_manifest or {}).get("step"),
        "n_subjects": len(table),
        "definitions": DEFINITIONS,
        "bootstrap": {"resamples": int(bootstrap_resamples), "seed": int(bootstrap_seed), "level": 0.95},
        "summary": summary,
        "model_beats_baseline_mae": _model_beats_baselines(summary),
        "model_beats_baseline_mae_ci": _model_beats_baselines_ci(differences),
        "model_to_baseline_mae_ratio": _mae_ratios(summary),
        "model_minus_baseline": differences,
        "subjects": rows,
        "rejected": rejected,
    }
    io.write_json(out_json, result)
    if model_mae is not None:
        log.info(
            "%s: MAE model %.1f, mean_ct %.1f, intensity_map %.1f HU over %d subjects",
            task,
            model_mae,
            summary["mean_ct"]["mae_hu"]["mean"],
            summary["intensity_map"]["mae_hu"]["mean"],
            len(table),
        )
    return result


def subject_rows(eval_jsons) -> tuple[list[dict], list[str]]:
    """One flat row per scored subject (sorted by file name) and the volumes that were rejected."""
    rows, rejected = [], []
    for p in sorted(eval_jsons):
        r = json.loads(Path(p).read_text())
        if r.get("status") == "rejected":
            rejected.append(r["volume"])
            continue
        row = {"volume": r["volume"], "n_voxels": r["n_voxels"], "fov_coverage": r["fov_coverage"]}
        for m in METHODS:
            for k in METRICS:
                row[f"{m}_{k}"] = r["scores"].get(m, {}).get(k, float("nan"))
        rows.append(row)
    return rows, rejected


def summarise(table: pd.DataFrame) -> dict:
    """``{method: {metric: {"mean", "std"}}}`` over subjects (None where undefined, e.g. no subject)."""
    summary = {}
    for m in METHODS:
        summary[m] = {}
        for k in METRICS:
            v = table[f"{m}_{k}"].astype(float) if len(table) else pd.Series(dtype=float)
            summary[m][k] = {"mean": _num(v.mean()), "std": _num(v.std(ddof=0))}
    return summary


def paired_differences(table: pd.DataFrame, *, n_resamples: int, seed: int) -> dict:
    """``{baseline: {metric: {"mean", "ci95", "n_subjects"}}}`` of model - baseline over subjects."""
    out = {}
    for b in BASELINES:
        out[b] = {}
        for k in METRICS:
            model = table[f"model_{k}"] if len(table) else []
            base = table[f"{b}_{k}"] if len(table) else []
            out[b][k] = paired_difference(model, base, n_resamples=n_resamples, seed=seed)
    return out


def _write_csv(table: pd.DataFrame, out_csv) -> None:
    """The subject rows followed by a ``mean`` and a ``std`` row (only the header without subjects)."""
    if len(table):
        stats = pd.DataFrame(
            [
                {"volume": "mean", **table.drop(columns="volume").mean().to_dict()},
                {"volume": "std", **table.drop(columns="volume").std(ddof=0).to_dict()},
            ]
        )
        io.write_csv(out_csv, pd.concat([table, stats], ignore_index=True))
    else:
        io.write_csv(out_csv, pd.DataFrame(columns=["volume"]))


def _model_beats_baselines(summary: dict) -> dict | None:
    """``{baseline: model mean MAE < baseline mean MAE}``; None when the model has no MAE."""
    model_mae = summary["model"]["mae_hu"]["mean"]
    if model_mae is None:
        return None
    return {
        b: bool(model_mae < summary[b]["mae_hu"]["mean"])
        for b in METHODS[1:]
        if summary[b]["mae_hu"]["mean"] is not None
    }


def _model_beats_baselines_ci(differences: dict) -> dict | None:
    """``{baseline: upper end of the MAE difference's interval < 0}``: None for a baseline without
    an interval (fewer than 2 paired subjects), left out without any paired subject; None when no
    subject has both."""
    out = {}
    for b, per_metric in differences.items():
        mae = per_metric["mae_hu"]
        if mae["n_subjects"]:
            out[b] = None if mae["ci95"] is None else bool(mae["ci95"][1] < 0)
    return out or None


def _mae_ratios(summary: dict) -> dict | None:
    """``{baseline: model mean MAE / baseline mean MAE}`` of the baselines with a (nonzero) MAE;
    None when the model has no MAE."""
    model_mae = summary["model"]["mae_hu"]["mean"]
    if model_mae is None:
        return None
    return {b: float(model_mae / summary[b]["mae_hu"]["mean"]) for b in BASELINES if summary[b]["mae_hu"]["mean"]}


def _num(v):
    v = float(v)
    return v if np.isfinite(v) else None
