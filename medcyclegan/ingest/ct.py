"""qure.ai CQ500 head CT: list the DICOM series of a study, pick one, read it into physical space.

Layout (as downloaded; see DESIGN.md section 2)::

    CQ500-CT-43/                      <- optional extra level when unzipped into a folder
      CQ500CT43 CQ500CT43/            <- note the space
        Unknown Study/
          CT PLAIN THIN/CT000000.dcm ...
          CT BONE/...
          CT 5mm/...
          CT PLAIN THIN-2/...         <- duplicates carry -2/-3 suffixes

Series are found by walking the study folder for folders that contain DICOM files (a ``.dcm``
extension or the ``DICM`` magic at byte 128, so extension-less files are found as well).

Geometry rules (:func:`read_ct_series`):

* slices are ordered by ImagePositionPatient projected on the slice normal
  (row cosine x column cosine of ImageOrientationPatient) -- never by file name, InstanceNumber
  or SliceLocation;
* HU = stored value * RescaleSlope + RescaleIntercept, per slice, as float32 (pydicom's pixel
  handlers decode the stored values, including JPEG 2000 / JPEG lossless through pylibjpeg, and
  honour PixelRepresentation);
* spacing (x, y, z) = (PixelSpacing[1], PixelSpacing[0], median step of the sorted projected
  positions); origin = ImagePositionPatient of the first slice; direction columns = (row cosine,
  column cosine, normal). DICOM patient coordinates are LPS, as SimpleITK's;
* orientation, matrix size and pixel spacing must agree between slices and the slice step must be
  uniform (within ``spacing_tolerance``), otherwise :class:`IngestError`;
* gantry tilt (slices whose positions move in-plane from slice to slice -- a sheared stack that
  an orthogonal image grid cannot represent) is either corrected, by shifting every slice in-plane
  onto an orthogonal grid (linear interpolation; the grid is enlarged to keep every slice's field
  of view; new pixels get ``fill_value``), or refused (``gantry_tilt="error"``).

Documented fixes for messy folders (each recorded in ``info["fixes"]`` and logged): a file without
the DICOM magic that pydicom cannot parse, or a non-image DICOM object, is skipped; a folder
holding several SeriesInstanceUIDs is split into one candidate series per UID; a few images
with another orientation (a localizer/scout) are dropped; an exact duplicate slice is kept once.
A truncated image file (header without pixel data, or pixel data that cannot be decoded) is
never skipped: the series is refused.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from medcyclegan.config.resources import job_threads
from medcyclegan.ingest import IngestError

__all__ = [
    "DEFAULT_EXCLUDE_PATTERNS",
    "list_series",
    "select_series",
    "read_ct_series",
    "ingest_ct_study",
]

#: Default exclusion regexes (case-insensitive) matched on the series description, the series
#: folder name, the convolution kernel and ImageType.
DEFAULT_EXCLUDE_PATTERNS = [
    "bone",
    "contrast",
    "post",
    r"\bc\+",
    "cta",
    "angio",
    "scout",
    "localizer",
    "topogram",
]

#: Phrases that state a series was acquired WITHOUT contrast ("PRE CONTRAST", "non-contrast",
#: "without contrast", "w/o contrast" ...). They are replaced by "plain" before the exclusion
#: patterns are matched, so that a "contrast" pattern does not throw away plain series.
NON_CONTRAST_PHRASES = re.compile(
    r"\b(?:pre|non|no|without|w/o|sin)[\s_\-]*(?:iv[\s_\-]*)?contrast(?:e)?\b", re.IGNORECASE
)

# ContrastBolusAgent values that mean "no contrast".
_NO_CONTRAST_VALUES = {"", "none", "no", "n/a", "na", "nil", "0", "-", "no contrast", "plain"}

# Files that are certainly not DICOM (never opened).
_NON_DICOM_SUFFIXES = {
    ".txt",
    ".csv",
    ".json",
    ".xml",
    ".html",
    ".htm",
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".bmp",
    ".zip",
    ".gz",
    ".tar",
    ".nii",
    ".pdf",
    ".md",
    ".py",
    ".db",
    ".ini",
    ".log",
    ".yaml",
    ".yml",
}

# SOP classes that never hold an image (structured reports, presentation states, key object
# selections, raw data, encapsulated PDF): such files in a series folder are skipped, not errors
_NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",
    "1.2.840.10008.5.1.4.1.1.11.",
    "1.2.840.10008.5.1.4.1.1.66",
    "1.2.840.10008.5.1.4.1.1.104.",
    "1.2.840.10008.5.1.4.1.1.481.",
)

# pip packages that provide the pixel-data decoders for pydicom, by transfer syntax UID.
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",  # JPEG extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",  # JPEG lossless P14
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS near lossless
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",  # RLE (pydicom also has its own)
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _looks_like_dicom(path: Path) -> bool:
    """A ``.dcm`` file, or any file with the DICOM magic ``DICM`` at byte 128."""
    if path.name.startswith("."):
        return False
    suffix = path.suffix.lower()
    if suffix == ".dcm":
        return True
    if suffix in _NON_DICOM_SUFFIXES or path.name.upper() == "DICOMDIR":
        return False
    return _has_dicom_magic(path)


def _has_dicom_magic(path: Path) -> bool:
    """The DICOM Part 10 marker ``DICM`` at byte 128 (after the preamble)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _dicom_files(folder: Path) -> list[Path]:
    """DICOM-looking files directly inside ``folder``, sorted by name (the order is irrelevant
    for geometry; it only makes header summaries deterministic)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise IngestError(f"{folder}: cannot list folder ({exc}).") from exc
    return [Path(e.path) for e in entries if e.is_file() and _looks_like_dicom(Path(e.path))]


def _dcmread(path: Path, *, headers_only: bool) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=headers_only)
    except InvalidDicomError:
        # .dcm files written without the 128-byte preamble: accept only if they are images
        ds = pydicom.dcmread(path, stop_before_pixels=headers_only, force=True)
        if "SOPClassUID" not in ds and "ImagePositionPatient" not in ds:
            raise
        return ds


def _multi(value: Any) -> str:
    """A possibly multi-valued DICOM element as one string (``A\\B\\C``)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _n_frames(ds: pydicom.Dataset) -> int:
    value = _float_or_nan(ds.get("NumberOfFrames", None))
    return int(value) if math.isfinite(value) and value >= 1 else 1


