"""Volume evaluation against a paired real CT, per subject, plus the table and the figure.

Everything is scored on the grid of the ORIGINAL input file (where the synthetic CT is written and
where the paired CT lives: the demo's kept ground truth, SynthRAD2023's ``ct.nii.gz``).

Evaluation mask = the real CT's head/body mask (SynthRAD's ``mask.nii.gz`` when given, else the
workflow's CT head mask computed on the real CT) **restricted to the synthesised field of view**:
the axial slab the useful-slice filter kept (and the 256x256 window) of the input. The model is
trained on the cranial range CQ500 covers, so it is not asked for the neck; the same mask is used
for the model and both baselines, and ``fov_coverage`` reports how much of the head mask that is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from medcyclegan.evaluation import baselines, metrics
from medcyclegan.inference import synthesis
from medcyclegan.io import atomic as io
from medcyclegan.preprocessing.masking import MaskParams, head_mask
from medcyclegan.preprocessing.slicing import extract_window, place_window

log = logging.getLogger("medcyclegan.evaluation")

METHODS = ("model", "mean_ct", "intensity_map", "intensity_map_unpaired")
METRICS = ("mae_hu", "psnr_db", "ssim")


def _load_npz(path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)
    )


def _on_grid(path, ref: sitk.Image, default: float, interpolator=sitk.sitkLinear) -> sitk.Image:
    """Read a 3D image and put it on ``ref``'s grid (unchanged when it already is)."""
    img = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
    if _same_grid(img, ref):
        img.CopyInformation(ref)
        return img
    return synthesis.to_reference(img, ref, default, interpolator)


def field_of_view(sliced: dict, canonical_like: sitk.Image) -> np.ndarray:
    """Canonical [z, y, x] bool: the kept slices' 256x256 windows (what the model was asked for)."""
    nz, ny, nx = canonical_like.GetSize()[::-1]
    fov = np.zeros((nz, ny, nx), bool)
    k = np.asarray(sliced["slice"], np.int64)
    if k.size:
        size = int(sliced["images"].shape[-1])
        fov[k] = place_window(
            np.ones((k.size, size, size), bool), tuple(int(v) for v in sliced["top_left"]), (ny, nx), False
        )
    return fov


def evaluate_volume(
    volume: str,
    sct_path,
    gt_ct_path,
    npz_path,
    canonical_mask_path,
    canonical_path,
    original_path,
    baselines_json,
    out_json,
    out_npz,
    *,
    gt_mask_path=None,
    ct_mask_cfg: dict,
    hu_range=metrics.HU_RANGE,
) -> dict:
    """Score the sCT and the baselines of one volume; write the JSON and the figure panel.

    A volume rejected upstream (bad input, see results/qc/rejected.csv) gets a JSON saying so.
    """
    sliced = _load_npz(npz_path)
    if "rejected" in sliced:
        io.write_json(out_json, {"volume": volume, "status": "rejected"})
        io.write_npz(out_npz, volume=np.array(volume), rejected=np.array(True))
        return {"volume": volume, "status": "rejected"}
    ref = synthesis.reference_grid(original_path)
    sct_img = _on_grid(sct_path, ref, synthesis.CT_BACKGROUND)
    gt_img = _on_grid(gt_ct_path, ref, synthesis.CT_BACKGROUND)
    gt = sitk.GetArrayFromImage(gt_img).astype(np.float32)
    if gt_mask_path:
        head = sitk.GetArrayFromImage(_on_grid(gt_mask_path, ref, 0, sitk.sitkNearestNeighbor)) > 0.5
        mask_source = "given mask"
    else:
        head, _ = head_mask(gt, ref.GetSpacing()[::-1], MaskParams.from_config(ct_mask_cfg))
        mask_source = "head mask of the real CT"
    canonical = sitk.ReadImage(str(canonical_path), sitk.sitkFloat32)
    fov_canonical = field_of_view(sliced, canonical)
    fov = (
        sitk.GetArrayFromImage(
            synthesis.to_reference(
                synthesis.as_image(fov_canonical.astype(np.float32), canonical), ref, 0, sitk.sitkNearestNeighbor
            )
        )
        > 0.5
    )
    mask = head & fov
    # baselines: built on the input's windows, then through exactly the model's path back to the grid
    in_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(canonical_mask_path))) > 0
    size = int(sliced["images"].shape[-1])
    top_left = tuple(int(v) for v in sliced["top_left"])
    head_windows = extract_window(in_mask[sliced["slice"]], top_left, size, False)
    bl = json.loads(Path(baselines_json).read_text())
    preds = {"model": sitk.GetArrayFromImage(sct_img)}
    for name, windows in baselines.baseline_windows(bl, sliced["images"], head_windows).items():
        vol = synthesis.canonical_volume(windows, sliced["slice"], top_left, canonical.GetSize()[::-1], in_mask)
        img = synthesis.to_reference(synthesis.as_image(vol, canonical), ref, synthesis.CT_BACKGROUND)
        preds[name] = np.rint(np.clip(sitk.GetArrayFromImage(img), -1024.0, 3000.0))
    scores = {name: metrics.score(gt, pred, mask, hu_range) for name, pred in preds.items()}
    result = {
        "volume": volume,
        "n_voxels": int(mask.sum()),
        "fov_coverage": float(mask.sum() / max(int(head.sum()), 1)),
        "mask": f"{mask_source}, restricted to the synthesised slab",
        "scores": scores,
    }
    io.write_json(out_json, result)
    _write_panel(out_npz, volume, canonical, sliced, gt_img, sct_img, mask, ref, scores["model"]["mae_hu"])
    log.info("%s: %s", volume, {m: {k: round(v, 3) for k, v in s.items()} for m, s in scores.items()})
    return result


