"""Multi-frame Enhanced CT files made from a single-frame CT series (for the Enhanced CT tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid


def _item(**elements) -> Dataset:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _groups(src: Dataset, *, position: bool, placement: bool) -> Dataset:
    """A functional groups item: the frame's position, and (``placement``) orientation, pixel
    measures and rescale."""
    item = Dataset()
    if position:
        item.PlanePositionSequence = Sequence([_item(ImagePositionPatient=list(src.ImagePositionPatient))])
    if placement:
        item.PlaneOrientationSequence = Sequence([_item(ImageOrientationPatient=list(src.ImageOrientationPatient))])
        item.PixelMeasuresSequence = Sequence(
            [_item(PixelSpacing=list(src.PixelSpacing), SliceThickness=src.SliceThickness)]
        )
        item.PixelValueTransformationSequence = Sequence(
            [_item(RescaleSlope=src.RescaleSlope, RescaleIntercept=src.RescaleIntercept, RescaleType="HU")]
        )
    return item


def enhanced_ct_from_series(
    folder: Path,
    out: Path,
    *,
    order=None,
    per_frame: bool = False,
    drop_position: int | None = None,
    drop: tuple[int, ...] = (),
    functional_groups: bool = True,
) -> Path:
    """One Enhanced CT Image Storage file ``out`` holding the slices of the single-frame series in
    ``folder`` as frames. ``order``: the files' indices (sorted by name) in frame order;
    ``per_frame``: orientation, pixel measures and rescale in every frame's functional groups
    (else shared); ``drop_position``: a frame (index in the file) without a position; ``drop``:
    files left out (a gap); ``functional_groups=False``: a plain multi-frame object (top-level
    placement of the first slice only)."""
    files = sorted(folder.glob("*.dcm"))
    order = list(range(len(files))) if order is None else list(order)
    slices = [pydicom.dcmread(files[i]) for i in order if i not in drop]
    first = slices[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, meta.MediaStorageSOPInstanceUID
    for keyword in ("Modality", "SeriesInstanceUID", "SeriesDescription", "ConvolutionKernel", "ImageType"):
        if keyword in first:
            setattr(ds, keyword, first.data_element(keyword).value)
    ds.Rows, ds.Columns, ds.NumberOfFrames = first.Rows, first.Columns, len(slices)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = first.PixelRepresentation
    if functional_groups:
        ds.SharedFunctionalGroupsSequence = Sequence([_groups(first, position=False, placement=not per_frame)])
        ds.PerFrameFunctionalGroupsSequence = Sequence(
            [_groups(s, position=k != drop_position, placement=per_frame) for k, s in enumerate(slices)]
        )
    else:
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
            setattr(ds, keyword, first.data_element(keyword).value)
        ds.RescaleSlope, ds.RescaleIntercept = first.RescaleSlope, first.RescaleIntercept
    ds.PixelData = np.stack([s.pixel_array for s in slices]).tobytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out
