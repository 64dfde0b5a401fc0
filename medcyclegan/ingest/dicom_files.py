"""DICOM files of a CT series folder: which files are DICOM, reading them, decoding one slice to HU.

A file is DICOM when it has a ``.dcm`` extension, the ``DICM`` magic at byte 128, or starts
like a bare dataset (no preamble and no file meta, as old archives export them: a known element
of group 0002/0008, little endian), so extension-less files are found as well; names that are
certainly something else (``.txt``, ``.json``, ``DICOMDIR`` ...) are never opened. A bare image
dataset is read with ``force=True`` and its transfer syntax inferred from the encoding pydicom
found (implicit/explicit VR, byte order), since pydicom decodes no pixel data without one.

Documented fixes when a slice is read: a file without the DICOM magic that pydicom cannot parse,
or a non-image DICOM object (structured report, presentation state ...), is skipped (the caller
logs it). A truncated image file (header without pixel data, uncompressed pixel data of another
length than Rows x Columns x SamplesPerPixel x BitsAllocated/8, checked before decoding because
pydicom decodes longer data with only a warning, or pixel data that cannot be decoded) is never
skipped: :class:`IngestError`.

HU = stored value * RescaleSlope + RescaleIntercept, per slice, as float32 (pydicom's pixel
handlers decode the stored values, including JPEG 2000 / JPEG lossless through pylibjpeg, and
honour PixelRepresentation). Compressed series are decoded by forked worker processes.

Documented fix (CT): scanner padding (stored values equal to PixelPaddingValue, or between it and
PixelPaddingRangeLimit inclusive, PS3.3 C.7.5.1.1.2, compared before rescale) and values below
air (-1024 HU; outside the reconstruction circle scanners write e.g. -2000 or -3024 HU) become
air, -1024 HU; the slice records the counts and :func:`slice_fixes` words them for the volume.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import struct
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_has_tag
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import VR

from medcyclegan.config.resources import job_threads
from medcyclegan.ingest import IngestError

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
        with open(path, "rb") as fh:
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
    for geometry; it only makes header summaries deterministic)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise IngestError(f"{folder}: cannot list folder ({exc}).") from exc
    return [Path(e.path) for e in entries if e.is_file() and _looks_like_dicom(Path(e.path))]


def dcmread(path: Path, *, headers_only: bool) -> pydicom.Dataset:
    """``pydicom.dcmread``; a file without the 128-byte preamble (a ``.dcm`` file, or a bare
    dataset without file meta) is accepted only when it is an image."""
    with open(path, "rb") as fh:
        try:
            ds = pydicom.dcmread(fh, stop_before_pixels=headers_only)
        except InvalidDicomError:
            fh.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=headers_only, force=True)
            if "SOPClassUID" not in ds and "ImagePositionPatient" not in ds:
                raise
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


def float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def number_of_frames(ds: pydicom.Dataset) -> int:
    value = float_or_nan(ds.get("NumberOfFrames", None))
    return int(value) if math.isfinite(value) and value >= 1 else 1


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


def _required(ds: pydicom.Dataset, keyword: str, path: Path) -> Any:
    value = ds.get(keyword, None)
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        raise IngestError(f"{path}: DICOM element {keyword} is missing; cannot place the slice in space.")
    return value


def _open_image_file(path: Path) -> tuple[pydicom.Dataset | None, str]:
    """``(dataset, "")`` of an image file, or ``(None, reason)`` for a file to skip."""
    try:
        ds = dcmread(path, headers_only=False)
    except IngestError:
        raise
    except Exception as exc:  # noqa: BLE001
        if not has_dicom_magic(path):
            # documented fix: a stray non-DICOM file in a series folder is skipped (and logged)
            return None, f"not a DICOM file ({type(exc).__name__})"
        raise IngestError(
            f"{path}: not a readable DICOM file, probably truncated or corrupt ({type(exc).__name__}: {exc}). "
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


def _check_single_grey_frame(ds: pydicom.Dataset, path: Path) -> None:
    nframes = number_of_frames(ds)
    if nframes > 1:
        raise IngestError(f"{path}: multi-frame DICOM ({nframes} frames) is not supported for CT.")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise IngestError(f"{path}: colour image (SamplesPerPixel > 1) is not a CT slice.")


def _slice_placement(ds: pydicom.Dataset, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ImageOrientationPatient (6), ImagePositionPatient (3), PixelSpacing (2) as float64."""
    iop = np.array(_required(ds, "ImageOrientationPatient", path), dtype=np.float64)
    ipp = np.array(_required(ds, "ImagePositionPatient", path), dtype=np.float64)
    ps = np.array(_required(ds, "PixelSpacing", path), dtype=np.float64)
    if iop.shape != (6,) or ipp.shape != (3,) or ps.shape != (2,):
        raise IngestError(f"{path}: malformed ImageOrientationPatient/ImagePositionPatient/PixelSpacing.")
    return iop, ipp, ps


def _check_pixel_length(ds: pydicom.Dataset, ts: Any, path: Path) -> None:
    """Refuse uncompressed pixel data whose length is not the header's Rows x Columns x
    SamplesPerPixel x BitsAllocated/8 (x NumberOfFrames; one pad byte to an even length allowed),
    before decoding: pydicom decodes longer data with only a warning (a garbled image)."""
    if ts is None or pydicom.uid.UID(str(ts)).is_compressed:
        return
    try:
        expected = int(get_expected_length(ds, unit="bytes"))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise IngestError(f"{path}: the image header is incomplete ({exc}); cannot size the pixel data.") from exc
    got = len(ds.PixelData)
    if got == expected or (expected % 2 == 1 and got == expected + 1):
        return
    shape = f"{ds.Rows} x {ds.Columns} x {ds.get('SamplesPerPixel', 1)} x {ds.BitsAllocated}/8"
    frames = number_of_frames(ds)
    shape += f" x {frames} frames" if frames > 1 else ""
    what = "the file is truncated" if got < expected else "the header does not describe the pixel data"
    raise IngestError(
        f"{path}: the pixel data holds {got} bytes, but the header announces {expected} "
        f"(Rows x Columns x SamplesPerPixel x BitsAllocated/8 = {shape}): {what}. "
        f"Re-export or re-download the series."
    )


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


def _rescale_to_hu(ds: pydicom.Dataset, raw: np.ndarray, path: Path) -> tuple[np.ndarray, str, float, float]:
    """``(HU float32, rescale description, slope, intercept)``; no rescale tags = identity."""
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
    return hu, rescale, slope, inter


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
        _check_decoder(ts, path)
        checked.add(str(ts))
    _check_single_grey_frame(ds, path)
    iop, ipp, ps = _slice_placement(ds, path)
    _check_pixel_length(ds, ts, path)
    raw = _decode_pixels(ds, ts, path)
    hu, rescale, slope, inter = _rescale_to_hu(ds, raw, path)
    n_pad, n_low, padding_rule = _air_outside_field(ds, raw, hu)
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
        "thickness": float_or_nan(ds.get("SliceThickness")),
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
            return list(pool.map(_read_slice_worker, files, chunksize=8))
    checked: set[str] = set()
    return [read_slice(f, checked) for f in files]
