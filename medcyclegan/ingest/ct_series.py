"""The series of a CT study: a summary table from DICOM headers, and the policy that picks one.

Series are found by walking the study folder for folders that contain DICOM files. A folder
holding several SeriesInstanceUIDs is split into one candidate series per UID (documented fix).
No pixel data is read here.

Selection (:func:`select_series`): thin, plain (non-contrast), non-bone, enough slices; among the
candidates the one with the most slices wins.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom

from medcyclegan.config.validation import schema_defaults
from medcyclegan.ingest import IngestError
from medcyclegan.ingest.ct_stack import slice_axes
from medcyclegan.ingest.dicom_checks import number_of_frames
from medcyclegan.ingest.dicom_files import (
    dcmread,
    dicom_files,
    float_or_nan,
    reader_reason,
    transfer_syntax_name,
    transfer_syntax_uid,
)
from medcyclegan.ingest.enhanced_ct import multi_frame_reasons
from medcyclegan.ingest.enhanced_ct import series_fields as enhanced_fields
from medcyclegan.ingest.zipped_study import study_folders
from medcyclegan.privacy import free_text

#: Phrases that state a series was acquired WITHOUT contrast ("PRE CONTRAST", "non-contrast",
#: "without contrast", "w/o contrast" ...). They are replaced by "plain" before the exclusion
#: patterns are matched, so that a "contrast" pattern does not throw away plain series.
NON_CONTRAST_PHRASES = re.compile(
    r"\b(?:pre|non|no|without|w/o|sin)[\s_\-]*(?:iv[\s_\-]*)?contrast(?:e)?\b", re.IGNORECASE
)

# ContrastBolusAgent values that mean "no contrast".
_NO_CONTRAST_VALUES = {"", "none", "no", "n/a", "na", "nil", "0", "-", "no contrast", "plain"}

_TABLE_COLUMNS = [
    "series_dir",
    "folder",
    "description",
    "n_files",
    "slice_thickness_mm",
    "thickness_source",
    "image_type",
    "convolution_kernel",
    "rows",
    "columns",
    "pixel_spacing_mm",
    "modality",
    "transfer_syntax",
    "transfer_syntax_name",
    "number_of_frames",
    "contrast_agent",
    "error",
    "files",
    "series_in_folder",
    "frames",
]


# --------------------------------------------------------------------------------------------
# the series table
# --------------------------------------------------------------------------------------------


def _multi(value: Any) -> str:
    """A possibly multi-valued DICOM element as one string (``A\\B\\C``)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _count(value: Any) -> int:
    """A matrix size from a header (0 when absent or not a number: a damaged element is refused
    when the series is read)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _positions_thickness(files: list[Path]) -> float:
    """Slice step estimated from all headers' positions (used when SliceThickness is missing)."""
    pos, normal = [], None
    for f in files:
        ds = dcmread(f, headers_only=True)
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            return float("nan")
        if normal is None:
            normal = slice_axes(np.array(ds.ImageOrientationPatient, dtype=float))[2]
        pos.append(float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), normal)))
    if len(pos) < 2:
        return float("nan")
    d = np.diff(np.sort(pos))
    d = d[d > 1e-6]
    return float(np.median(d)) if d.size else float("nan")


def _group_by_series(files: list[Path]) -> list[tuple[list[Path], list[pydicom.Dataset]]]:
    """Split a folder's files by SeriesInstanceUID (documented fix for two series in one folder).

    Every header is read (no pixel data). Files whose header cannot be read stay with every group,
    so reading the series later fails loudly on them instead of silently losing a slice.
    """
    by_uid: dict[str, tuple[list[Path], list[pydicom.Dataset]]] = {}
    unreadable: list[Path] = []
    for f in files:
        try:
            ds = dcmread(f, headers_only=True)
        except Exception:  # noqa: BLE001 - reported when the series is read
            unreadable.append(f)
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        by_uid.setdefault(uid, ([], []))
        by_uid[uid][0].append(f)
        by_uid[uid][1].append(ds)
    if not by_uid:
        return [(files, [])]
    if len(by_uid) > 1 and "" in by_uid:  # files without a UID cannot be assigned: keep them everywhere
        unreadable += by_uid.pop("")[0]
    # stable order: the group holding the first file name comes first
    ordered = sorted(by_uid.values(), key=lambda g: min(str(p) for p in g[0]))
    return [(sorted(g[0] + unreadable), g[1]) for g in ordered]


