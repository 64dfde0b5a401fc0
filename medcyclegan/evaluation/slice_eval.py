"""Synthesis quality on paired ground truth: mean absolute error in HU inside the head mask.

For every test volume of the source modality that has a ground-truth file
(``ground_truth/{modality}/{volume}.npz`` with ``hu`` [n, H, W], ``mask`` [n, H, W] and
``slice`` [n], in the frame of the TFRecord slices), the exported source->CT generator
translates the volume's test slices, the output is mapped to HU, and the MAE inside the mask
is compared with a baseline that predicts one value everywhere in the mask: the mean HU of the
CT *training* slices inside the head (pixels above the background value -1).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("medcyclegan.slice_eval")

#: a CT pixel is "inside the head" when its [-1, 1] value exceeds the background -1 by this much
HEAD_EPS = 1e-3


def to_physical(image, lo: float, hi: float) -> np.ndarray:
    """[-1, 1] -> physical units (HU for CT): ``lo + (image + 1) / 2 * (hi - lo)``."""
    return lo + (np.asarray(image, np.float64) + 1.0) / 2.0 * (hi - lo)


def head_mean_hu(ct_tfrecord, eps: float = HEAD_EPS) -> dict:
    """Mean HU of the CT slices' head pixels (``image > -1 + eps``), streamed; plus the counts."""
    from medcyclegan.io.tfrecords import read_dataset

    total, count, n_slices = 0.0, 0, 0
    for e in read_dataset(ct_tfrecord).as_numpy_iterator():
        img = e["image"][..., 0]
        sel = img > -1.0 + eps
        hu = to_physical(img[sel], float(e["value_lo"]), float(e["value_hi"]))
        total += float(hu.sum())
        count += int(sel.sum())
        n_slices += 1
    if count == 0:
        raise ValueError(f"no head pixels in {ct_tfrecord}")
    return {"mean_hu": total / count, "n_pixels": count, "n_slices": n_slices}


def mae_in_mask(pred_hu, true_hu, mask) -> tuple[float, int]:
    """(mean |pred - true| over mask pixels, number of pixels); NaN when the mask is empty."""
    mask = np.asarray(mask, bool)
    n = int(mask.sum())
    if n == 0:
        return float("nan"), 0
    diff = np.abs(np.asarray(pred_hu, np.float64) - np.asarray(true_hu, np.float64))[mask]
    return float(diff.mean()), n


def read_volume_slices(tfrecord, volumes) -> dict:
    """``{volume: {slice: (image [H, W] float32, value_lo, value_hi)}}`` for the given volumes (streamed)."""
    from medcyclegan.io.tfrecords import read_dataset

    wanted = set(volumes)
    out: dict = {v: {} for v in wanted}
    for e in read_dataset(tfrecord).as_numpy_iterator():
        vol = e["volume"].decode()
        if vol in wanted:
            out[vol][int(e["slice"])] = (e["image"][..., 0], float(e["value_lo"]), float(e["value_hi"]))
    return out


def evaluate(generator, ct_value_range, src_test, ct_train, ground_truth_npz, batch_size: int = 8) -> dict:
    """Evaluate ``generator`` (``f([B, H, W, 1] in [-1, 1]) -> [B, H, W, 1]``) against the ground truth.

    Returns a JSON-ready dict with the pooled MAE (over all mask pixels of all volumes), the
    baseline MAE, and per-volume values.
    """
    lo, hi = ct_value_range
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
    base = head_mean_hu(ct_train)
    result["baseline_value_hu"] = base["mean_hu"]
    slices = read_volume_slices(src_test, gt_files)
    abs_model, abs_base, n_all, n_slices_all = 0.0, 0.0, 0, 0
    for vol in sorted(gt_files):
        with np.load(gt_files[vol]) as z:
            hu, mask, idx = z["hu"], z["mask"].astype(bool), z["slice"].astype(int)
        have = [k for k, s in enumerate(idx) if s in slices[vol]]
        missing = len(idx) - len(have)
        if not have:
            log.warning("%s: none of the %d ground-truth slices is in %s", vol, len(idx), src_test)
            continue
        x = np.stack([slices[vol][int(idx[k])][0] for k in have])[..., None]
        pred = np.asarray(generator(x, batch_size=batch_size) if _accepts_batch(generator) else generator(x))[..., 0]
        pred_hu = to_physical(pred, lo, hi)
        true_hu, m = hu[have], mask[have]
        mae, n = mae_in_mask(pred_hu, true_hu, m)
        bmae, _ = mae_in_mask(np.full_like(true_hu, base["mean_hu"], dtype=np.float64), true_hu, m)
        if n:
            abs_model += mae * n
            abs_base += bmae * n
            n_all += n
        n_slices_all += len(have)
        per_slice = []
        for k in range(len(have)):
            sm, _ = mae_in_mask(pred_hu[k], true_hu[k], m[k])
            sb, sn = mae_in_mask(np.full(true_hu[k].shape, base["mean_hu"]), true_hu[k], m[k])
            per_slice.append([int(idx[have[k]]), sn, round(sm, 1) if sn else None, round(sb, 1) if sn else None])
        result["volumes"].append(
            {
                "volume": vol,
                "n_slices": len(have),
                "n_slices_missing": missing,
                "n_pixels": n,
                "mae_hu": mae,
                "baseline_mae_hu": bmae,
                "per_slice": {"columns": ["slice", "n_pixels", "mae_hu", "baseline_mae_hu"], "rows": per_slice},
            }
        )
        log.info("%s: %d slices, MAE %.1f HU (baseline %.1f HU)", vol, len(have), mae, bmae)
    result["n_volumes"] = len(result["volumes"])
    result["n_slices"] = n_slices_all
    result["n_pixels"] = n_all
    if n_all:
        result["mae_hu"] = abs_model / n_all
        result["baseline_mae_hu"] = abs_base / n_all
        result["model_beats_baseline"] = bool(result["mae_hu"] < result["baseline_mae_hu"])
    return result


def _accepts_batch(fn) -> bool:
    import inspect

    try:
        return "batch_size" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def run_slice_eval(model_dir, src_test, ct_train, ground_truth_npz, out_json) -> dict:
    """Load the exported source->CT generator from ``model_dir`` and write :func:`evaluate`'s JSON."""
    from medcyclegan.training.loop import generator_path, load_generator, load_manifest

    manifest = load_manifest(model_dir)
    gen = load_generator(generator_path(model_dir, "to_ct"))
    result = evaluate(gen, manifest["ct_value_range"], src_test, ct_train, list(ground_truth_npz))
    result = {"task": manifest["task"], "model_step": manifest["step"], **result}
    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
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
