"""Two reference methods scored with the same code as the model, so its numbers mean something.

(a) ``mean_ct``: every voxel of the input's head gets one value, the mean HU of the head
    voxels of the CT *training* slices. Any useful model must beat it.
(b) ``intensity_map``: a piecewise-linear map from the preprocessed input intensity (the
    [-1, 1] value the generator sees, which is already normalised per volume by its in-head
    percentiles) to HU, fitted on the *training* subjects:

    - ``paired`` (used when the training subjects have a paired true CT: the demo's kept ground
      truth, SynthRAD2023): the input range is cut into equal-count bins; each bin's knot is
      (median input value, median true HU) of the head voxels in it; the map interpolates
      linearly between knots (constant beyond the ends). The median is the value that minimises
      the absolute error in a bin, so this is the best per-intensity ("per-tissue") lookup for
      MAE. It sees paired data, which the CycleGAN never does: a stronger baseline than the
      model's own setting, which makes beating it meaningful.
    - ``quantile`` (fallback without pairs, e.g. OASIS-3 MR vs CQ500 CT): histogram matching:
      the q-th quantile of the training inputs' head voxels maps to the q-th quantile of the
      training CTs' head HU. Needs no pairing, so it is fair to an unpaired model; it is
      monotone, so it cannot make T1-dark bone bright: expect it to be weak on MR.

Both maps are fitted and scored: ``intensity_map`` is the paired one when pairs exist (else the
quantile one), ``intensity_map_unpaired`` is always the quantile one. Voxels outside the input's
head mask get -1024 HU for every baseline, like the model's output.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from medcyclegan.io.slices import load_npz, read_stack
from medcyclegan.preprocessing.intensity import to_physical

log = logging.getLogger("medcyclegan.baselines")

#: a [-1, 1] pixel is in the head when above the background -1 by this much
HEAD_EPS = 1e-3


def head_pixels(images: np.ndarray) -> np.ndarray:
    """The values of the pixels of ``images`` ([-1, 1]) that are in the head."""
    return images[images > -1.0 + HEAD_EPS]


def head_mean_hu(stacks: Iterable, *, source: str, dtype=np.float32) -> tuple[float, int, int]:
    """Mean HU of the head pixels of ``(images, value_lo, value_hi)`` items, the number of those
    pixels and of items; ``dtype`` is the precision of the HU conversion (the sum is float64)."""
    total, count, n_items = 0.0, 0, 0
    for images, lo, hi in stacks:
        sel = images > -1.0 + HEAD_EPS
        total += float(to_physical(images[sel], lo, hi, dtype).astype(np.float64).sum())
        count += int(sel.sum())
        n_items += 1
    if count == 0:
        raise ValueError(f"no head pixels in {source}")
    return total / count, count, n_items


def _stacks(npz_paths):
    """The arrays of every slice stack that is not a rejection placeholder, one file at a time."""
    for path in npz_paths:
        arrays, rejection = read_stack(path)
        if rejection is None:
            yield arrays


def _ct_head_mean_hu(ct_npz_paths) -> tuple[float, int]:
    """Baseline (a)'s value: mean HU of the head pixels of CT slice stacks, and their count."""
    items = ((d["images"], float(d["value_lo"]), float(d["value_hi"])) for d in _stacks(ct_npz_paths))
    mean_hu, count, _ = head_mean_hu(items, source="the CT training slices")
    return mean_hu, count


def fit_paired(inputs, hu, n_bins: int = 32) -> dict:
    """Knots of the paired piecewise-linear map from paired head voxels (``inputs`` in [-1, 1], ``hu``)."""
    x = np.asarray(inputs, np.float64).ravel()
    y = np.asarray(hu, np.float64).ravel()
    if x.size < n_bins:
        raise ValueError(f"{x.size} paired voxels are too few for {n_bins} bins")
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    knots_x, knots_y = [], []
    for part in np.array_split(np.arange(xs.size), n_bins):
        knots_x.append(float(np.median(xs[part])))
        knots_y.append(float(np.median(ys[part])))
    kx, ky = _merge_ties(np.array(knots_x), np.array(knots_y))
    return {"kind": "paired", "x": kx.tolist(), "hu": ky.tolist(), "n_voxels": int(x.size)}


def fit_quantile(inputs, ct_hu, n_quantiles: int = 101) -> dict:
    """Knots of the unpaired histogram-matching map (input quantile -> CT HU quantile)."""
    q = np.linspace(0.0, 100.0, n_quantiles)
    kx = np.percentile(np.asarray(inputs, np.float64).ravel(), q)
    ky = np.percentile(np.asarray(ct_hu, np.float64).ravel(), q)
    kx, ky = _merge_ties(kx, ky)
    return {"kind": "quantile", "x": kx.tolist(), "hu": ky.tolist(), "n_voxels": int(np.size(inputs))}


