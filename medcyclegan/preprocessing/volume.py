"""From a raw image to normalised 256x256 axial slices: canonical grid, then mask, filter, window,
scale, and the head-volume check. The workflow's jobs and ``medcyclegan predict`` call the same
functions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import SimpleITK as sitk

from medcyclegan.errors import BadInput
from medcyclegan.preprocessing import intensity
from medcyclegan.preprocessing.geometry import BACKGROUND, is_canonical, to_canonical, whole_hu
from medcyclegan.preprocessing.slicing import centred_window, extract_window, slice_table

# masking (scipy.ndimage, scikit-image) is imported where used: the ingest job, which only needs
# canonical_image, starts faster without it

UNITS = {"ct": "HU", "mr": "a.u.", "pet": "a.u."}

log = logging.getLogger("medcyclegan")


def canonical_image(img: sitk.Image, modality: str, spacing_mm) -> sitk.Image:
    """A raw image on the canonical grid (LPS, ``spacing_mm``); CT in whole HU (int16)."""
    canonical = to_canonical(img, spacing_mm, default_value=BACKGROUND[modality])
    if modality == "ct":
        canonical = whole_hu(canonical)
    return canonical


@dataclass
class SliceSet:
    """The kept slices of one volume plus what is needed to map them back."""

    volume: str
    subject: str
    modality: str
    images: np.ndarray  # [n, size, size] float32 in [-1, 1]
    slices: np.ndarray  # [n] int64 axial index in the canonical volume
    z_mm: np.ndarray  # [n] float
    top_left: tuple[int, int]
    value_lo: float
    value_hi: float
    spacing: tuple[float, float, float]  # row, col, slice (mm)
    canonical_shape: tuple[int, int, int]  # z, y, x
    canonical_origin: tuple[float, float, float]  # LPS mm of voxel [0, 0, 0]
    table: pd.DataFrame = field(repr=False)
    mask: np.ndarray = field(repr=False)  # full canonical head mask [z, y, x]
    mask_info: dict = field(default_factory=dict)

    def npz_arrays(self) -> dict:
        return {
            "images": self.images,
            "slice": self.slices.astype(np.int64),
            "z_mm": self.z_mm.astype(np.float64),
            "top_left": np.array(self.top_left, dtype=np.int64),
            "value_lo": np.float64(self.value_lo),
            "value_hi": np.float64(self.value_hi),
            "spacing": np.array(self.spacing, dtype=np.float64),
            "canonical_shape": np.array(self.canonical_shape, dtype=np.int64),
            "canonical_origin": np.array(self.canonical_origin, dtype=np.float64),
            "volume": np.array(self.volume),
            "subject": np.array(self.subject),
            "modality": np.array(self.modality),
            "unit": np.array(UNITS[self.modality]),
        }


def intensity_window(modality: str, values_in_mask: np.ndarray, cfg: dict) -> tuple[float, float]:
    if modality == "ct":
        return intensity.ct_window(cfg["ct_window_hu"])
    return intensity.percentile_window(values_in_mask, cfg[f"{modality}_percentiles"])


def preprocess_volume(
    img: sitk.Image, *, modality: str, volume: str, subject: str, mask_cfg: dict, slicing_cfg: dict, intensity_cfg: dict
) -> SliceSet:
    """Mask the head, drop useless slices, cut a head-centred window and scale to [-1, 1]."""
    from medcyclegan.preprocessing.masking import MaskParams, head_mask

    if not is_canonical(img):
        raise ValueError(f"{volume}: volume is not on the canonical grid; resample with geometry.to_canonical first")
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    sx, sy, sz = img.GetSpacing()
    spacing_zyx = (sz, sy, sx)
    mask, mask_info = head_mask(arr, spacing_zyx, MaskParams.from_config(mask_cfg))
    table = slice_table(
        mask,
        spacing_zyx,
        min_head_area_mm2=slicing_cfg["min_head_area_mm2"],
        min_head_fraction_of_max=slicing_cfg["min_head_fraction_of_max"],
        max_depth_below_vertex_mm=slicing_cfg.get("max_depth_below_vertex_mm"),
    )
    kept = table.loc[table.kept, "slice"].to_numpy(dtype=np.int64)
    size = int(slicing_cfg["size"])
    bg = BACKGROUND[modality]
    top_left = centred_window(mask[kept], size) if kept.size else (0, 0)
    if mask.any():
        lo, hi = intensity_window(modality, arr[mask], intensity_cfg)
    else:
        lo, hi = intensity_window(modality, np.array([0.0, 1.0]), intensity_cfg) if modality == "ct" else (0.0, 1.0)
    window_mask = extract_window(mask[kept], top_left, size, False)
    images = intensity.to_unit_range(extract_window(arr[kept], top_left, size, bg), lo, hi)
    images[~window_mask] = -1.0  # outside the head: background value, exactly
    origin = img.GetOrigin()
    table.insert(0, "modality", modality)
    table.insert(0, "subject", subject)
    table.insert(0, "volume", volume)
    return SliceSet(
        volume=volume,
        subject=subject,
        modality=modality,
        images=images,
        slices=kept,
        z_mm=origin[2] + kept * sz,
        top_left=top_left,
        value_lo=lo,
        value_hi=hi,
        spacing=(sy, sx, sz),
        canonical_shape=tuple(int(v) for v in arr.shape),
        canonical_origin=tuple(float(v) for v in origin),
        table=table,
        mask=mask,
        mask_info=mask_info,
    )


def check_head_volume(mask: np.ndarray, spacing, *, modality: str, min_ml: float, where) -> None:
    """Raise :class:`~medcyclegan.errors.BadInput` when the head mask is empty or smaller than
    ``reject.min_head_volume_ml`` (``min_ml``): no head, or masking settings that do not fit."""
    head_ml = float(mask.sum() * np.prod(spacing) / 1000.0)
    if head_ml < max(min_ml, 1e-9):
        raise BadInput(
            f"the automatic head mask holds {head_ml:.0f} ml (less than reject.min_head_volume_ml = {min_ml:g} ml): "
            f"{'empty' if head_ml == 0 else 'implausibly small for a head'} (no head in the image, wrong "
            f"intensities, or masking.{modality} settings that do not fit this scan). Check "
            f"results/qc/{modality}_preview.png and the volume, adjust masking.{modality} or leave the volume out.",
            file=f"{where}",
        )


def preprocess_plausible(
    img: sitk.Image,
    *,
    modality: str,
    volume: str,
    subject: str,
    mask_cfg: dict,
    slicing_cfg: dict,
    intensity_cfg: dict,
    reject_cfg: dict | None = None,
    where,
) -> SliceSet:
    """:func:`preprocess_volume` then :func:`check_head_volume` (``where`` names the input in the
    rejection); raises :class:`~medcyclegan.errors.BadInput` for a volume to reject."""
    result = preprocess_volume(
        img,
        modality=modality,
        volume=volume,
        subject=subject,
        mask_cfg=mask_cfg,
        slicing_cfg=slicing_cfg,
        intensity_cfg=intensity_cfg,
    )
    log.info("%s %s: mask %s", modality, volume, result.mask_info)
    min_ml = float((reject_cfg or {}).get("min_head_volume_ml", 0.0))
    check_head_volume(result.mask, img.GetSpacing(), modality=modality, min_ml=min_ml, where=where)
    return result


def head_slices_beyond(sliced: SliceSet, canonical: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(images, slice indices) of the slices that hold head but that the useful-slice filter
    dropped (too small a head section, or below the cranial range), cut with the kept slices'
    window and scaled with their intensity window: outside the range the model was trained on."""
    dropped = sliced.table.loc[(~sliced.table.kept) & (sliced.table.head_area_mm2 > 0), "slice"]
    extra = np.sort(dropped.to_numpy(dtype=np.int64))
    size = sliced.images.shape[-1]
    arr = sitk.GetArrayFromImage(canonical).astype(np.float32)[extra]
    images = intensity.to_unit_range(
        extract_window(arr, sliced.top_left, size, BACKGROUND[sliced.modality]), sliced.value_lo, sliced.value_hi
    )
    images[~extract_window(sliced.mask[extra], sliced.top_left, size, False)] = -1.0
    return images.astype(np.float32), extra


