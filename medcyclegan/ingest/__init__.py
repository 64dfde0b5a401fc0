"""Ingest of one raw study/session into a SimpleITK image in physical (LPS) space.

* :mod:`medcyclegan.ingest.ct`          -- qure.ai CQ500 head CT: one study, end to end
* :mod:`medcyclegan.ingest.ct_series`   -- the series of a CT study and the selection policy
* :mod:`medcyclegan.ingest.ct_stack`    -- slices of one series stacked into an image (geometry)
* :mod:`medcyclegan.ingest.dicom_files` -- DICOM files: recognising, reading, decoding to HU
* :mod:`medcyclegan.ingest.dicom_checks` -- DICOM header checks: one image file's, a series' rescale
* :mod:`medcyclegan.ingest.zipped_study` -- a CT study read in place from its zip (CQ500 download)
* :mod:`medcyclegan.ingest.enhanced_ct` -- multi-frame Enhanced CT: each frame one slice
* :mod:`medcyclegan.ingest.dicom_series` -- an MR/PET DICOM series or study (hospital exports)
* :mod:`medcyclegan.ingest.nifti`       -- NIfTI reading with checked geometry
* :mod:`medcyclegan.ingest.oasis`       -- OASIS-3 session layouts, T1w MR
* :mod:`medcyclegan.ingest.pet`         -- OASIS-3 dynamic PET: tracer, frame window, frame sum
* :mod:`medcyclegan.ingest.pet_timing`  -- PET frame timing from the JSON sidecar
* :mod:`medcyclegan.ingest.synthrad`    -- SynthRAD2023 Task 1 patient folders
* :mod:`medcyclegan.ingest.discovery`   -- studies and sessions found from folder names only
* :mod:`medcyclegan.ingest.sample_sheet` -- the sample sheet: cohorts in no known layout
* :mod:`medcyclegan.ingest.volume`      -- one raw volume of any modality: its reader and checks

Every reader returns images in SimpleITK's LPS physical convention with the scanner's
origin/spacing/direction (NOT resampled: the canonical-grid resampling happens later), plus an
``info`` dict that is JSON-serialisable and carries no patient-identifying values.

Whenever an input cannot be processed correctly an :class:`IngestError` is raised, naming the
file/folder, the reason and what to do. No function silently produces a wrong volume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medcyclegan.errors import BadInput

if TYPE_CHECKING:  # SimpleITK is not imported here: discovery must import fast
    import SimpleITK as sitk

__all__ = ["IngestError", "geometry_info"]


class IngestError(BadInput):
    """An input study/session/file cannot be ingested correctly.

    The message names the offending file or folder, the reason, and (where possible) what to do.
    A :class:`~medcyclegan.errors.BadInput`: the workflow rejects the volume (a row in
    ``results/qc/rejected.csv``) instead of failing the run.
    """


def geometry_info(img: sitk.Image) -> dict[str, Any]:
    """Size/spacing/origin/direction of an image as JSON-friendly lists (every reader's ``info``)."""
    return {
        "size": [int(v) for v in img.GetSize()],
        "spacing_mm": [round(float(v), 6) for v in img.GetSpacing()],
        "origin_mm": [round(float(v), 4) for v in img.GetOrigin()],
        "direction": [round(float(v), 6) for v in img.GetDirection()],
    }