def _ts_name(uid: Any) -> str:
    if not uid:
        return ""
    try:
        return pydicom.uid.UID(str(uid)).name
    except Exception:  # pragma: no cover - defensive
        return str(uid)


def _normal(iop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.asarray(iop[:3], dtype=np.float64)
    c = np.asarray(iop[3:], dtype=np.float64)
    return r, c, np.cross(r, c)


def _positions_thickness(files: list[Path]) -> float:
    """Slice step estimated from all headers' positions (used when SliceThickness is missing)."""
    pos, normal = [], None
    for f in files:
        ds = _dcmread(f, headers_only=True)
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            return float("nan")
        if normal is None:
            normal = _normal(np.array(ds.ImageOrientationPatient, dtype=float))[2]
        pos.append(float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), normal)))
    if len(pos) < 2:
        return float("nan")
    d = np.diff(np.sort(pos))
    d = d[d > 1e-6]
    return float(np.median(d)) if d.size else float("nan")


# --------------------------------------------------------------------------------------------
# series listing and selection
# --------------------------------------------------------------------------------------------

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
]


def _group_by_series(files: list[Path]) -> list[tuple[list[Path], list[pydicom.Dataset]]]:
    """Split a folder's files by SeriesInstanceUID (documented fix for two series in one folder).

    Every header is read (no pixel data). Files whose header cannot be read stay with every group,
    so reading the series later fails loudly on them instead of silently losing a slice.
    """
    by_uid: dict[str, tuple[list[Path], list[pydicom.Dataset]]] = {}
    unreadable: list[Path] = []
    for f in files:
        try:
            ds = _dcmread(f, headers_only=True)
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
    ds = headers[0] if headers else None
    if ds is None:
        errors = []
        for f in files[:5]:
            try:
                ds = _dcmread(f, headers_only=True)
                break
            except Exception as exc:  # noqa: BLE001 - reported in the table
                errors.append(f"{f.name}: {exc}")
        if ds is None:
            row["error"] = "no readable DICOM header (" + "; ".join(errors) + ")"
            return row
    desc = str(ds.get("SeriesDescription", "") or "").strip()
    thick = _float_or_nan(ds.get("SliceThickness", None))
    source = "SliceThickness"
    if not math.isfinite(thick) or thick <= 0:
        try:
            thick = _positions_thickness(files)
            source = "positions" if math.isfinite(thick) else "unknown"
        except Exception:  # noqa: BLE001
            thick, source = float("nan"), "unknown"
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    agent = str(ds.get("ContrastBolusAgent", "") or "").strip()
    row.update(
        description=(desc or folder.name) + suffix,
        slice_thickness_mm=thick,
        thickness_source=source,
        image_type=_multi(ds.get("ImageType", None)),
        convolution_kernel=_multi(ds.get("ConvolutionKernel", None)),
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        pixel_spacing_mm=_multi(ds.get("PixelSpacing", None)),
        modality=str(ds.get("Modality", "") or ""),
        transfer_syntax=str(ts) if ts else "",
        transfer_syntax_name=_ts_name(ts),
        number_of_frames=_n_frames(ds),
        contrast_agent="" if agent.lower() in _NO_CONTRAST_VALUES else agent,
    )
    return row


