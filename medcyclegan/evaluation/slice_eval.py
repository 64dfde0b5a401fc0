"""Synthesis quality on paired ground truth: mean absolute error in HU inside the head mask.

For every test volume of the source modality that has a ground-truth file
(``ground_truth/{modality}/{volume}.npz`` with ``hu`` [n, H, W], ``mask`` [n, H, W] and
``slice`` [n], in the frame of the TFRecord slices), the exported source->CT generator
translates the volume's test slices, the output is mapped to HU, and the MAE inside the mask
is compared with a baseline that predicts one value everywhere in the mask: the mean HU of the
CT *training* slices inside the head (:data:`~medcyclegan.evaluation.baselines.HEAD_EPS`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from medcyclegan.evaluation.baselines import head_mean_hu
from medcyclegan.evaluation.metrics import mae
from medcyclegan.io import atomic as io
from medcyclegan.preprocessing.intensity import to_physical

log = logging.getLogger("medcyclegan.slice_eval")


def ct_head_mean_hu(ct_tfrecord) -> dict:
    """Mean HU of the CT slices' head pixels, streamed from the TFRecord; plus the counts."""
    from medcyclegan.io.tfrecords import read_dataset

    items = (
        (e["image"][..., 0], float(e["value_lo"]), float(e["value_hi"]))
        for e in read_dataset(ct_tfrecord).as_numpy_iterator()
    )
    mean_hu, n_pixels, n_slices = head_mean_hu(items, source=str(ct_tfrecord), dtype=np.float64)
    return {"mean_hu": mean_hu, "n_pixels": n_pixels, "n_slices": n_slices}


def read_volume_slices(tfrecord, volumes, context_slices: int = 0) -> dict:
    """``{volume: {slice: (image [H, W] float32, value_lo, value_hi)}}`` for the given volumes
    (streamed); with 2.5D context (k = ``context_slices`` > 0) ``image`` is the generator's input
    [H, W, 2k + 1]: the slice and its k neighbours on each side."""
    from medcyclegan.io.tfrecords import read_dataset

    wanted = set(volumes)
    out: dict = {v: {} for v in wanted}
    for e in read_dataset(tfrecord, context_slices=context_slices).as_numpy_iterator():
        vol = e["volume"].decode()
        if vol in wanted:
            image = e["image"] if context_slices else e["image"][..., 0]
            out[vol][int(e["slice"])] = (image, float(e["value_lo"]), float(e["value_hi"]))
    return out


def evaluate(
    generator, ct_value_range, src_test, ct_train, ground_truth_npz, batch_size: int = 8, context_slices: int = 0
) -> dict:
    """Evaluate ``generator`` (``f([B, H, W, 2k + 1] in [-1, 1]) -> [B, H, W, 1]``, k =
    ``context_slices``) against the ground truth.

    Returns a JSON-ready dict with the pooled MAE (over all mask pixels of all volumes), the
    baseline MAE, and per-volume values.
    """
    gt_files = {Path(p).name[: -len(".npz")]: Path(p) for p in ground_truth_npz}
    result = {
        "metric": "mean absolute error in HU inside the head mask of the test slices",
        "baseline": "predict the mean head HU of the CT training slices everywhere in the mask",
        "n_volumes": 0,
        "n_slices": 0,
        "n_pixels": 0,
        "mae_hu": None,
        "baseline_mae_hu": None,
        "baseline_value_hu": None,
        "model_beats_baseline": None,
        "volumes": [],
    }
    if not gt_files:
        result["note"] = "no ground truth for this task's test volumes (only the demo dataset provides it)"
        return result
    baseline_hu = ct_head_mean_hu(ct_train)["mean_hu"]
    result["baseline_value_hu"] = baseline_hu
    slices = read_volume_slices(src_test, gt_files, context_slices)

    def predict(x):
        return np.asarray(generator(x, batch_size=batch_size) if _accepts_batch(generator) else generator(x))[..., 0]

    for vol in sorted(gt_files):
        scores = _score_volume(vol, gt_files[vol], slices[vol], predict, ct_value_range, baseline_hu, src_test)
        if scores is not None:
            result["volumes"].append(scores)
    _pool(result)
    return result