def _merge_ties(kx: np.ndarray, ky: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.interp needs increasing x: knots sharing an x value become one (mean HU)."""
    ux, inv = np.unique(kx, return_inverse=True)
    uy = np.bincount(inv, weights=ky) / np.bincount(inv)
    return ux, uy


def apply_map(mapping: dict, inputs) -> np.ndarray:
    return np.interp(np.asarray(inputs, np.float64), mapping["x"], mapping["hu"]).astype(np.float32)


def fit_baselines(src_npz_paths, ct_npz_paths, ground_truth_npz_paths=(), n_bins: int = 32) -> dict:
    """Both baselines from the training data; paired map when ground truth is given for the inputs."""
    mean_hu, n_ct = _ct_head_mean_hu(ct_npz_paths)
    gt_by_volume = {str(d["volume"]): d for d in map(load_npz, ground_truth_npz_paths)}
    if gt_by_volume:
        xs, ys = _paired_voxels(src_npz_paths, gt_by_volume)
    else:
        xs, ys = [head_pixels(d["images"]) for d in _stacks(src_npz_paths)], []
    if not xs or sum(a.size for a in xs) == 0:
        raise ValueError("no training input voxels to fit the intensity map on")
    x = np.concatenate(xs)
    # the unpaired map uses every training input's head voxels, paired or not
    x_all = np.concatenate([head_pixels(d["images"]) for d in _stacks(src_npz_paths)]) if gt_by_volume else x
    ct_hu = [
        to_physical(head_pixels(d["images"]), float(d["value_lo"]), float(d["value_hi"])) for d in _stacks(ct_npz_paths)
    ]
    unpaired = fit_quantile(x_all, np.concatenate(ct_hu))
    unpaired["n_subjects"] = len(src_npz_paths)
    if gt_by_volume:
        mapping = fit_paired(x, np.concatenate(ys), n_bins)
        mapping["n_subjects"] = len(xs)
    else:
        mapping = dict(unpaired)
    log.info(
        "baselines: mean head CT %.1f HU (%d pixels); intensity map %s on %d subjects, %d knots",
        mean_hu,
        n_ct,
        mapping["kind"],
        mapping["n_subjects"],
        len(mapping["x"]),
    )
    return _baselines_record(mean_hu, n_ct, mapping, unpaired)


def _paired_voxels(src_npz_paths, gt_by_volume: dict) -> tuple[list, list]:
    """(input values, true HU) of the head voxels of every input stack with a ground truth."""
    xs, ys = [], []
    for d in _stacks(src_npz_paths):
        vol = str(d["volume"])
        if vol not in gt_by_volume:
            continue
        gt = gt_by_volume[vol]
        if not np.array_equal(gt["slice"], d["slice"]):
            raise ValueError(f"{vol}: ground-truth slices do not match the input's")
        img = d["images"]
        sel = gt["mask"].astype(bool) & (img > -1.0 + HEAD_EPS)
        xs.append(img[sel])
        ys.append(gt["hu"][sel])
    return xs, ys


def _baselines_record(mean_hu: float, n_ct: int, mapping: dict, unpaired: dict) -> dict:
    """``baselines.json``: the fitted values with a line saying what each baseline is."""
    return {
        "mean_ct": {
            "hu": mean_hu,
            "n_pixels": n_ct,
            "doc": "one value, the mean HU of the CT training slices' head pixels, inside the input's head mask",
        },
        "intensity_map": {
            **mapping,
            "doc": "baseline (b): piecewise-linear input -> HU map, paired fit when "
            "the training subjects have a real CT, else histogram matching",
        },
        "intensity_map_unpaired": {
            **unpaired,
            "doc": "histogram matching of training input and CT quantiles "
            "(needs no pairs: the unpaired model's own setting)",
        },
    }


def baseline_windows(baselines: dict, images: np.ndarray, head_windows: np.ndarray) -> dict[str, np.ndarray]:
    """{name: [n, H, W] HU} for the input's preprocessed windows; -1024 outside the head."""
    head = np.asarray(head_windows, bool)
    out = {}
    out["mean_ct"] = np.where(head, np.float32(baselines["mean_ct"]["hu"]), np.float32(-1024.0)).astype(np.float32)
    for name in ("intensity_map", "intensity_map_unpaired"):
        if name in baselines:
            out[name] = np.where(head, apply_map(baselines[name], images), np.float32(-1024.0)).astype(np.float32)
    return out
