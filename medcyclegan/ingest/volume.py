"""One raw volume of a modality, read and checked: the ingest stage that the workflow's ``ingest``
job and ``medcyclegan predict`` share.

:func:`read_volume` picks the reader for the source (CQ500 study, OASIS-3 session, SynthRAD2023
patient folder, one MR/PET NIfTI file, or an MR/PET DICOM series or study folder); :func:`check_plausible` holds the checks every
modality passes before anything is written; :func:`read_plausible_volume` does both.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medcyclegan.errors import BadInput

log = logging.getLogger("medcyclegan")


def read_volume(modality: str, source, *, ct_series=None, pet=None, tracer: str | None = None):
    """(image in LPS, info) of one raw volume, on the scanner's grid (not resampled).

    ``source``: a study/session/patient folder, (CT) a CQ500 study zip read in place
    (:mod:`medcyclegan.ingest.zipped_study`), or (MR, PET) a ``.nii``/``.nii.gz`` file or a
    folder of DICOM files (one series, or a study: :mod:`medcyclegan.ingest.dicom_series`);
    ``tracer`` only serves a dynamic PET file whose name and sidecar do not tell it.
    """
    from medcyclegan.ingest import ct as ct_ingest
    from medcyclegan.ingest import dicom_series, oasis
    from medcyclegan.ingest import pet as pet_ingest
    from medcyclegan.ingest.synthrad import ingest as synthrad_ingest
    from medcyclegan.ingest.synthrad import is_patient_folder

    if modality in ("ct", "mr") and is_patient_folder(source):  # SynthRAD2023 Task1 (data.synthrad_dir)
        return synthrad_ingest(source, modality)
    if modality in ("mr", "pet") and _is_file(source):
        return read_nifti_file(modality, source, pet=pet, tracer=tracer)
    if modality in ("mr", "pet") and dicom_series.is_dicom_folder(source):  # a hospital export
        img, info = dicom_series.read_dicom_series(source, modality)
        return img, {"modality": modality.upper(), **info}
    if modality == "ct":
        return ct_ingest.ingest_ct_study(source, ct_series)
    if modality == "mr":
        return oasis.ingest_mr_session(source)
    if modality == "pet":
        return pet_ingest.ingest_pet_session(
            source,
            windows_min=pet["windows_min"],
            fallback_frames=pet["fallback_frames"],
            min_window_coverage=pet["min_window_coverage"],
        )
    raise ValueError(f"unknown modality {modality!r}")


def _is_file(source) -> bool:
    """A file, or a NIfTI name (a missing file is then reported as a missing file, not session)."""
    path = Path(str(source))
    return path.is_file() or path.name.endswith((".nii", ".nii.gz"))


def read_nifti_file(modality: str, path, *, pet=None, tracer: str | None = None):
    """(image, info) of one MR or PET NIfTI outside a session folder; a dynamic PET is summed over
    the tracer's window (``pet``: the config's ``pet`` settings) as a session's PET is."""
    from medcyclegan.ingest import geometry_info, oasis
    from medcyclegan.ingest.nifti import load_nifti, read_nifti_3d

    shape = load_nifti(path).shape
    if modality == "pet" and len(shape) == 4 and shape[3] > 1:
        from medcyclegan.ingest import pet as pet_ingest

        sidecar = oasis.load_sidecar(oasis.find_sidecar(path))
        tracer = tracer or pet_ingest.tracer_of(Path(path).parent.name, sidecar, filename=Path(path).name)
        img, info = pet_ingest.sum_pet(
            path, sidecar, tracer, pet["windows_min"], pet["fallback_frames"], pet["min_window_coverage"]
        )
        log.info("%s: dynamic PET, %s", path, info["rule"])
        return img, {"modality": "PET", "file": Path(path).name, **info}
    img = read_nifti_3d(path)
    return img, {"modality": modality.upper(), "file": Path(path).name, **geometry_info(img)}


def check_plausible(modality: str, img: sitk.Image, info: dict, cfg: dict, *, where: str) -> list[str]:
    """Checks every modality passes before anything is written; returns notes of documented fixes.

    A volume whose field of view is smaller than ``reject.min_extent_mm`` along an axis cannot
    hold a head; NaN or infinite values mean a broken file; a constant volume (e.g. all zero)
    holds no image; CT values must be Hounsfield
    units (:func:`medcyclegan.ingest.ct.check_hu_plausible`).
    """
    from medcyclegan.ingest.ct import check_hu_plausible

    extent = np.array(img.GetSize(), dtype=float) * np.array(img.GetSpacing(), dtype=float)
    min_extent = float(cfg.get("min_extent_mm", 0.0))
    if np.any(extent < min_extent):
        raise BadInput(
            f"{where}: the image covers only {' x '.join(f'{e:.0f}' for e in extent)} mm, less than "
            f"reject.min_extent_mm = {min_extent:g} mm along an axis: far too small to contain a head. "
            f"Check that the right file was exported, or lower reject.min_extent_mm."
        )
    arr = sitk.GetArrayViewFromImage(img)
    if not np.isfinite(arr).all():
        raise BadInput(
            f"{where}: the image holds NaN or infinite values: a failed conversion or a corrupt file. "
            f"Re-export or re-convert the scan, or leave it out."
        )
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        raise BadInput(
            f"{where}: every voxel of the image is {lo:g}: there is no image in it (empty export or "
            f"failed conversion). Re-export or re-convert the scan, or leave it out."
        )
    notes = []
    if modality == "ct":
        series = str(info.get("series_folder", ""))
        check_hu_plausible(img, f"{where}/{series}" if series else where, info)
        if any("absent" in r for r in info.get("rescale", [])):
            notes.append(
                "RescaleSlope/RescaleIntercept absent: stored values used as HU (they show air at "
                "about -1000 HU, so they already are HU)"
            )
    return notes


def read_plausible_volume(
    modality: str, source, *, ct_series=None, pet=None, reject_cfg: dict | None = None, tracer: str | None = None
):
    """:func:`read_volume` then :func:`check_plausible`; the notes of documented fixes are added to
    ``info["fixes"]``. Raises :class:`~medcyclegan.errors.BadInput` for a volume to reject."""
    from medcyclegan.ingest.nifti import fix_nonfinite_voxels

    img, info = read_volume(modality, source, ct_series=ct_series, pet=pet, tracer=tracer)
    img = fix_nonfinite_voxels(img, info, reject_cfg or {}, where=str(source))
    fixes = check_plausible(modality, img, info, reject_cfg or {}, where=str(source))
    info["fixes"] = list(info.get("fixes", [])) + fixes
    return img, info
