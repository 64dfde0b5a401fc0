"""Enhanced CT (one DICOM file holding a whole series as frames) read as a series of slices.

An Enhanced CT Image Storage object (or its Legacy Converted form) places every frame by its
functional groups (PS3.3 C.7.6.16): the position in ``PerFrameFunctionalGroupsSequence[i]
.PlanePositionSequence[0].ImagePositionPatient``; orientation (``PlaneOrientationSequence``),
pixel spacing and thickness (``PixelMeasuresSequence``) and the rescale to HU
(``PixelValueTransformationSequence``) in the frame's item or in
``SharedFunctionalGroupsSequence``. Each frame becomes one slice dict, as
:func:`~medcyclegan.ingest.dicom_files.read_slice` returns for a single-frame file, so
:mod:`~medcyclegan.ingest.ct_stack` orders, fits and checks frames exactly as it does files
(order along the normal, spacing fit, gaps, duplicates, tilt); messages name a frame as
``<file> frame k``.

Any other multi-frame object (no per-frame functional groups, another SOP class), or an Enhanced
CT whose frame lacks a position, orientation or pixel spacing, is refused with that reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.dicom_checks import float_or_nan, number_of_frames

__all__ = ["FRAMES_ARE_SLICES", "Frame", "expand_frames", "frames_are_slices", "read_frames", "series_fields"]

#: the series table's ``frames`` value of a row whose frames are its slices
FRAMES_ARE_SLICES = "slices"
#: Enhanced CT Image Storage, Legacy Converted Enhanced CT Image Storage
ENHANCED_CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
#: functional group macro -> the elements it holds that a slice needs
_MACROS = {
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness"),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept"),
}
#: top-level elements every frame shares (padding, bits: the air fix reads them)
_IMAGE_ELEMENTS = (
    "Modality",
    "SeriesInstanceUID",
    "BitsAllocated",
    "PixelRepresentation",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
)


class Frame:
    """One frame of a multi-frame file, where the stack code names a file (``name``, ``str``)."""

    __slots__ = ("file", "index", "count")

    def __init__(self, file, index: int, count: int):
        self.file, self.index, self.count = file, index, count

    @property
    def name(self) -> str:
        return f"{self.file.name} frame {self.index + 1}"

    def __str__(self) -> str:
        return f"{self.file} frame {self.index + 1} of {self.count}"

    def __repr__(self) -> str:
        return f"Frame({self.file!r}, {self.index})"


def frames_are_slices(ds: pydicom.Dataset) -> bool:
    """A CT object whose frames are placed one by one: an Enhanced (or Legacy Converted Enhanced)
    CT, or any CT with per-frame functional groups."""
    sop = str(ds.get("SOPClassUID", "") or "")
    is_ct = sop in ENHANCED_CT_SOP_CLASSES or str(ds.get("Modality", "") or "").upper() == "CT"
    return is_ct and "PerFrameFunctionalGroupsSequence" in ds


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    seq = ds.get(keyword, None) if ds is not None else None
    return seq[0] if seq else None


def frame_datasets(ds: pydicom.Dataset, path) -> Iterator[Dataset]:
    """One small dataset per frame holding what :func:`read_slice` reads from a single-frame file:
    placement, thickness and rescale from the frame's functional groups, else the shared ones,
    else (orientation, spacing, rescale: not positions) the top level; and the image elements."""
    n = number_of_frames(ds)
    items = list(ds.get("PerFrameFunctionalGroupsSequence", None) or [])
    if len(items) != n:
        raise IngestError(
            f"{path}: NumberOfFrames is {n} but PerFrameFunctionalGroupsSequence has {len(items)} items: "
            f"the frames cannot be placed (the header is damaged). Re-export the series."
        )
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    for item in items:
        frame = Dataset()
        for keyword in _IMAGE_ELEMENTS:
            if keyword in ds:
                frame[keyword] = ds[keyword]
        for macro, keywords in _MACROS.items():
            sources = [_first_item(item, macro), _first_item(shared, macro)]
            if macro != "PlanePositionSequence":  # one top-level position cannot place every frame
                sources.append(ds)
            for keyword in keywords:
                source = next((s for s in sources if s is not None and keyword in s), None)
                if source is not None:
                    frame[keyword] = source[keyword]
        yield frame


def _missing(frames: list[Dataset]) -> str:
    """Why the frames cannot be placed (the first frame without a required element), else ""."""
    for k, frame in enumerate(frames):
        for keyword, macro in (
            ("ImagePositionPatient", "PlanePositionSequence"),
            ("ImageOrientationPatient", "PlaneOrientationSequence"),
            ("PixelSpacing", "PixelMeasuresSequence"),
        ):
            if frame.get(keyword, None) in (None, ""):
                return (
                    f"frame {k + 1} of {len(frames)} has no {keyword} in its functional groups "
                    f"({macro}, per frame or shared): the frame cannot be placed"
                )
    return ""


def series_fields(headers: list[pydicom.Dataset], files: list) -> dict[str, Any]:
    """Series-table fields of a group of files holding multi-frame objects (headers only), for
    :func:`~medcyclegan.ingest.ct_series.list_series`: ``n_files`` counts frames (the slices that
    ``min_slices`` is about), the thickness and pixel spacing of the first frame, and ``frames``:
    :data:`FRAMES_ARE_SLICES`; or only ``frames``: why the frames cannot be read as slices.
    ``{}`` for a series of single-frame files."""
    placed = [h for h in headers if frames_are_slices(h)]
    if not placed and all(number_of_frames(h) == 1 for h in headers):
        return {}
    names = [f.name for f in files] if len(files) == len(headers) else [f"file {k + 1}" for k in range(len(headers))]
    for h, name in zip(headers, names):
        if not frames_are_slices(h) and number_of_frames(h) > 1:
            return {"frames": f"{name}: not an Enhanced CT object with per-frame positions (functional groups)"}
        try:
            why = _missing(list(frame_datasets(h, name))) if frames_are_slices(h) else ""
        except IngestError as exc:
            why = str(exc)
        if why:
            return {"frames": f"{name}: {why}"}
    first = next(frame_datasets(placed[0], ""))
    fields: dict[str, Any] = {"n_files": sum(number_of_frames(h) for h in headers), "frames": FRAMES_ARE_SLICES}
    fields["pixel_spacing_mm"] = "\\".join(str(v) for v in first.PixelSpacing)
    thick = float_or_nan(first.get("SliceThickness", None))
    if thick > 0:
        fields.update(slice_thickness_mm=thick, thickness_source="SliceThickness (functional groups)")
        return fields
    try:
        steps = np.diff(np.sort([_projected(d) for d in frame_datasets(placed[0], "")]))
    except (TypeError, ValueError):  # damaged numbers: refused, naming the frame, when read
        return fields
    steps = steps[steps > 1e-6]
    if steps.size:
        fields.update(slice_thickness_mm=float(np.median(steps)), thickness_source="positions")
    return fields


def _projected(frame: Dataset) -> float:
    iop = np.array(frame.ImageOrientationPatient, dtype=float)
    return float(np.dot(np.array(frame.ImagePositionPatient, dtype=float), np.cross(iop[:3], iop[3:])))


def multi_frame_reasons(row) -> list[str]:
    """The selection's reason against a multi-frame series row, unless its frames are slices."""
    nframes = int(row.get("number_of_frames", 1) or 1)
    frames = str(row.get("frames", "") or "")
    if nframes <= 1 and not frames or frames == FRAMES_ARE_SLICES:
        return []
    return [f"multi-frame DICOM ({nframes} frames in one file) is not supported" + (f" ({frames})" if frames else "")]