def _first_header(
    files: list[Path], headers: list[pydicom.Dataset]
) -> tuple[pydicom.Dataset | None, list[tuple[str, str]]]:
    """The group's first header, else the first readable one of its first five files (and the
    name of each one before it that could not be read, with the reason)."""
    if headers:
        return headers[0], []
    errors = []
    for f in files[:5]:
        try:
            return dcmread(f, headers_only=True), errors
        except Exception as exc:  # noqa: BLE001 - reported in the table
            errors.append((f.name, f"{type(exc).__name__}: {reader_reason(exc)}"))
    return None, errors


def _slice_thickness(ds: pydicom.Dataset, files: list[Path]) -> tuple[float, str]:
    """SliceThickness, else the median step of all files' positions; and which one it is."""
    thick = float_or_nan(ds.get("SliceThickness", None))
    if math.isfinite(thick) and thick > 0:
        return thick, "SliceThickness"
    try:
        thick = _positions_thickness(files)
        return thick, "positions" if math.isfinite(thick) else "unknown"
    except Exception:  # noqa: BLE001
        return float("nan"), "unknown"


def _header_fields(ds: pydicom.Dataset, folder: Path, files: list[Path], suffix: str) -> dict[str, Any]:
    # free text: read to choose the series, never written (medcyclegan.privacy)
    desc = free_text(ds.get("SeriesDescription", "") or "").strip()
    thick, source = _slice_thickness(ds, files)
    ts = transfer_syntax_uid(ds)
    agent = free_text(ds.get("ContrastBolusAgent", "") or "").strip()
    return dict(
        description=(desc or folder.name) + suffix,
        slice_thickness_mm=thick,
        thickness_source=source,
        image_type=_multi(ds.get("ImageType", None)),
        convolution_kernel=free_text(_multi(ds.get("ConvolutionKernel", None))),
        rows=_count(ds.get("Rows", 0)),
        columns=_count(ds.get("Columns", 0)),
        pixel_spacing_mm=_multi(ds.get("PixelSpacing", None)),
        modality=str(ds.get("Modality", "") or ""),
        transfer_syntax=str(ts) if ts else "",
        transfer_syntax_name=transfer_syntax_name(ts),
        number_of_frames=number_of_frames(ds),
        contrast_agent="" if agent.lower() in _NO_CONTRAST_VALUES else agent,
    )


def _summary_row(
    study: Path, folder: Path, files: list[Path], headers: list[pydicom.Dataset], k: int, n_groups: int
) -> dict[str, Any]:
    """One series-table row from the headers of one SeriesInstanceUID group of a folder."""
    suffix = f" [series {k + 1} of {n_groups}]" if n_groups > 1 else ""
    row: dict[str, Any] = {c: "" for c in _TABLE_COLUMNS}
    rel_folder = str(folder.relative_to(study)) if folder != study else "."
    row.update(
        series_dir=str(folder.resolve()) + suffix,
        folder=rel_folder + suffix,
        description=folder.name + suffix,
        n_files=len(files),
        slice_thickness_mm=float("nan"),
        rows=0,
        columns=0,
        number_of_frames=1,
        files=files,
        series_in_folder=n_groups,
    )
    ds, errors = _first_header(files, headers)
    if ds is None:
        by_reason: dict[str, list[str]] = {}
        for name, reason in errors:
            by_reason.setdefault(reason, []).append(name)
        listing = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())
        row["error"] = f"no readable DICOM header in its first {len(errors)} files ({listing}), truncated or corrupt"
        return row
    row.update(_header_fields(ds, folder, files, suffix))
    row.update(enhanced_fields(headers or [ds], files))  # Enhanced CT: frames are the slices
    return row


