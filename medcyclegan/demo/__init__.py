"""Built-in demo dataset: deterministic head phantoms in the exact raw CQ500 / OASIS-3 layouts.

Why: the workflow must be runnable end to end without downloading the (large, licence-bound)
real datasets, and its ingest code must be exercised on files that look like the real
downloads - not on a simplified format that only the demo produces.  So this package renders
one shared head phantom (real MNI152 brain from nilearn's offline files, plus synthetic skull,
scalp, face and neck) with per-subject size and pose, and writes:

* CQ500-style DICOM studies (three series, JPEG 2000 thin series, headrest and table),
* OASIS-3-style MR sessions (sagittal T1w NIfTI, not RAS-ordered, bias field, Rician noise),
* OASIS-3-style dynamic PET sessions (4D NIfTI, PIB/AV45, frame timing in both sidecar styles),
* ground-truth CT volumes in each MR/PET session's geometry (``<gt_root>/<session>_ct.nii.gz``).

Everything is a pure function of (index, seed).  The ``*_ids`` functions only compute names
(cheap: Snakemake calls them while building its DAG); the ``write_*`` functions render and write
atomically (:func:`medcyclegan.io.atomic.atomic_dir`: a hidden folder swapped into place).
"""

from medcyclegan.demo.cq500 import write_ct_study
from medcyclegan.demo.layout import ct_study_ids, mr_session_ids, pet_session_ids, volume_ids
from medcyclegan.demo.oasis import write_mr_session, write_pet_session

__all__ = [
    "ct_study_ids",
    "mr_session_ids",
    "pet_session_ids",
    "volume_ids",
    "write_ct_study",
    "write_mr_session",
    "write_pet_session",
]