def list_series(study_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per series of a CQ500 study (headers only; no pixel data is read).

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
    if not study.is_dir():
        raise IngestError(f"{study}: CT study folder does not exist or is not a folder.")
    rows: list[dict[str, Any]] = []
    for root, dirs, _files in os.walk(study):
        dirs.sort()
        folder = Path(root)
        files = _dicom_files(folder)
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
    nframes = int(row.get("number_of_frames", 1) or 1)
    if nframes > 1:
        reasons.append(f"multi-frame DICOM ({nframes} frames in one file) is not supported")
    thick = _float_or_nan(row.get("slice_thickness_mm"))
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


def _rank(table: pd.DataFrame, **rules: Any) -> tuple[list[int], dict[str, str]]:
    max_t = float(rules.get("max_slice_thickness_mm", 1.5))
    min_n = int(rules.get("min_slices", 64))
    pats = rules.get("exclude_patterns", None)
    pats = DEFAULT_EXCLUDE_PATTERNS if pats is None else list(pats)
    try:
        compiled = [re.compile(p, re.IGNORECASE) for p in pats]
    except re.error as exc:
        raise IngestError(f"CT series rules: invalid exclude pattern ({exc}).") from exc
    use_tag = bool(rules.get("use_contrast_tag", True))
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
    max_slice_thickness_mm: float = 1.5,
    min_slices: int = 64,
    exclude_patterns: Iterable[str] | None = None,
    use_contrast_tag: bool = True,
) -> tuple[pd.Series, dict[str, str]]:
    """Pick the series to use: thin, plain (non-contrast), non-bone, enough slices.

    A series is rejected when its slice thickness is unknown or > ``max_slice_thickness_mm``,
    it has fewer than ``min_slices`` files, it is not CT or multi-frame, one of
    ``exclude_patterns`` (regexes, case-insensitive; default :data:`DEFAULT_EXCLUDE_PATTERNS`)
    matches its description, folder name, convolution kernel or ImageType (after phrases such as
    "PRE CONTRAST"/"non-contrast" were rewritten to "plain", see :data:`NON_CONTRAST_PHRASES`),
    or (``use_contrast_tag``) its ContrastBolusAgent is set to an agent.
    Among the candidates the one with the most slices wins; ties: thinner, then folder name.

    Returns ``(row, reasons)``: the chosen table row and ``series_dir -> reason`` for every
    OTHER series (rejections, or "candidate, not chosen: ..."). Raises :class:`IngestError`
    listing every series and its reason when none qualifies.
    """
    if table is None or len(table) == 0:
        raise IngestError("CT series selection: the study has no series.")
    table = table.reset_index(drop=True)
    candidates, reasons = _rank(
        table,
        max_slice_thickness_mm=max_slice_thickness_mm,
        min_slices=min_slices,
        exclude_patterns=exclude_patterns,
        use_contrast_tag=use_contrast_tag,
    )
    if not candidates:
        listing = "\n".join(f"  - {k}: {v}" for k, v in reasons.items())
        raise IngestError(
            "CT series selection: no series qualifies (need slice thickness <= "
            f"{max_slice_thickness_mm:g} mm, >= {min_slices} slices, plain, non-bone). "
            f"Rejected:\n{listing}\n"
            "Relax ct_series.max_slice_thickness_mm / min_slices / exclude_patterns in the "
            "config, or leave this study out."
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


# --------------------------------------------------------------------------------------------
# series reading
# --------------------------------------------------------------------------------------------


def _check_decoder(ts: Any, path: Path) -> None:
    """Fail early, naming the package to install, when pixel data cannot be decoded here."""
    if ts is None:
        return
    uid = pydicom.uid.UID(str(ts))
    if not uid.is_compressed:
        return
    from pydicom.pixels import get_decoder

    pkg = _DECODER_PACKAGES.get(str(uid), "pylibjpeg (with its openjpeg/libjpeg plugins) or python-gdcm")
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise IngestError(
            f"{path}: pixel data uses transfer syntax '{uid.name}' ({uid}), which pydicom cannot "
            f"decode. Convert the series (e.g. with gdcmconv --raw) or install python-gdcm."
        ) from exc
    if not decoder.is_available:
        raise IngestError(
            f"{path}: pixel data uses transfer syntax '{uid.name}' ({uid}) and no decoder is "
            f"installed. Install one: pip install {pkg}  (or python-gdcm)."
        )


def _req(ds: pydicom.Dataset, keyword: str, path: Path) -> Any:
    value = ds.get(keyword, None)
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        raise IngestError(f"{path}: DICOM element {keyword} is missing; cannot place the slice in space.")
    return value


def _read_slice(path: Path, checked: set[str]) -> dict[str, Any]:
    try:
        ds = _dcmread(path, headers_only=False)
    except Exception as exc:  # noqa: BLE001
        if not _has_dicom_magic(path):
            # documented fix: a stray non-DICOM file in a series folder is skipped (and logged)
            return {"skip": True, "reason": f"not a DICOM file ({type(exc).__name__})"}
        raise IngestError(
            f"{path}: not a readable DICOM file, probably truncated or corrupt ({type(exc).__name__}: {exc}). "
            f"Re-export or re-download the series."
        ) from exc
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in ds:
        sop = str(
            ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or ""
        )
        if sop and sop.startswith(_NON_IMAGE_SOP_PREFIXES):
            return {"skip": True, "reason": f"DICOM object without an image (SOP class {pydicom.uid.UID(sop).name})"}
        raise IngestError(
            f"{path}: image file without pixel data (SOP class {pydicom.uid.UID(sop).name if sop else 'unknown'}): "
            f"the file is truncated. Re-export or re-download the series."
        )
    if str(ts) not in checked:
        _check_decoder(ts, path)
        checked.add(str(ts))
    nframes = _n_frames(ds)
    if nframes > 1:
        raise IngestError(f"{path}: multi-frame DICOM ({nframes} frames) is not supported for CT.")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise IngestError(f"{path}: colour image (SamplesPerPixel > 1) is not a CT slice.")
    iop = np.array(_req(ds, "ImageOrientationPatient", path), dtype=np.float64)
    ipp = np.array(_req(ds, "ImagePositionPatient", path), dtype=np.float64)
    ps = np.array(_req(ds, "PixelSpacing", path), dtype=np.float64)
    if iop.shape != (6,) or ipp.shape != (3,) or ps.shape != (2,):
        raise IngestError(f"{path}: malformed ImageOrientationPatient/ImagePositionPatient/PixelSpacing.")
    try:
        raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        # the decoder's availability was checked above, so this is a damaged file
        raise IngestError(
            f"{path}: cannot decode the pixel data (transfer syntax '{_ts_name(ts)}'): "
            f"{type(exc).__name__}: {exc}. The file is truncated or corrupt. "
            f"Re-export or re-download the series."
        ) from exc
    if raw.ndim != 2:
        raise IngestError(f"{path}: decoded pixel data has shape {raw.shape}, expected 2D.")
    slope = ds.get("RescaleSlope", None)
    inter = ds.get("RescaleIntercept", None)
    rescale = "RescaleSlope/RescaleIntercept"
    if slope is None and inter is None:
        if "ModalityLUTSequence" in ds:
            raise IngestError(f"{path}: a Modality LUT Sequence instead of RescaleSlope/Intercept is not supported.")
        rescale = "absent (identity)"
    slope = 1.0 if slope is None else float(slope)
    inter = 0.0 if inter is None else float(inter)
    hu = raw.astype(np.float32)  # float32 throughout: exact for stored integers, half the memory traffic
    if slope != 1.0:
        hu *= np.float32(slope)
    if inter != 0.0:
        hu += np.float32(inter)
    return {
        "skip": False,
        "iop": iop,
        "ipp": ipp,
        "ps": ps,
        "hu": hu,
        "shape": raw.shape,
        "ts": str(ts) if ts else "",
        "rescale": rescale,
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "thickness": _float_or_nan(ds.get("SliceThickness")),
        "slope": slope,
        "intercept": inter,
    }


#: below this many files a series is decoded in this process (starting workers costs more)
PARALLEL_MIN_FILES = 32
_WORKER_CHECKED: set[str] = set()


def _read_slice_worker(path: Path) -> dict[str, Any]:
    return _read_slice(path, _WORKER_CHECKED)


def _compressed(path: Path) -> bool:
    try:
        ts = getattr(_dcmread(path, headers_only=True).file_meta, "TransferSyntaxUID", None)
        return bool(ts) and pydicom.uid.UID(str(ts)).is_compressed
    except Exception:  # noqa: BLE001 - the serial read reports the problem
        return False


def _read_slices(files: list[Path], workers: int | None) -> list[dict[str, Any]]:
    """:func:`_read_slice` of every file, in order. JPEG 2000 / JPEG decoding holds the GIL, so a
    compressed series of ``PARALLEL_MIN_FILES`` or more files is decoded by ``workers`` forked
    processes (default: the job's threads, :func:`~medcyclegan.config.resources.job_threads`); the
    first failing file (in file order) raises, as serially. Uncompressed series are read here: copying their slices back from workers would
    cost more than reading them."""
    workers = job_threads() if workers is None else max(1, int(workers))
    if (
        workers > 1
        and len(files) >= PARALLEL_MIN_FILES
        and "fork" in multiprocessing.get_all_start_methods()
        and _compressed(files[0])
    ):
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(workers, len(files)), mp_context=ctx) as pool:
            return list(pool.map(_read_slice_worker, files, chunksize=8))
    checked: set[str] = set()
    return [_read_slice(f, checked) for f in files]