def list_series(study_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per series of a CQ500 study folder or study zip (headers only; no pixel data is read).

    Every header of a folder is read to split it by SeriesInstanceUID: a folder holding two
    series gives two rows (``folder`` ends in `` [series k of n]``), each judged by the selection
    rules on its own (documented fix, logged). ``files`` lists the row's files.

    Columns: ``series_dir`` (absolute path), ``folder`` (path relative to ``study_dir``),
    ``description`` (SeriesDescription, else the folder name), ``n_files`` (all DICOM files of
    the folder), ``slice_thickness_mm`` (SliceThickness; when absent, the median step of all
    files' positions, see ``thickness_source``), ``image_type``, ``convolution_kernel``,
    ``rows``, ``columns``, ``pixel_spacing_mm`` ("row\\col"), ``modality``,
    ``transfer_syntax`` (UID), ``transfer_syntax_name``, ``number_of_frames``,
    ``contrast_agent`` (ContrastBolusAgent, "" when none) and ``error`` (why the header could
    not be read, else "").
    """
    study = Path(study_dir)
    rows: list[dict[str, Any]] = []
    for folder in study_folders(study):  # a study folder, or a study zip read in place
        files = dicom_files(folder)
        if not files:
            continue
        groups = _group_by_series(files)
        for k, (group_files, headers) in enumerate(groups):
            rows.append(_summary_row(study, folder, group_files, headers, k, len(groups)))
    if not rows:
        raise IngestError(
            f"{study}: no DICOM files found in the CT study folder (expected "
            f"'<study>/Unknown Study/CT <series>/CT000000.dcm'). Check that the zip was extracted."
        )
    return pd.DataFrame(rows, columns=_TABLE_COLUMNS)


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------


def _match_text(row: pd.Series) -> dict[str, str]:
    fields = {
        "description": str(row.get("description", "") or ""),
        "folder name": Path(str(row.get("series_dir", "") or "")).name,
        "convolution kernel": str(row.get("convolution_kernel", "") or ""),
        "ImageType": str(row.get("image_type", "") or ""),
    }
    return {k: NON_CONTRAST_PHRASES.sub("plain", v) for k, v in fields.items() if v}


def _rejection_reasons(
    row: pd.Series,
    max_thickness: float,
    min_slices: int,
    patterns: list[re.Pattern],
    use_contrast_tag: bool,
) -> list[str]:
    reasons: list[str] = []
    if str(row.get("error", "") or ""):
        reasons.append(f"unreadable: {row['error']}")
        return reasons
    modality = str(row.get("modality", "") or "")
    if modality and modality.upper() != "CT":
        reasons.append(f"Modality is {modality}, not CT")
    reasons += multi_frame_reasons(row)
    thick = float_or_nan(row.get("slice_thickness_mm"))
    if not math.isfinite(thick):
        reasons.append("slice thickness unknown (no SliceThickness, positions unusable)")
    elif thick > max_thickness + 1e-6:
        reasons.append(f"slice thickness {thick:g} mm > max {max_thickness:g} mm")
    n = int(row.get("n_files", 0) or 0)
    if n < min_slices:
        reasons.append(f"{n} slices < min {min_slices}")
    for field, text in _match_text(row).items():
        for pat in patterns:
            if pat.search(text):
                reasons.append(f"excluded: pattern '{pat.pattern}' matches {field} '{text}'")
    agent = str(row.get("contrast_agent", "") or "")
    if use_contrast_tag and agent:
        reasons.append(f"ContrastBolusAgent is set ('{agent}')")
    return reasons


def selection_rules(**rules: Any) -> dict[str, Any]:
    """The selection rules in force: the given ones (keywords of :func:`select_series`; None means
    not given), the config schema's ``ct_series`` defaults for the rest."""
    given = {key: value for key, value in rules.items() if value is not None}
    merged = {**schema_defaults("ct_series"), "use_contrast_tag": True, **given}
    return {
        "max_slice_thickness_mm": float(merged["max_slice_thickness_mm"]),
        "min_slices": int(merged["min_slices"]),
        "exclude_patterns": list(merged["exclude_patterns"]),
        "use_contrast_tag": bool(merged["use_contrast_tag"]),
    }


def rank_series(table: pd.DataFrame, **rules: Any) -> tuple[list[int], dict[str, str]]:
    """Row indices of the candidates, best first, and ``series_dir -> reason`` for every rejected
    series. ``rules``: the keyword arguments of :func:`select_series`."""
    rules = selection_rules(**rules)
    max_t, min_n = rules["max_slice_thickness_mm"], rules["min_slices"]
    try:
        compiled = [re.compile(p, re.IGNORECASE) for p in rules["exclude_patterns"]]
    except re.error as exc:
        raise IngestError(f"CT series rules: invalid exclude pattern ({exc}).") from exc
    use_tag = rules["use_contrast_tag"]
    reasons: dict[str, str] = {}
    candidates: list[int] = []
    for idx, row in table.iterrows():
        why = _rejection_reasons(row, max_t, min_n, compiled, use_tag)
        if why:
            reasons[str(row["series_dir"])] = "; ".join(why)
        else:
            candidates.append(idx)

    def key(i: int):
        r = table.loc[i]
        return (
            -int(r["n_files"]),
            float(r["slice_thickness_mm"]),
            Path(str(r["series_dir"])).name,
            str(r["series_dir"]),
        )

    candidates.sort(key=key)
    return candidates, reasons


def select_series(
    table: pd.DataFrame,
    *,
    max_slice_thickness_mm: float | None = None,
    min_slices: int | None = None,
    exclude_patterns: Iterable[str] | None = None,
    use_contrast_tag: bool = True,
) -> tuple[pd.Series, dict[str, str]]:
    """Pick the series to use: thin, plain (non-contrast), non-bone, enough slices.

    A series is rejected when its slice thickness is unknown or > ``max_slice_thickness_mm``,
    it has fewer than ``min_slices`` files (frames of an Enhanced CT), it is not CT or
    multi-frame (other than an Enhanced CT whose frames are placed, :mod:`~medcyclegan.ingest.enhanced_ct`), one of
    ``exclude_patterns`` (regexes, case-insensitive)
    matches its description, folder name, convolution kernel or ImageType (after phrases such as
    "PRE CONTRAST"/"non-contrast" were rewritten to "plain", see :data:`NON_CONTRAST_PHRASES`),
    or (``use_contrast_tag``) its ContrastBolusAgent is set to an agent.
    Among the candidates the one with the most slices wins; ties: thinner, then folder name.
    Rules not given are the config schema's ``ct_series`` defaults.

    Returns ``(row, reasons)``: the chosen table row and ``series_dir -> reason`` for every
    OTHER series (rejections, or "candidate, not chosen: ..."). Raises :class:`IngestError`
    listing every series and its reason when none qualifies.
    """
    if table is None or len(table) == 0:
        raise IngestError("CT series selection: the study has no series.")
    table = table.reset_index(drop=True)
    rules = selection_rules(
        max_slice_thickness_mm=max_slice_thickness_mm,
        min_slices=min_slices,
        exclude_patterns=exclude_patterns,
        use_contrast_tag=use_contrast_tag,
    )
    candidates, reasons = rank_series(table, **rules)
    if not candidates:
        listing = "\n".join(f"  - {k}: {v}" for k, v in reasons.items())
        unreadable = any(v.startswith("unreadable") for v in reasons.values())
        raise IngestError(
            "CT series selection: no series qualifies (need slice thickness <= "
            f"{rules['max_slice_thickness_mm']:g} mm, >= {rules['min_slices']} slices, plain, non-bone). "
            f"Rejected:\n{listing}\n"
            + ("Re-export or re-download the unreadable series, or relax " if unreadable else "Relax ")
            + "ct_series.max_slice_thickness_mm / min_slices / exclude_patterns in the config, or leave this study out."
        )
    best = table.loc[candidates[0]]
    for i in candidates[1:]:
        r = table.loc[i]
        reasons[str(r["series_dir"])] = (
            f"candidate, not chosen: {int(r['n_files'])} slices at "
            f"{float(r['slice_thickness_mm']):g} mm vs {int(best['n_files'])} at "
            f"{float(best['slice_thickness_mm']):g} mm in '{best['description']}'"
        )
    return best, reasons
