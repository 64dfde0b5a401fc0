"""Volume evaluation against a paired real CT, one subject at a time (the table over subjects is
:mod:`medcyclegan.evaluation.table`, the figure :mod:`medcyclegan.figures.evaluation`).

Everything is scored on the grid of the ORIGINAL input file (where the synthetic CT is written and
where the paired CT lives: the demo's kept ground truth, SynthRAD2023's ``ct.nii.gz``).

Evaluation mask = the real CT's head/body mask (SynthRAD's ``mask.nii.gz`` when given, else the
workflow's CT head mask computed on the real CT) **restricted to the synthesised field of view**:
the axial slab the useful-slice filter kept (and the 256x256 window) of the input. The model is
trained on the cranial range CQ500 covers, so it is not asked for the neck; the same mask is used
for the model and both baselines, and ``fov_coverage`` reports how much of the head mask that is.

SynthRAD2023 volumes (``whole_mask``) are scored as the challenge scores them: over the **whole**
given ``mask.nii.gz``, no slab restriction. Their sCT covers every slice holding the mask or the
input's head (:mod:`medcyclegan.inference.whole_mask`), the baselines are built on the same slices
(each still inside the input's head mask, -1024 HU elsewhere, as on the demo), and ``fov_coverage`` is the share of the mask inside the translated slices' 256x256 windows (1.0
unless the head is wider than the window).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medcyclegan.evaluation import baselines, metrics
from medcyclegan.inference import synthesis
from medcyclegan.io import atomic as io
from medcyclegan.io.slices import read_stack
from medcyclegan.preprocessing.masking import MaskParams, head_mask
from medcyclegan.preprocessing.slicing import extract_window, place_window

log = logging.getLogger("medcyclegan.evaluation")


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
    whole_mask: bool = False,
) -> dict:
    """Score the sCT and the baselines of one volume; write the JSON and the figure panel.

    ``whole_mask``: score over the whole real-CT mask (SynthRAD), the baselines on the slices the
    whole-mask synthesis translated; else over the mask restricted to the synthesised slab.
    A volume rejected upstream (bad input, see results/qc/rejected.csv) gets a JSON saying so.
    """
    sliced, rejection = read_stack(npz_path)
    if rejection is not None:
        io.write_json(out_json, {"volume": volume, "status": "rejected"})
        io.write_npz(out_npz, volume=np.array(volume), rejected=np.array(True))
        return {"volume": volume, "status": "rejected"}
    ref = synthesis.reference_grid(original_path)
    sct_img = _on_grid(sct_path, ref, synthesis.CT_BACKGROUND)
    gt_img = _on_grid(gt_ct_path, ref, synthesis.CT_BACKGROUND)
    gt = sitk.GetArrayFromImage(gt_img).astype(np.float32)
    canonical = sitk.ReadImage(str(canonical_path), sitk.sitkFloat32)
    head, mask_source = _real_head_mask(gt, ref, gt_mask_path, ct_mask_cfg)
    in_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(canonical_mask_path))) > 0
    if whole_mask:  # the model's slices; the baselines keep their rule: inside the input's head
        sliced = _whole_mask_slices(sliced, canonical, in_mask, gt_mask_path)
    fov = _field_of_view_on(ref, sliced, canonical)
    mask = head if whole_mask else head & fov
    preds = {"model": sitk.GetArrayFromImage(sct_img)}
    preds.update(_baseline_predictions(baselines_json, sliced, in_mask, canonical, ref))
    scores = {name: metrics.score(gt, pred, mask, hu_range) for name, pred in preds.items()}
    result = {
        "volume": volume,
        "n_voxels": int(mask.sum()),
        "fov_coverage": float((head & fov).sum() / max(int(head.sum()), 1)),
        "mask": f"{mask_source}, whole" if whole_mask else f"{mask_source}, restricted to the synthesised slab",
        "whole_mask": bool(whole_mask),
        "scores": scores,
    }
    io.write_json(out_json, result)
    _write_panel(out_npz, volume, canonical, sliced, gt_img, sct_img, mask, ref, scores["model"]["mae_hu"])
    log.info("%s: %s", volume, {m: {k: round(v, 3) for k, v in s.items()} for m, s in scores.items()})
    return result


def _real_head_mask(gt: np.ndarray, ref: sitk.Image, gt_mask_path, ct_mask_cfg: dict) -> tuple[np.ndarray, str]:
    """The real CT's head/body mask on ``ref``'s grid (the given one, else computed) and its origin."""
    if gt_mask_path:
        head = sitk.GetArrayFromImage(_on_grid(gt_mask_path, ref, 0, sitk.sitkNearestNeighbor)) > 0.5
        return head, "given mask"
    head, _ = head_mask(gt, ref.GetSpacing()[::-1], MaskParams.from_config(ct_mask_cfg))
    return head, "head mask of the real CT"


def _field_of_view_on(ref: sitk.Image, sliced: dict, canonical: sitk.Image) -> np.ndarray:
    """:func:`field_of_view` brought from the canonical grid onto ``ref``'s."""
    fov_canonical = field_of_view(sliced, canonical)
    fov = synthesis.to_reference(
        synthesis.as_image(fov_canonical.astype(np.float32), canonical), ref, 0, sitk.sitkNearestNeighbor
    )
    return sitk.GetArrayFromImage(fov) > 0.5


def _whole_mask_slices(sliced: dict, canonical, in_mask: np.ndarray, gt_mask_path) -> dict:
    """The arrays of the slices the whole-mask synthesis translated, computed as it computes them."""
    from medcyclegan.inference.whole_mask import given_mask_on, whole_mask_slices

    given = given_mask_on(gt_mask_path, canonical) if gt_mask_path else None
    return whole_mask_slices(sliced, canonical, in_mask, given).arrays


def _baseline_predictions(baselines_json, sliced: dict, in_mask: np.ndarray, canonical, ref) -> dict:
    """Each baseline's HU volume on ``ref``'s grid: built on the input's windows (``in_mask``: the
    input's canonical head), then through exactly the model's path back to the grid (window
    placement, resampling, rounding)."""
    size = int(sliced["images"].shape[-1])
    top_left = tuple(int(v) for v in sliced["top_left"])
    head_windows = extract_window(in_mask[sliced["slice"]], top_left, size, False)
    bl = json.loads(Path(baselines_json).read_text())
    preds = {}
    for name, windows in baselines.baseline_windows(bl, sliced["images"], head_windows).items():
        vol = synthesis.canonical_volume(windows, sliced["slice"], top_left, canonical.GetSize()[::-1], in_mask)
        img = synthesis.to_reference(synthesis.as_image(vol, canonical), ref, synthesis.CT_BACKGROUND)
        preds[name] = np.rint(np.clip(sitk.GetArrayFromImage(img), -1024.0, 3000.0))
    return preds


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