def _drop_odd_orientations(slices: list[dict[str, Any]], folder: Path, fixes: list[str]) -> list[dict[str, Any]]:
    """Documented fix: a few images whose orientation differs from the rest (a localizer/scout
    saved into the series) are dropped and logged. If they are more than
    ``max(2, 5 %)`` of the images, the folder mixes acquisitions and is refused later."""
    keys = [tuple(np.round(s["iop"], 3)) for s in slices]
    counts: dict[tuple, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    if len(counts) < 2:
        return slices
    main = max(counts, key=lambda k: counts[k])
    odd = len(slices) - counts[main]
    if odd > max(2, int(0.05 * len(slices))):
        return slices  # too many to be a localizer: the orientation check below explains
    kept = []
    for s, k in zip(slices, keys):
        if k == main:
            kept.append(s)
        else:
            fixes.append(
                f"dropped {s['file'].name}: orientation {list(k)} differs from the series' "
                f"{list(main)} (a localizer/scout image)"
            )
    return kept


def _drop_exact_duplicates(slices: list[dict[str, Any]], proj: np.ndarray, fixes: list[str]):
    """Documented fix: a slice stored twice (same position, identical pixel values) is kept once."""
    keep = [0]
    for i in range(1, len(slices)):
        j = keep[-1]
        if (
            abs(proj[i] - proj[j]) < 1e-3
            and slices[i]["shape"] == slices[j]["shape"]
            and np.array_equal(slices[i]["hu"], slices[j]["hu"])
        ):
            fixes.append(f"dropped {slices[i]['file'].name}: exact duplicate of {slices[j]['file'].name}")
            continue
        keep.append(i)
    return keep


def _read_ct_series(
    series_dir: str | os.PathLike,
    *,
    files: list[Path] | None = None,
    spacing_tolerance: float = 0.1,
    gantry_tilt: str = "correct",
    fill_value: float = -1024.0,
    workers: int | None = None,
) -> tuple[sitk.Image, dict[str, Any]]:
    folder = Path(series_dir)
    if gantry_tilt not in ("correct", "error"):
        raise ValueError("gantry_tilt must be 'correct' or 'error'")
    if files is None:
        if not folder.is_dir():
            raise IngestError(f"{folder}: CT series folder does not exist.")
        files = _dicom_files(folder)
    files = [Path(f) for f in files]
    if not files:
        raise IngestError(f"{folder}: no DICOM files in the series folder.")
    slices, skipped, fixes = [], 0, []
    for f, s in zip(files, _read_slices(files, workers)):
        if s["skip"]:
            skipped += 1
            fixes.append(f"skipped {f.name}: {s['reason']}")
            continue
        s["file"] = f
        slices.append(s)
    if not slices:
        raise IngestError(f"{folder}: none of the {len(files)} DICOM files holds pixel data.")
    slices = _drop_odd_orientations(slices, folder, fixes)

    uids = {s["series_uid"] for s in slices if s["series_uid"]}
    if len(uids) > 1:
        raise IngestError(
            f"{folder}: the folder mixes {len(uids)} DICOM series (different SeriesInstanceUID); "
            f"separate them into one folder per series."
        )
    ref = slices[0]
    for s in slices[1:]:
        if not np.allclose(s["iop"], ref["iop"], atol=1e-4):
            raise IngestError(
                f"{folder}: slices have different ImageOrientationPatient ({s['file'].name}: "
                f"{s['iop'].round(5).tolist()} vs {ref['file'].name}: {ref['iop'].round(5).tolist()}); "
                f"the folder mixes acquisitions (e.g. a localizer). Remove the odd files or pick another series."
            )
        if s["shape"] != ref["shape"]:
            raise IngestError(
                f"{folder}: slices have different matrix sizes ({s['file'].name}: {s['shape']} vs "
                f"{ref['file'].name}: {ref['shape']})."
            )
        if not np.allclose(s["ps"], ref["ps"], rtol=1e-4, atol=1e-6):
            raise IngestError(
                f"{folder}: slices have different PixelSpacing ({s['file'].name}: {s['ps'].tolist()} "
                f"vs {ref['file'].name}: {ref['ps'].tolist()})."
            )

    r, c, _ = _normal(ref["iop"])
    if abs(np.linalg.norm(r) - 1) > 1e-3 or abs(np.linalg.norm(c) - 1) > 1e-3 or abs(np.dot(r, c)) > 1e-3:
        raise IngestError(
            f"{folder}: ImageOrientationPatient {ref['iop'].tolist()} is not two orthogonal unit vectors."
        )
    r = r / np.linalg.norm(r)
    c = c - np.dot(c, r) * r
    c = c / np.linalg.norm(c)
    n = np.cross(r, c)

    ipp = np.stack([s["ipp"] for s in slices])
    proj = ipp @ n
    order = np.argsort(proj, kind="stable")
    slices = [slices[i] for i in order]
    ipp = ipp[order]
    proj = proj[order]
    keep = _drop_exact_duplicates(slices, proj, fixes)
    slices, ipp, proj = [slices[i] for i in keep], ipp[keep], proj[keep]
    sy, sx = float(ref["ps"][0]), float(ref["ps"][1])  # PixelSpacing = (row spacing, col spacing)

    nz = len(slices)
    if nz == 1:
        dz = ref["thickness"]
        if not (math.isfinite(dz) and dz > 0):
            raise IngestError(f"{folder}: single slice without SliceThickness: the z spacing is unknown.")
        z_source = "SliceThickness (single slice)"
    else:
        steps = np.diff(proj)
        if np.any(steps < 1e-3):
            k = int(np.argmin(steps))
            raise IngestError(
                f"{folder}: two slices share the position {proj[k]:.3f} mm along the slice normal "
                f"({slices[k]['file'].name}, {slices[k + 1]['file'].name}): duplicated slices or "
                f"several acquisitions in one folder. Pick another series or remove the duplicates."
            )
        dz = float(np.median(steps))
        tol = max(0.01, spacing_tolerance * dz)
        bad = np.nonzero(np.abs(steps - dz) > tol)[0]
        if bad.size:
            details = ", ".join(
                f"{steps[k]:.3f} mm between {slices[k]['file'].name} ({proj[k]:.3f}) and "
                f"{slices[k + 1]['file'].name} ({proj[k + 1]:.3f})"
                for k in bad[:5]
            )
            raise IngestError(
                f"{folder}: slice spacing is not uniform (median {dz:.4f} mm, tolerance {tol:.3f} mm): "
                f"{details}{' ...' if bad.size > 5 else ''}. Missing slices or a variable-spacing "
                f"series; pick another series or leave this study out."
            )
        z_source = "median step of ImagePositionPatient along the slice normal"

    # in-plane drift of the slice positions: gantry tilt (sheared stack)
    d = ipp - ipp[0] - np.outer(proj - proj[0], n)
    shift_x = d @ r / sx  # pixels along the row direction (x, column index)
    shift_y = d @ c / sy  # pixels along the column direction (y, row index)
    drift = float(np.max(np.hypot(shift_x, shift_y))) if nz > 1 else 0.0
    tilt_deg = 0.0
    if nz > 1:
        span = proj[-1] - proj[0]
        tilt_deg = float(np.degrees(np.arctan2(np.linalg.norm(d[-1]), span)))
    corrected = False
    vol = np.stack([s["hu"] for s in slices])  # [z, y, x]
    origin = ipp[0].copy()
    if drift > 0.05:
        if gantry_tilt == "error":
            raise IngestError(
                f"{folder}: gantry tilt of {tilt_deg:.1f} deg (slice positions drift "
                f"{drift:.2f} pixels in-plane): the stack is sheared. Use gantry_tilt='correct' "
                f"or pick another series."
            )
        from scipy import ndimage

        lo_x = int(math.ceil(max(0.0, -shift_x.min())))
        hi_x = int(math.ceil(max(0.0, shift_x.max())))
        lo_y = int(math.ceil(max(0.0, -shift_y.min())))
        hi_y = int(math.ceil(max(0.0, shift_y.max())))
        ny, nx = vol.shape[1:]
        out = np.full((nz, ny + lo_y + hi_y, nx + lo_x + hi_x), fill_value, dtype=np.float32)
        for k in range(nz):
            padded = np.full(out.shape[1:], fill_value, dtype=np.float64)
            padded[lo_y : lo_y + ny, lo_x : lo_x + nx] = vol[k]
            out[k] = ndimage.shift(padded, (shift_y[k], shift_x[k]), order=1, mode="constant", cval=fill_value)
        vol = out
        origin = ipp[0] - lo_x * sx * r - lo_y * sy * c
        corrected = True

    img = sitk.GetImageFromArray(np.ascontiguousarray(vol, dtype=np.float32))
    img.SetSpacing((sx, sy, float(dz)))
    img.SetOrigin(tuple(float(v) for v in origin))
    direction = np.column_stack([r, c, n])
    img.SetDirection(tuple(float(v) for v in direction.ravel()))

    details = {
        "n_slices": nz,
        "n_files_skipped": skipped,
        "transfer_syntax": sorted({_ts_name(s["ts"]) for s in slices}),
        "rescale": sorted({s["rescale"] for s in slices}),
        "rescale_slopes": sorted({float(s["slope"]) for s in slices}),
        "rescale_intercepts": sorted({float(s["intercept"]) for s in slices}),
        "z_spacing_source": z_source,
        "gantry_tilt_deg": round(tilt_deg, 3),
        "gantry_tilt_corrected": corrected,
        "gantry_tilt_fill_value": float(fill_value) if corrected else None,
        "fixes": fixes
        + ([f"gantry tilt {tilt_deg:.1f} deg: slices shifted in-plane onto an orthogonal grid"] if corrected else []),
    }
    return img, details


#: plausibility of Hounsfield units (see :func:`check_hu_plausible`)
AIR_P1_MAX_HU = -500.0
HIGH_HU = 4000.0
HIGH_HU_MAX_FRACTION = 0.01


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


def read_ct_series(
    series_dir: str | os.PathLike,
    *,
    spacing_tolerance: float = 0.1,
    gantry_tilt: str = "correct",
    fill_value: float = -1024.0,
) -> sitk.Image:
    """Read one CT series folder into a float32 HU :class:`SimpleITK.Image` in LPS space.

    ``spacing_tolerance``: allowed relative deviation of a slice step from the median step
    (absolute floor 0.01 mm). ``gantry_tilt``: "correct" (shift slices onto an orthogonal grid,
    new pixels = ``fill_value``) or "error". See the module docstring for the geometry rules.
    """
    img, _ = _read_ct_series(
        series_dir, spacing_tolerance=spacing_tolerance, gantry_tilt=gantry_tilt, fill_value=fill_value
    )
    return img


def _geometry(img: sitk.Image) -> dict[str, Any]:
    return {
        "size": [int(v) for v in img.GetSize()],
        "spacing_mm": [round(float(v), 6) for v in img.GetSpacing()],
        "origin_mm": [round(float(v), 4) for v in img.GetOrigin()],
        "direction": [round(float(v), 6) for v in img.GetDirection()],
    }


_RULE_KEYS = {"max_slice_thickness_mm", "min_slices", "exclude_patterns", "use_contrast_tag"}


def ingest_ct_study(
    study_dir: str | os.PathLike,
    series_rules: dict[str, Any] | None = None,
    *,
    spacing_tolerance: float = 0.1,
    gantry_tilt: str = "correct",
    fill_value: float = -1024.0,
) -> tuple[sitk.Image, dict[str, Any]]:
    """Ingest one CQ500 study: list its series, select one, read it (HU, LPS, not resampled).

    ``series_rules`` holds the keyword arguments of :func:`select_series` (config
    ``ct_series``: ``max_slice_thickness_mm``, ``min_slices``, ``exclude_patterns``, optional
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
    candidates, _ = _rank(table.reset_index(drop=True), **rules)
    ordered = [table.reset_index(drop=True).loc[i] for i in candidates]

    def rel(series_dir: str) -> str:
        p = Path(series_dir)
        try:
            return str(p.relative_to(study.resolve()))
        except ValueError:
            return p.name

    failures: dict[str, str] = {}
    chosen, img, details = None, None, None
    for row in ordered:
        try:
            img, details = _read_ct_series(
                row["series_dir"],
                files=row.get("files") or None,
                spacing_tolerance=spacing_tolerance,
                gantry_tilt=gantry_tilt,
                fill_value=fill_value,
            )
            chosen = row
            break
        except IngestError as exc:
            failures[str(row["series_dir"])] = f"could not be read: {exc}"
    if chosen is None:
        listing = "\n".join(
            f"  - {rel(k)}: {v}"
            for k, v in {**reasons, **failures}.items()
            if k in failures or not v.startswith("candidate")
        )
        # the file column names the best-ranked series that failed (the one a user would fix)
        raise IngestError(f"{study}: no CT series could be ingested.\n{listing}", file=next(iter(failures)))

    rejected: dict[str, str] = {}
    for k in table["series_dir"].astype(str):
        if k == str(chosen["series_dir"]):
            continue
        if k in failures:
            rejected[rel(k)] = failures[k]
        elif not reasons[k].startswith("candidate, not chosen") or str(best["series_dir"]) == str(chosen["series_dir"]):
            rejected[rel(k)] = reasons[k]
        else:  # a higher-ranked candidate failed to read and a later one was used
            rejected[rel(k)] = (
                f"candidate, not chosen: '{chosen['description']}' ({int(chosen['n_files'])} slices "
                f"at {float(chosen['slice_thickness_mm']):g} mm) was used"
            )
    arr = sitk.GetArrayViewFromImage(img)
    info: dict[str, Any] = {
        "modality": "CT",
        "series_folder": rel(str(chosen["series_dir"])),
        "series_description": str(chosen["description"]),
        "n_slices": int(details["n_slices"]),
        "slice_thickness_mm": float(chosen["slice_thickness_mm"]),
        "convolution_kernel": str(chosen["convolution_kernel"]),
        "image_type": str(chosen["image_type"]),
        **{k: v for k, v in details.items() if k != "n_slices"},
        **_geometry(img),
        "hu_min": float(arr.min()),
        "hu_max": float(arr.max()),
        "selection_rules": {
            "max_slice_thickness_mm": float(rules.get("max_slice_thickness_mm", 1.5)),
            "min_slices": int(rules.get("min_slices", 64)),
            "exclude_patterns": list(
                DEFAULT_EXCLUDE_PATTERNS if rules.get("exclude_patterns") is None else rules["exclude_patterns"]
            ),
            "use_contrast_tag": bool(rules.get("use_contrast_tag", True)),
        },
        "rejected": rejected,
        "series": [
            {
                "folder": rel(str(r["series_dir"])),
                "description": str(r["description"]),
                "n_files": int(r["n_files"]),
                "slice_thickness_mm": None
                if not math.isfinite(_float_or_nan(r["slice_thickness_mm"]))
                else float(r["slice_thickness_mm"]),
                "convolution_kernel": str(r["convolution_kernel"]),
                "selected": str(r["series_dir"]) == str(chosen["series_dir"]),
            }
            for _, r in table.iterrows()
        ],
    }
    split = sorted(
        {
            str(Path(str(r["series_dir"])).parent / str(r["folder"]).split(" [series ")[0])
            for _, r in table.iterrows()
            if int(r.get("series_in_folder") or 1) > 1
        }
    )
    if split:
        info["fixes"] = list(info.get("fixes", [])) + [
            f"{len(split)} folder(s) held several series (different SeriesInstanceUID): split into "
            f"one candidate per series, each judged by the selection rules"
        ]
    return img, info