def _decode_frames(ds: pydicom.Dataset, ts, path) -> np.ndarray:
    from medcyclegan.ingest.dicom_files import transfer_syntax_name

    try:
        raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - the decoder was found available: a damaged file
        raise IngestError(
            f"{path}: cannot decode the pixel data (transfer syntax '{transfer_syntax_name(ts)}'): "
            f"{type(exc).__name__}: {exc}. The file is truncated or corrupt. Re-export or re-download the series."
        ) from exc
    raw = raw.reshape((1, *raw.shape)) if raw.ndim == 2 else raw
    if raw.ndim != 3 or raw.shape[0] != number_of_frames(ds):
        raise IngestError(f"{path}: decoded pixel data has shape {raw.shape}, expected frames x rows x columns.")
    return raw


def read_frames(ds: pydicom.Dataset, ts, path) -> dict[str, Any]:
    """Every frame of an Enhanced CT file as a slice dict (the keys of
    :func:`~medcyclegan.ingest.dicom_files.read_slice`), in ``frames``; the file's own dict carries
    ``rescale`` (one kind for all frames) for the series' rescale check."""
    from medcyclegan.ingest.dicom_checks import check_pixel_length, slice_placement
    from medcyclegan.ingest.dicom_files import slice_record

    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise IngestError(f"{path}: colour image (SamplesPerPixel > 1) is not a CT slice.")
    frames = list(frame_datasets(ds, path))
    n = len(frames)
    placements = [slice_placement(f, Frame(path, k, n)) for k, f in enumerate(frames)]  # before decoding
    check_pixel_length(ds, ts, path)
    raw = _decode_frames(ds, ts, path)
    out = [
        slice_record(ds, frame, raw[k], ts, placement, Frame(path, k, n))
        for k, (frame, placement) in enumerate(zip(frames, placements))
    ]
    kinds = sorted({s["rescale"] for s in out})
    if len(kinds) > 1:
        raise IngestError(
            f"{path}: frames carry different kinds of rescale ({', '.join(kinds)}): the functional "
            f"groups are damaged. Re-export the series."
        )
    return {"skip": False, "frames": out, "rescale": kinds[0]}


def expand_frames(files: list, slices: list[dict[str, Any]]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``(file, slice)`` pairs of a series: a multi-frame file gives one pair per frame, its file a
    :class:`Frame` (so the stack's messages name the frame)."""
    for f, s in zip(files, slices):
        if "frames" not in s:
            yield f, s
            continue
        for k, frame in enumerate(s["frames"]):
            yield Frame(f, k, len(s["frames"])), frame
