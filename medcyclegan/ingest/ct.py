"""qure.ai CQ500 head CT: ingest one study (list its series, pick one, read it into LPS space).

Accepted layout (a CQ500 study as downloaded)::

    CQ500-CT-43/                      <- optional extra level when unzipped into a folder
      CQ500CT43 CQ500CT43/            <- note the space
        Unknown Study/
          CT PLAIN THIN/CT000000.dcm ...
          CT BONE/...
          CT 5mm/...
          CT PLAIN THIN-2/...         <- duplicates carry -2/-3 suffixes

The study may also be its zip as downloaded (``CQ500-CT-43.zip``), read in place without
unpacking (:mod:`~medcyclegan.ingest.zipped_study`). Any folder below the study that holds DICOM
files is a series (other collections with another
nesting are read the same way). The steps live in their own modules:
:mod:`~medcyclegan.ingest.ct_series` (series table and selection policy),
:mod:`~medcyclegan.ingest.ct_stack` (slice order, spacing, gantry tilt: the geometry rules) and
:mod:`~medcyclegan.ingest.dicom_files` (which files are DICOM, decoding a slice to HU). If the
chosen series cannot be read correctly, the next candidate is tried.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from medcyclegan.ingest import IngestError, geometry_info
from medcyclegan.ingest.ct_series import list_series, rank_series, select_series, selection_rules
from medcyclegan.ingest.ct_stack import read_ct_stack
from medcyclegan.ingest.dicom_files import float_or_nan
from medcyclegan.ingest.zipped_study import ArchiveDamaged

__all__ = ["read_ct_series", "check_hu_plausible", "ingest_ct_study"]

#: plausibility of Hounsfield units (see :func:`check_hu_plausible`)
AIR_P1_MAX_HU = -500.0
HIGH_HU = 4000.0
HIGH_HU_MAX_FRACTION = 0.01

_RULE_KEYS = {"max_slice_thickness_mm", "min_slices", "exclude_patterns", "use_contrast_tag"}


def read_ct_series(
    series_dir: str | os.PathLike,
    *,
    spacing_tolerance: float = 0.1,
    gantry_tilt: str = "correct",
    fill_value: float = -1024.0,
) -> sitk.Image:
    """Read one CT series folder into a float32 HU :class:`SimpleITK.Image` in LPS space.

    ``spacing_tolerance``: how far a slice may lie from the least-squares line through all slice
    positions, relative to the spacing (floor ``ct_stack.POSITION_ROUNDING_MM``). ``gantry_tilt``: "correct" (shift slices onto an orthogonal grid,
    new pixels = ``fill_value``) or "error". See :mod:`~medcyclegan.ingest.ct_stack` for the
    geometry rules.
    """
    img, _ = read_ct_stack(
        series_dir, spacing_tolerance=spacing_tolerance, gantry_tilt=gantry_tilt, fill_value=fill_value
    )
    return img


def check_hu_plausible(img: sitk.Image, where: str, info: dict[str, Any] | None = None) -> None:
    """Refuse a CT whose values cannot be Hounsfield units: a head CT always shows air around the
    head (about -1000 HU), and hardly any voxel above ``HIGH_HU``. A missing RescaleIntercept on
    unsigned data (air stored as ~0) or signed data read as unsigned (air wraps to ~64000) fails
    here instead of becoming a silently shifted volume."""
    arr = sitk.GetArrayViewFromImage(img)
    sample = np.asarray(arr[::2, ::4, ::4], dtype=np.float32).ravel()
    if sample.size == 0:
        return
    p1 = float(np.percentile(sample, 1))
    high = float(np.mean(sample > HIGH_HU))
    rescale = " ".join((info or {}).get("rescale", []))
    if p1 > AIR_P1_MAX_HU or high > HIGH_HU_MAX_FRACTION:
        what = (
            f"the lowest 1 % of values is {p1:.0f} HU (a head CT has air at about -1000 HU)"
            if p1 > AIR_P1_MAX_HU
            else f"{high:.1%} of voxels are above {HIGH_HU:g} HU"
        )
        cause = (
            "RescaleSlope/RescaleIntercept are missing and the stored values are not HU"
            if "absent" in rescale
            else "the rescale (RescaleSlope/RescaleIntercept) or the PixelRepresentation (signed/unsigned) is wrong"
        )
        raise IngestError(
            f"{where}: values are not Hounsfield units: {what}; {cause}. "
            f"Fix the DICOM headers (e.g. add RescaleIntercept -1024) or leave the study out."
        )


# --------------------------------------------------------------------------------------------
# ingest_ct_study, step by step
# --------------------------------------------------------------------------------------------


def _relative(series_dir: str, study: Path) -> str:
    """A series folder relative to the study folder (its name when outside)."""
    p = Path(series_dir)
    try:
        return str(p.relative_to(study.resolve()))
    except ValueError:
        return p.name


def _read_first_readable(
    ordered: list[pd.Series], reasons: dict[str, str], study: Path, **read_options: Any
) -> tuple[pd.Series, sitk.Image, dict[str, Any], dict[str, str]]:
    """``(row, image, details, failures)`` of the best-ranked candidate that reads correctly;
    ``failures``: ``series_dir -> reason`` of the better ones that did not."""
    failures: dict[str, str] = {}
    for row in ordered:
        try:
            img, details = read_ct_stack(row["series_dir"], files=row.get("files") or None, **read_options)
            return row, img, details, failures
        except ArchiveDamaged:  # the study zip itself is damaged: no other series is trusted
            raise
        except IngestError as exc:
            failures[str(row["series_dir"])] = f"could not be read: {exc}"
    listing = "\n".join(
        f"  - {_relative(k, study)}: {v}"
        for k, v in {**reasons, **failures}.items()
        if k in failures or not v.startswith("candidate")
    )
    # the file column names the best-ranked series that failed (the one a user would fix)
    raise IngestError(f"{study}: no CT series could be ingested.\n{listing}", file=next(iter(failures)))


def _rejected(
    table: pd.DataFrame,
    chosen: pd.Series,
    best: pd.Series,
    reasons: dict[str, str],
    failures: dict[str, str],
    study: Path,
) -> dict[str, str]:
    """Series folder -> why it was not used, for every series but the chosen one."""
    rejected: dict[str, str] = {}
    for k in table["series_dir"].astype(str):
        if k == str(chosen["series_dir"]):
            continue
        if k in failures:
            rejected[_relative(k, study)] = failures[k]
        elif not reasons[k].startswith("candidate, not chosen") or str(best["series_dir"]) == str(chosen["series_dir"]):
            rejected[_relative(k, study)] = reasons[k]
        else:  # a higher-ranked candidate failed to read and a later one was used
            rejected[_relative(k, study)] = (
                f"candidate, not chosen: '{chosen['description']}' ({int(chosen['n_files'])} slices "
                f"at {float(chosen['slice_thickness_mm']):g} mm) was used"
            )
    return rejected


def _series_summaries(table: pd.DataFrame, chosen: pd.Series, study: Path) -> list[dict[str, Any]]:
    return [
        {
            "folder": _relative(str(r["series_dir"]), study),
            "description": str(r["description"]),
            "n_files": int(r["n_files"]),
            "slice_thickness_mm": None
            if not math.isfinite(float_or_nan(r["slice_thickness_mm"]))
            else float(r["slice_thickness_mm"]),
            "convolution_kernel": str(r["convolution_kernel"]),
            "selected": str(r["series_dir"]) == str(chosen["series_dir"]),
        }
        for _, r in table.iterrows()
    ]


def _split_folder_fixes(table: pd.DataFrame) -> list[str]:
    """The documented fix for folders that held several series, if any did."""
    split = sorted(
        {
            str(Path(str(r["series_dir"])).parent / str(r["folder"]).split(" [series ")[0])
            for _, r in table.iterrows()
            if int(r.get("series_in_folder") or 1) > 1
        }
    )
    if not split:
        return []
    return [
        f"{len(split)} folder(s) held several series (different SeriesInstanceUID): split into "
        f"one candidate per series, each judged by the selection rules"
    ]


def ingest_ct_study(
    study_dir: str | os.PathLike,
    series_rules: dict[str, Any] | None = None,
    *,
    spacing_tolerance: float = 0.1,
    gantry_tilt: str = "correct",
    fill_value: float = -1024.0,
) -> tuple[sitk.Image, dict[str, Any]]:
    """Ingest one CQ500 study: list its series, select one, read it (HU, LPS, not resampled).

    ``series_rules`` holds the keyword arguments of
    :func:`~medcyclegan.ingest.ct_series.select_series` (config ``ct_series``:
    ``max_slice_thickness_mm``, ``min_slices``, ``exclude_patterns``, optional
    ``use_contrast_tag``). If the best candidate cannot be read correctly (e.g. missing slices),
    the next candidate is tried and the failure recorded; if none can be read,
    :class:`IngestError`.

    ``info`` (JSON-serialisable, no names/IDs/dates/UIDs): ``modality``, ``series_folder``
    (relative to the study folder), ``series_description``, ``n_slices``, ``slice_thickness_mm``,
    ``convolution_kernel``, ``image_type``, ``transfer_syntax`` (names), ``rescale``,
    ``hu_min``/``hu_max``, ``z_spacing_source``, ``gantry_tilt_deg``, ``gantry_tilt_corrected``,
    geometry (``size``, ``spacing_mm``, ``origin_mm``, ``direction``), ``selection_rules``,
    ``rejected`` (series folder -> reason) and ``series`` (one summary per series).
    """
    study = Path(study_dir)
    rules = dict(series_rules or {})
    unknown = set(rules) - _RULE_KEYS
    if unknown:
        raise IngestError(f"CT series rules: unknown keys {sorted(unknown)} (allowed: {sorted(_RULE_KEYS)}).")
    table = list_series(study)
    # select_series raises the informative error when nothing qualifies
    best, reasons = select_series(table, **rules)
    candidates, _ = rank_series(table.reset_index(drop=True), **rules)
    ordered = [table.reset_index(drop=True).loc[i] for i in candidates]
    chosen, img, details, failures = _read_first_readable(
        ordered, reasons, study, spacing_tolerance=spacing_tolerance, gantry_tilt=gantry_tilt, fill_value=fill_value
    )
    arr = sitk.GetArrayViewFromImage(img)
    info: dict[str, Any] = {
        "modality": "CT",
        "series_folder": _relative(str(chosen["series_dir"]), study),
        "series_description": str(chosen["description"]),
        "n_slices": int(details["n_slices"]),
        "slice_thickness_mm": float(chosen["slice_thickness_mm"]),
        "convolution_kernel": str(chosen["convolution_kernel"]),
        "image_type": str(chosen["image_type"]),
        **{k: v for k, v in details.items() if k != "n_slices"},
        **geometry_info(img),
        "hu_min": float(arr.min()),
        "hu_max": float(arr.max()),
        "selection_rules": selection_rules(**rules),
        "rejected": _rejected(table, chosen, best, reasons, failures, study),
        "series": _series_summaries(table, chosen, study),
    }
    split_fixes = _split_folder_fixes(table)
    if split_fixes:
        info["fixes"] = list(info.get("fixes", [])) + split_fixes
    return img, info