def _score_volume(vol: str, gt_path, stored: dict, predict, ct_value_range, baseline_hu: float, src_test):
    """Model and baseline MAE of the volume's ground-truth slices that are among its ``stored``
    test slices (``{slice: (image, lo, hi)}``); None when there is none."""
    lo, hi = ct_value_range
    with np.load(gt_path) as z:
        hu, mask, idx = z["hu"], z["mask"].astype(bool), z["slice"].astype(int)
    have = [k for k, s in enumerate(idx) if s in stored]
    if not have:
        log.warning("%s: none of the %d ground-truth slices is in %s", vol, len(idx), src_test)
        return None
    x = np.stack([stored[int(idx[k])][0] for k in have])
    x = x[..., None] if x.ndim == 3 else x  # [n, H, W, 2k + 1]
    pred_hu = to_physical(predict(x), lo, hi, np.float64)
    true_hu, m = hu[have], mask[have]
    n = int(m.sum())
    model_mae = mae(true_hu, pred_hu, m)
    base_mae = mae(true_hu, np.full_like(true_hu, baseline_hu, dtype=np.float64), m)
    log.info("%s: %d slices, MAE %.1f HU (baseline %.1f HU)", vol, len(have), model_mae, base_mae)
    return {
        "volume": vol,
        "n_slices": len(have),
        "n_slices_missing": len(idx) - len(have),
        "n_pixels": n,
        "mae_hu": model_mae,
        "baseline_mae_hu": base_mae,
        "per_slice": {
            "columns": ["slice", "n_pixels", "mae_hu", "baseline_mae_hu"],
            "rows": _per_slice_rows(idx[have], pred_hu, true_hu, m, baseline_hu),
        },
    }


def _per_slice_rows(slice_idx, pred_hu, true_hu, mask, baseline_hu: float) -> list:
    """``[slice, n_pixels, model MAE, baseline MAE]`` per slice (MAEs rounded, None without pixels)."""
    rows = []
    for k in range(len(slice_idx)):
        n = int(mask[k].sum())
        model_mae = mae(true_hu[k], pred_hu[k], mask[k])
        base_mae = mae(true_hu[k], np.full(true_hu[k].shape, baseline_hu), mask[k])
        rows.append([int(slice_idx[k]), n, round(model_mae, 1) if n else None, round(base_mae, 1) if n else None])
    return rows


def _pool(result: dict) -> None:
    """Totals over the scored volumes; the MAEs weigh every mask pixel of every volume equally."""
    abs_model, abs_base, n_all = 0.0, 0.0, 0
    for v in result["volumes"]:
        if v["n_pixels"]:
            abs_model += v["mae_hu"] * v["n_pixels"]
            abs_base += v["baseline_mae_hu"] * v["n_pixels"]
            n_all += v["n_pixels"]
    result["n_volumes"] = len(result["volumes"])
    result["n_slices"] = sum(v["n_slices"] for v in result["volumes"])
    result["n_pixels"] = n_all
    if n_all:
        result["mae_hu"] = abs_model / n_all
        result["baseline_mae_hu"] = abs_base / n_all
        result["model_beats_baseline"] = bool(result["mae_hu"] < result["baseline_mae_hu"])


def _accepts_batch(fn) -> bool:
    import inspect

    try:
        return "batch_size" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def run_slice_eval(model_dir, src_test, ct_train, ground_truth_npz, out_json) -> dict:
    """Load the exported source->CT generator from ``model_dir`` and write :func:`evaluate`'s JSON."""
    from medcyclegan.inference.runtime import generator_path, load_generator, load_manifest

    manifest = load_manifest(model_dir)
    gen = load_generator(generator_path(model_dir, "to_ct"))
    result = evaluate(
        gen,
        manifest["ct_value_range"],
        src_test,
        ct_train,
        list(ground_truth_npz),
        context_slices=manifest["context_slices"],
    )
    result = {"task": manifest["task"], "model_step": manifest["step"], **result}
    io.write_text(out_json, json.dumps(result, indent=2))
    if result["mae_hu"] is not None:
        log.info(
            "%s: MAE %.1f HU vs baseline %.1f HU (mean head CT %.1f HU) over %d slices of %d volumes",
            manifest["task"],
            result["mae_hu"],
            result["baseline_mae_hu"],
            result["baseline_value_hu"],
            result["n_slices"],
            result["n_volumes"],
        )
    return result
