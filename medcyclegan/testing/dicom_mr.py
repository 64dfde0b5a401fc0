"""MR DICOM series written from an image, as a scanner exports them, for the DICOM input tests.

One single-frame MR Image Storage file per slice along the image's third axis, with exact
ImagePositionPatient / ImageOrientationPatient / PixelSpacing, so any orientation (axial,
sagittal 3D, oblique) can be built from a phantom whose world geometry is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

#: identity the tests look for in every output (the DICOM sCT carries it on purpose; nothing else may)
PATIENT = {
    "PatientName": "MARKER^DICOMPATIENT",
    "PatientID": "MARKERPID0042",
    "PatientBirthDate": "19500101",
    "PatientSex": "F",
}


def _dataset(path: Path, study: dict, series_uid: str, series: dict) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.update(pydicom.Dataset(dict(_elements(PATIENT))))
    ds.StudyInstanceUID = study["StudyInstanceUID"]
    ds.FrameOfReferenceUID = study["FrameOfReferenceUID"]
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101010", "STUDYMARKER", "ACCMARKER"
    ds.ReferringPhysicianName = "MARKER^REFERRER"
    ds.PatientPosition = "HFS"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series.get("number", 1)
    ds.SeriesDescription = series.get("description", "T1 MPRAGE SAG")
    ds.ProtocolName = series.get("protocol", ds.SeriesDescription)
    ds.MRAcquisitionType = series.get("acquisition", "3D")
    ds.ImageType = series.get("image_type", ["ORIGINAL", "PRIMARY", "M", "ND"])
    return ds


def _elements(values: dict):
    for keyword, value in values.items():
        tag = pydicom.datadict.tag_for_keyword(keyword)
        yield tag, pydicom.DataElement(tag, pydicom.datadict.dictionary_VR(tag), value)


def write_mr_series(image: sitk.Image, folder: Path, *, study: dict | None = None, skip_slices=(), **series) -> dict:
    """Write ``image`` (integer values in int16 range) as an MR series in ``folder``; returns the
    study's UIDs (pass them back as ``study`` to put several series in one study). ``series``:
    ``description``, ``protocol``, ``acquisition``, ``image_type``, ``number``. ``skip_slices``:
    slice indices left out (a gap)."""
    folder.mkdir(parents=True, exist_ok=True)
    study = study or {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid()}
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing, origin = np.array(image.GetSpacing()), np.array(image.GetOrigin())
    array = sitk.GetArrayFromImage(image)  # [slice, row, column]
    series_uid = generate_uid()
    for k in range(array.shape[0]):
        if k in skip_slices:
            continue
        path = folder / f"IM{k + 1:05d}.dcm"
        ds = _dataset(path, study, series_uid, series)
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in origin + k * spacing[2] * direction[:, 2]]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing, column spacing
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(array[k].astype(np.int16)).tobytes()
        ds.save_as(path, enforce_file_format=True)
    return study
