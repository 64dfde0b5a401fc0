"""Ingest of one raw study/session into a SimpleITK image in physical (LPS) space.

* :mod:`medcyclegan.ingest.ct`    -- qure.ai CQ500 head CT (DICOM series, series selection)
* :mod:`medcyclegan.ingest.oasis` -- OASIS-3 session layouts, NIfTI reading, T1w MR
* :mod:`medcyclegan.ingest.pet`   -- OASIS-3 dynamic PET: frame timing, tracer window, frame sum

Every reader returns images in SimpleITK's LPS physical convention with the scanner's
origin/spacing/direction (NOT resampled: the canonical-grid resampling happens later), plus an
``info`` dict that is JSON-serialisable and carries no patient-identifying values.

Whenever an input cannot be processed correctly an :class:`IngestError` is raised, naming the
file/folder, the reason and what to do. No function silently produces a wrong volume.
"""

from __future__ import annotations

from medcyclegan.errors import BadInput

__all__ = ["IngestError"]


class IngestError(BadInput):
    """An input study/session/file cannot be ingested correctly.

    The message names the offending file or folder, the reason, and (where possible) what to do.
    A :class:`~medcyclegan.errors.BadInput`: the workflow rejects the volume (a row in
    ``results/qc/rejected.csv``) instead of failing the run.
    """
