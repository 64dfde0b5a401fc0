"""DICOM files of a CT series folder: which files are DICOM, reading them, decoding one slice to HU.

A file is DICOM when it has a ``.dcm`` extension, the ``DICM`` magic at byte 128, or starts
like a bare dataset (no preamble and no file meta, as old archives export them: a known element
of group 0002/0008, little endian), so extension-less files are found as well; names that are
certainly something else (``.txt``, ``.json``, ``DICOMDIR`` ...) are never opened. A bare image
dataset is read with ``force=True`` and its transfer syntax inferred from the encoding pydicom
found (implicit/explicit VR, byte order), since pydicom decodes no pixel data without one.

Documented fixes when a slice is read: a file without the DICOM magic that pydicom cannot parse,
or a non-image DICOM object (structured report, presentation state ...), is skipped (the caller
logs it). A truncated image file (empty, or zeros where the preamble and ``DICM`` marker belong;
header without pixel data, uncompressed pixel data of another length than Rows x Columns x
SamplesPerPixel x BitsAllocated/8, checked before decoding because pydicom decodes longer data
with only a warning, or pixel data that cannot be decoded) is never skipped, nor is a damaged
header (an element pydicom cannot convert, placement or rescale values that are not finite
numbers, slices of one series with different rescale elements): :class:`IngestError`. The
header checks are in :mod:`~medcyclegan.ingest.dicom_checks`.

HU = stored value * RescaleSlope + RescaleIntercept, per slice, as float32 (pydicom's pixel
handlers decode the stored values, including JPEG 2000 / JPEG lossless through pylibjpeg, and
honour PixelRepresentation). Compressed series are decoded by forked worker processes.

Documented fix (CT): scanner padding (stored values equal to PixelPaddingValue, or between it and
PixelPaddingRangeLimit inclusive, PS3.3 C.7.5.1.1.2, compared before rescale) and values below
air (-1024 HU; outside the reconstruction circle scanners write e.g. -2000 or -3024 HU) become
air, -1024 HU; the slice records the counts and :func:`slice_fixes` words them for the volume.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import struct
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_has_tag
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import VR

from medcyclegan.config.resources import job_threads
from medcyclegan.ingest import IngestError
from medcyclegan.ingest.dicom_checks import (
    check_decoder,
    check_one_rescale,
    check_pixel_length,
    check_single_grey_frame,
    float_or_nan,
    rescale_to_hu,
    slice_placement,
)
from medcyclegan.ingest.enhanced_ct import frames_are_slices, read_frames
from medcyclegan.ingest.zipped_study import ZipMember, open_binary, zip_folder_files

# Files that are certainly not DICOM (never opened).
_NON_DICOM_SUFFIXES = set(
    ".txt .csv .json .xml .html .htm .jpg .jpeg .png .gif .bmp .zip "
    ".gz .tar .nii .pdf .md .py .db .ini .log .yaml .yml".split()
)

# SOP classes that never hold an image (structured reports, presentation states, key object
# selections, raw data, encapsulated PDF): such files in a series folder are skipped, not errors
_NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",
    "1.2.840.10008.5.1.4.1.1.11.",
    "1.2.840.10008.5.1.4.1.1.66",
    "1.2.840.10008.5.1.4.1.1.104.",
    "1.2.840.10008.5.1.4.1.1.481.",
)

#: below this many files a series is decoded in this process (starting workers costs more)
PARALLEL_MIN_FILES = 32

#: air: scanner padding and values below it become this (documented fix)
AIR_HU = -1024.0


# --------------------------------------------------------------------------------------------
# which files, reading headers
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
    return has_dicom_magic(path)


def has_dicom_magic(path: Path) -> bool:
    """The DICOM Part 10 marker ``DICM`` at byte 128 (after the preamble), or the start of a bare
    dataset (:func:`starts_like_bare_dataset`)."""
    try:
        with open_binary(path, whole=False) as fh:
            head = fh.read(132)
    except OSError:
        return False
    return (len(head) == 132 and head[128:132] == b"DICM") or starts_like_bare_dataset(head)


def starts_like_bare_dataset(head: bytes) -> bool:
    """A dataset without preamble and file meta starts with a known element of group 0002 (file
    meta without preamble) or 0008, little endian, followed by a valid VR (explicit VR) or a
    short even length (implicit VR)."""
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or not dictionary_has_tag((group << 16) | element):
        return False
    if head[4:6].isalpha() and head[4:6].decode("ascii") in VR.__members__:
        return True
    length = struct.unpack("<I", head[4:8])[0]
    return length % 2 == 0 and length < 1 << 16


def dicom_files(folder: Path) -> list[Path]:
    """DICOM-looking files directly inside ``folder``, sorted by name (the order is irrelevant
    for geometry; it only makes header summaries deterministic); a folder of a study zip is
    listed from the archive (:mod:`~medcyclegan.ingest.zipped_study`)."""
    if isinstance(folder, ZipMember):
        return [f for f in zip_folder_files(folder) if _looks_like_dicom(f)]
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise IngestError(f"{folder}: cannot list folder ({exc}).") from exc
    return [Path(e.path) for e in entries if e.is_file() and _looks_like_dicom(Path(e.path))]


def dcmread(path: Path, *, headers_only: bool) -> pydicom.Dataset:
    """``pydicom.dcmread``; a file without the 128-byte preamble (a ``.dcm`` file, or a bare
    dataset without file meta) is accepted only when it is an image."""
    with open_binary(path, whole=not headers_only) as fh:
        try:
            ds = pydicom.dcmread(fh, stop_before_pixels=headers_only)
        except InvalidDicomError:
            fh.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=headers_only, force=True)
            if "SOPClassUID" not in ds and "ImagePositionPatient" not in ds:
                raise
    try:  # pydicom converts elements on first access: a damaged one fails here, not in a caller
        for _ in ds:
            pass
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown VR: the header bytes are damaged
        raise IngestError(
            f"{path}: the DICOM header is damaged ({type(exc).__name__}: {reader_reason(exc)}). "
            f"Re-export or re-download the series."
        ) from exc
    _infer_transfer_syntax(ds, path)
    return ds


def _infer_transfer_syntax(ds: pydicom.Dataset, path: Path) -> None:
    """Set the transfer syntax of a dataset read without one from the encoding pydicom found
    while parsing it (pydicom decodes no pixel data without one); encapsulated (compressed)
    pixel data cannot be told apart without it."""
    if "TransferSyntaxUID" in ds.file_meta:
        return
    if "PixelData" in ds and ds["PixelData"].is_undefined_length:
        raise IngestError(
            f"{path}: compressed (encapsulated) pixel data in a file without a transfer syntax "
            f"(no DICOM file meta): the codec is unknown. Re-export the series as DICOM files."
        )
    implicit, little = ds.original_encoding
    uid = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    ds.file_meta.TransferSyntaxUID = uid
    ds.transfer_syntax_inferred = True  # a plain attribute (no DICOM element): read_slice reports it


def transfer_syntax_name(uid: Any) -> str:
    if not uid:
        return ""
    try:
        return pydicom.uid.UID(str(uid)).name
    except Exception:  # pragma: no cover - defensive
        return str(uid)


def transfer_syntax_uid(ds: pydicom.Dataset) -> Any:
    return getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)


# --------------------------------------------------------------------------------------------
# one slice
# --------------------------------------------------------------------------------------------


def reader_reason(exc: Exception) -> str:
    """A reader's message as one short clause: its first line, without pydicom's advice to read
    with ``force=True`` (which would read as the thing to do), at most 200 characters."""
    lines = str(exc).strip().splitlines()
    text = re.sub(r"\s*Use force=True to force reading\.?", "", lines[0] if lines else "").strip()
    return (text[:197] + "...") if len(text) > 200 else text or type(exc).__name__


def _cut_before_header(path: Path) -> bool:
    """A file too short for a preamble and ``DICM`` marker (132 bytes; empty, or cut inside its
    start), one whose first 128 bytes are zeros (zero-filled, or a zero preamble before a damaged
    marker), or one with a damaged marker but file meta after it: a damaged DICOM file, never
    skipped as a stray one (skipping an end slice would silently shorten the volume)."""
    try:
        with open_binary(path, whole=False) as fh:
            head = fh.read(140)
    except OSError:
        return False
    return len(head) < 132 or not head[:128].strip(b"\0") or starts_like_bare_dataset(head[132:140])


def _open_image_file(path: Path) -> tuple[pydicom.Dataset | None, str]:
    """``(dataset, "")`` of an image file, or ``(None, reason)`` for a file to skip."""
    try:
        ds = dcmread(path, headers_only=False)
    except IngestError:
        raise
    except Exception as exc:  # noqa: BLE001
        if not has_dicom_magic(path) and not _cut_before_header(path):
            # documented fix: a stray non-DICOM file in a series folder is skipped (and logged)
            return None, f"not a DICOM file ({type(exc).__name__})"
        what = (
            "empty or damaged at its start (cut, zero-filled or a broken DICM marker)"
            if _cut_before_header(path)
            else "not a readable DICOM file"
        )
        raise IngestError(
            f"{path}: {what}, probably truncated or corrupt ({type(exc).__name__}: {reader_reason(exc)}). "
            f"Re-export or re-download the series."
        ) from exc
    if "PixelData" not in ds:
        sop = str(
            ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or ""
        )
        if sop and sop.startswith(_NON_IMAGE_SOP_PREFIXES):
            return None, f"DICOM object without an image (SOP class {pydicom.uid.UID(sop).name})"
        raise IngestError(
            f"{path}: image file without pixel data (SOP class {pydicom.uid.UID(sop).name if sop else 'unknown'}): "
            f"the file is truncated. Re-export or re-download the series."
        )
    return ds, ""


def _decode_pixels(ds: pydicom.Dataset, ts: Any, path: Path) -> np.ndarray:
    try:
        raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        # the decoder's availability was checked before, so this is a damaged file
        raise IngestError(
            f"{path}: cannot decode the pixel data (transfer syntax '{transfer_syntax_name(ts)}'): "
            f"{type(exc).__name__}: {exc}. The file is truncated or corrupt. "
            f"Re-export or re-download the series."
        ) from exc
    if raw.ndim != 2:
        raise IngestError(f"{path}: decoded pixel data has shape {raw.shape}, expected 2D.")
    return raw


def _padding_mask(ds: pydicom.Dataset, raw: np.ndarray) -> tuple[np.ndarray | None, str]:
    """``(mask, rule)`` of the stored values marked as padding: PixelPaddingValue, or the inclusive
    range between it and PixelPaddingRangeLimit (PS3.3 C.7.5.1.1.2); ``(None, "")`` without one."""
    if ds.get("PixelPaddingValue", None) is None:
        return None, ""
    bits = int(ds.get("BitsAllocated", 16) or 16)
    values = [int(ds.PixelPaddingValue)]
    if ds.get("PixelPaddingRangeLimit", None) is not None:
        values.append(int(ds.PixelPaddingRangeLimit))
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:  # a signed value written as unsigned (VR US)
        values = [v - (1 << bits) if v >= 1 << (bits - 1) else v for v in values]
    lo, hi = min(values), max(values)
    rule = "PixelPaddingValue" if len(values) == 1 else "PixelPaddingValue to PixelPaddingRangeLimit"
    return (raw >= lo) & (raw <= hi), rule


def _air_outside_field(ds: pydicom.Dataset, raw: np.ndarray, hu: np.ndarray) -> tuple[int, int, str]:
    """Documented fix (CT only: other modalities have no air value): padding pixels and values
    below air become :data:`AIR_HU`, in place, so nothing outside the field lies far below air.
    Returns the counts of padding and below-air pixels and the padding rule."""
    if str(ds.get("Modality", "CT") or "CT").upper() != "CT":
        return 0, 0, ""
    pad, rule = _padding_mask(ds, raw)
    n_pad = 0
    if pad is not None:
        n_pad = int(np.count_nonzero(pad))
        hu[pad] = AIR_HU
    n_low = int(np.count_nonzero(hu < AIR_HU))
    if n_low:
        np.maximum(hu, np.float32(AIR_HU), out=hu)
    return n_pad, n_low, rule if n_pad else ""


def read_slice(path: Path, checked: set[str]) -> dict[str, Any]:
    """One slice as a dict: ``skip`` (and ``reason``) for a file to leave out, else its
    placement (``iop``, ``ipp``, ``ps``), ``hu`` and header facts; the documented fixes applied
    (``n_padding_pixels``, ``padding_rule``, ``n_below_air_pixels``, ``ts_inferred``) are worded
    for the volume by :func:`slice_fixes`. ``checked``: transfer syntaxes whose decoder was
    already found available."""
    ds, reason = _open_image_file(path)
    if ds is None:
        return {"skip": True, "reason": reason}
    ts = transfer_syntax_uid(ds)
    if str(ts) not in checked:
        check_decoder(ts, path)
        checked.add(str(ts))
    if frames_are_slices(ds):  # Enhanced CT: one file, one slice per frame
        return read_frames(ds, ts, path)
    check_single_grey_frame(ds, path)
    iop, ipp, ps = slice_placement(ds, path)
    check_pixel_length(ds, ts, path)
    raw = _decode_pixels(ds, ts, path)
    return slice_record(ds, ds, raw, ts, (iop, ipp, ps), path)


def slice_record(ds: pydicom.Dataset, item, raw: np.ndarray, ts, placement, where) -> dict[str, Any]:
    """The slice dict of one image (a file, or one frame of an Enhanced CT file ``ds``, whose
    rescale and thickness sit in ``item``): HU with the air fixes applied, and header facts."""
    iop, ipp, ps = placement
    hu, rescale, slope, inter = rescale_to_hu(item, raw, where)
    n_pad, n_low, padding_rule = _air_outside_field(item, raw, hu)
    return {
        "skip": False,
        "iop": iop,
        "ipp": ipp,
        "ps": ps,
        "hu": hu,
        "shape": raw.shape,
        "ts": str(ts) if ts else "",
        "ts_inferred": bool(getattr(ds, "transfer_syntax_inferred", False)),
        "rescale": rescale,
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "thickness": float_or_nan(item.get("SliceThickness")),
        "slope": slope,
        "intercept": inter,
        "n_padding_pixels": n_pad,
        "padding_rule": padding_rule,
        "n_below_air_pixels": n_low,
    }


def slice_fixes(slices: list[dict[str, Any]]) -> list[str]:
    """The documented fixes :func:`read_slice` applied, one line per rule for the whole volume."""
    fixes = []
    n_pad = sum(int(s.get("n_padding_pixels", 0)) for s in slices)
    n_low = sum(int(s.get("n_below_air_pixels", 0)) for s in slices)
    if n_pad or n_low:
        rules = sorted({s["padding_rule"] for s in slices if s.get("padding_rule")})
        parts = [f"{n_pad} scanner padding ({', '.join(rules)})"] if n_pad else []
        parts += [f"{n_low} below {AIR_HU:g} HU (outside the reconstruction field)"] if n_low else []
        fixes.append(f"{n_pad + n_low} pixels set to {AIR_HU:g} HU (air): {'; '.join(parts)}")
    bare = [s for s in slices if s.get("ts_inferred")]
    if bare:
        names = ", ".join(sorted({transfer_syntax_name(s["ts"]) for s in bare}))
        fixes.append(f"{len(bare)} files without DICOM file meta (bare datasets): transfer syntax inferred ({names})")
    return fixes


# --------------------------------------------------------------------------------------------
# all slices of a series
# --------------------------------------------------------------------------------------------

_WORKER_CHECKED: set[str] = set()


def _read_slice_worker(path: Path) -> dict[str, Any]:
    return read_slice(path, _WORKER_CHECKED)


def _compressed(path: Path) -> bool:
    try:
        ts = getattr(dcmread(path, headers_only=True).file_meta, "TransferSyntaxUID", None)
        return bool(ts) and pydicom.uid.UID(str(ts)).is_compressed
    except Exception:  # noqa: BLE001 - the serial read reports the problem
        return False


def read_slices(files: list[Path], workers: int | None) -> list[dict[str, Any]]:
    """:func:`read_slice` of every file, in order. JPEG 2000 / JPEG decoding holds the GIL, so a
    compressed series of ``PARALLEL_MIN_FILES`` or more files is decoded by ``workers`` forked
    processes (default: the job's threads, :func:`~medcyclegan.config.resources.job_threads`); the
    first failing file (in file order) raises, as serially. Uncompressed series are read here:
    copying their slices back from workers would cost more than reading them."""
    workers = job_threads() if workers is None else max(1, int(workers))
    if (
        workers > 1
        and len(files) >= PARALLEL_MIN_FILES
        and "fork" in multiprocessing.get_all_start_methods()
        and _compressed(files[0])
    ):
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(workers, len(files)), mp_context=ctx) as pool:
            slices = list(pool.map(_read_slice_worker, files, chunksize=8))
    else:
        checked: set[str] = set()
        slices = [read_slice(f, checked) for f in files]
    check_one_rescale(files, slices)
    return slices