def _write_panel(out_npz, volume, canonical, sliced, gt_img, sct_img, mask, ref, mae_hu) -> None:
    """One axial slice (canonical frame, model window) of input, real CT, sCT and the mask, for the figure."""

    def canon(img, default, interp=sitk.sitkLinear):
        return sitk.GetArrayFromImage(synthesis.to_reference(img, canonical, default, interp))

    gt_c = canon(gt_img, synthesis.CT_BACKGROUND)
    sct_c = canon(sct_img, synthesis.CT_BACKGROUND)
    mask_img = sitk.GetImageFromArray(mask.astype(np.float32))
    mask_img.CopyInformation(ref)
    mask_c = canon(mask_img, 0, sitk.sitkNearestNeighbor) > 0.5
    areas = mask_c.reshape(mask_c.shape[0], -1).sum(1)
    k = int(np.argmax(areas))
    size = int(sliced["images"].shape[-1])
    top_left = tuple(int(v) for v in sliced["top_left"])
    src = sitk.GetArrayFromImage(canonical)[k]
    io.write_npz(
        out_npz,
        volume=np.array(volume),
        slice=np.int64(k),
        input=extract_window(src, top_left, size, 0.0),
        ct=extract_window(gt_c[k], top_left, size, -1024.0),
        sct=extract_window(sct_c[k], top_left, size, -1024.0),
        mask=extract_window(mask_c[k], top_left, size, False),
        mae_hu=np.float64(mae_hu),
    )


def metrics_table(eval_jsons, out_csv, out_json, *, task: str, model_manifest: dict | None = None) -> dict:
    """Per-subject rows and mean +- std (population std, ddof=0) per method and metric."""
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
    table = pd.DataFrame(rows)
    summary = {}
    for m in METHODS:
        summary[m] = {}
        for k in METRICS:
            v = table[f"{m}_{k}"].astype(float) if len(table) else pd.Series(dtype=float)
            summary[m][k] = {"mean": _num(v.mean()), "std": _num(v.std(ddof=0))}
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
    model_mae = summary["model"]["mae_hu"]["mean"]
    beats = None
    if model_mae is not None:
        beats = {
            b: bool(model_mae < summary[b]["mae_hu"]["mean"])
            for b in METHODS[1:]
            if summary[b]["mae_hu"]["mean"] is not None
        }
    result = {
        "task": task,
        "model_step": (model_manifest or {}).get("step"),
        "n_subjects": len(table),
        "definitions": {
            "mae_hu": "mean |real - synthetic| in HU over the evaluation mask, unclipped",
            "psnr_db": "10 log10(4024^2 / MSE) over the mask, both volumes clipped to [-1024, 3000] HU",
            "ssim": "scikit-image SSIM (7x7x7 uniform window, data range 4024) of both volumes clipped to "
            "[-1024, 3000], outside the mask set to -1024; map averaged over the mask (3-voxel border excluded)",
            "mask": "real CT head/body mask restricted to the synthesised slab (kept slices, 256x256 window)",
            "std": "population standard deviation over subjects (ddof=0)",
            "methods": {
                "model": "synthetic CT of the trained generator",
                "mean_ct": "baseline (a): mean head HU of the CT training slices inside the input's head",
                "intensity_map": "baseline (b): piecewise-linear input intensity -> HU map fitted on the training "
                "subjects' paired real CT (median HU per equal-count intensity bin)",
                "intensity_map_unpaired": "baseline (b'): input intensity quantiles -> CT HU quantiles of the "
                "training data (histogram matching, no pairs needed)",
            },
        },
        "summary": summary,
        "model_beats_baseline_mae": beats,
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


def _num(v):
    v = float(v)
    return v if np.isfinite(v) else None


def evaluation_figure(
    panel_npzs, out_png, *, task: str, hu_window=(-200.0, 1500.0), max_subjects: int = 4, dpi: int = 100
) -> None:
    """Rows = test subjects: input, real CT, synthetic CT, |difference| in the mask (MAE in the title).

    Rows are labelled ``test subject 1..n``: no subject id reaches the picture.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in map(_load_npz, sorted(panel_npzs)) if "rejected" not in p][:max_subjects]
    n = max(len(panels), 1)
    fig, axes = plt.subplots(n, 4, figsize=(12, 3.1 * n), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, p in enumerate(panels):
        src = p["input"]
        lo, hi = np.percentile(src, [1, 99.5]) if np.ptp(src) > 0 else (0, 1)
        diff = np.where(p["mask"], np.abs(p["sct"] - p["ct"]), np.nan)
        axes[i, 0].imshow(src, cmap="gray", vmin=lo, vmax=hi)
        axes[i, 0].set_title(f"test subject {i + 1}: input", fontsize=10)
        axes[i, 1].imshow(p["ct"], cmap="gray", vmin=hu_window[0], vmax=hu_window[1])
        axes[i, 1].set_title("real CT", fontsize=10)
        axes[i, 2].imshow(p["sct"], cmap="gray", vmin=hu_window[0], vmax=hu_window[1])
        axes[i, 2].set_title("synthetic CT", fontsize=10)
        im = axes[i, 3].imshow(diff, cmap="magma", vmin=0, vmax=500)
        axes[i, 3].set_title(f"|sCT - CT|, volume MAE {float(p['mae_hu']):.0f} HU", fontsize=10)
        fig.colorbar(im, ax=axes[i, 3], fraction=0.046, pad=0.02, label="HU")
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no test subject with a paired CT", ha="center", va="center")
    fig.suptitle(
        f"{task}: one axial slice per test subject (CT window [{hu_window[0]:g}, {hu_window[1]:g}] HU)", fontsize=11
    )
    fig.tight_layout()
    with io.atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