def mask_image(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(like)
    return out


def ground_truth_slices(
    gt_ct: sitk.Image, canonical_input: sitk.Image, slices: np.ndarray, top_left, size: int, ct_mask_cfg: dict
) -> dict:
    """The true CT (HU) on exactly the input's canonical grid, slices and window.

    The demo keeps each MR/PET subject's real CT; this puts it in the same frame as the
    input's TFRecord slices, so a generated slice can be scored pixel by pixel. The scoring
    mask is the head mask of the true CT itself (as SynthRAD's body mask), not the input's:
    a PET mask can miss the scalp.
    """
    from medcyclegan.preprocessing.masking import MaskParams, head_mask

    on_grid = to_canonical(gt_ct, default_value=BACKGROUND["ct"], reference=canonical_input)
    hu = sitk.GetArrayFromImage(on_grid).astype(np.float32)
    sx, sy, sz = on_grid.GetSpacing()
    mask, _ = head_mask(hu, (sz, sy, sx), MaskParams.from_config(ct_mask_cfg))
    slices = np.asarray(slices, dtype=np.int64)
    return {
        "hu": extract_window(hu[slices], top_left, size, BACKGROUND["ct"]),
        "mask": extract_window(mask[slices], top_left, size, False),
        "slice": slices,
    }
