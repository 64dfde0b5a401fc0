"""Checks of DICOM image headers, for :mod:`medcyclegan.ingest.dicom_files`: one file's before its
pixel data is decoded (a decoder for its transfer syntax, one grey frame, placement numbers, the
pixel data's length), its rescale to HU, and the slices of one series together (one kind of
rescale). Every check that fails raises :class:`IngestError` naming the file, what is wrong and
what to do: a damaged header is refused, never read as a silently different image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels.utils import get_expected_length

from medcyclegan.ingest import IngestError

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


def float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def number_of_frames(ds: pydicom.Dataset) -> int:
    value = float_or_nan(ds.get("NumberOfFrames", None))
    return int(value) if math.isfinite(value) and value >= 1 else 1


def check_decoder(ts: Any, path: Path) -> None:
    """Fail early, naming the package to install, when pixel data cannot be decoded here."""
    if ts is None:
        return
    uid = pydicom.uid.UID(str(ts))
    if not uid.is_transfer_syntax:
        raise IngestError(
            f"{path}: the file meta names '{uid}' as TransferSyntaxUID, which is not a transfer "
            f"syntax: the file is corrupt. Re-export or re-download the series."
        )
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


def check_single_grey_frame(ds: pydicom.Dataset, path: Path) -> None:
    nframes = number_of_frames(ds)
    if nframes > 1:
        raise IngestError(f"{path}: multi-frame DICOM ({nframes} frames) is not supported for CT.")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise IngestError(f"{path}: colour image (SamplesPerPixel > 1) is not a CT slice.")


def _numbers(ds: pydicom.Dataset, keyword: str, count: int, path: Path, why: str = "") -> np.ndarray:
    """A required element of ``count`` finite numbers as float64, else :class:`IngestError`."""
    why = why or "cannot place the slice in space"
    value = ds.get(keyword, None)
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        raise IngestError(f"{path}: DICOM element {keyword} is missing or empty; {why}.")
    try:
        numbers = np.array(value if count > 1 else [value], dtype=np.float64).ravel()
    except (TypeError, ValueError):
        numbers = np.array([np.nan])
    if numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        raise IngestError(
            f"{path}: DICOM element {keyword} is not {count} finite number{'s' if count > 1 else ''} "
            f"(the header is damaged); {why}. Re-export or re-download the series."
        )
    return numbers


def slice_placement(ds: pydicom.Dataset, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ImageOrientationPatient (6), ImagePositionPatient (3), PixelSpacing (2, > 0) as float64."""
    iop = _numbers(ds, "ImageOrientationPatient", 6, path)
    ipp = _numbers(ds, "ImagePositionPatient", 3, path)
    ps = _numbers(ds, "PixelSpacing", 2, path)
    if np.any(ps <= 0):
        raise IngestError(f"{path}: PixelSpacing {ps.tolist()} is not positive. Re-export or re-download the series.")
    return iop, ipp, ps


def check_pixel_length(ds: pydicom.Dataset, ts: Any, path: Path) -> None:
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


def rescale_to_hu(ds: pydicom.Dataset, raw: np.ndarray, path: Path) -> tuple[np.ndarray, str, float, float]:
    """``(HU float32, rescale description, slope, intercept)``; no rescale tags = identity, one of
    them alone: the other's identity value (:func:`check_one_rescale` requires one kind per series)."""
    slope = ds.get("RescaleSlope", None)
    inter = ds.get("RescaleIntercept", None)
    rescale = {
        (True, True): "RescaleSlope/RescaleIntercept",
        (True, False): "RescaleSlope only (intercept 0)",
        (False, True): "RescaleIntercept only (slope 1)",
    }.get((slope is not None, inter is not None), "absent (identity)")
    if slope is None and inter is None and "ModalityLUTSequence" in ds:
        raise IngestError(f"{path}: a Modality LUT Sequence instead of RescaleSlope/Intercept is not supported.")
    why = "cannot convert the stored values to HU"
    slope = 1.0 if slope is None else float(_numbers(ds, "RescaleSlope", 1, path, why)[0])
    inter = 0.0 if inter is None else float(_numbers(ds, "RescaleIntercept", 1, path, why)[0])
    if slope == 0.0:
        raise IngestError(f"{path}: RescaleSlope is 0 (the header is damaged). Re-export or re-download the series.")
    hu = raw.astype(np.float32)  # float32 throughout: exact for stored integers, half the memory traffic
    if slope != 1.0:
        hu *= np.float32(slope)
    if inter != 0.0:
        hu += np.float32(inter)
    return hu, rescale, slope, inter


def check_one_rescale(files: list[Path], slices: list[dict[str, Any]]) -> None:
    """The slices of a series all carry RescaleSlope and RescaleIntercept, or all lack the same
    ones: a slice that lacks one the others have (a damaged header) would be shifted or scaled
    against them, silently."""
    kinds: dict[str, list[Path]] = {}
    for f, s in zip(files, slices):
        if not s["skip"]:
            kinds.setdefault(s["rescale"], []).append(f)
    if len(kinds) < 2:
        return
    common = max(kinds, key=lambda k: len(kinds[k]))
    odd = next(k for k in kinds if k != common)
    raise IngestError(
        f"{kinds[odd][0]}: rescale {odd}, but {len(kinds[common])} other slices of the series have "
        f"{common}: the header is damaged, its values would not match the others'. "
        f"Re-export or re-download the series."
    )
