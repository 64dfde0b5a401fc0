"""Rejection placeholders: valid files that stand in for the outputs of a rejected volume.

A per-volume job that meets bad input (:class:`~medcyclegan.errors.BadInput`) still writes every
output it promises, so the run goes on for the other volumes; each placeholder carries the
rejection row (:data:`COLUMNS`) that ends up in ``results/qc/rejected.csv``:

* a NIfTI: one voxel, ``descrip`` = :data:`NIFTI_MARK`, the row as JSON in a comment extension;
* a slice stack (``.npz``): zero slices, ``rejected=True`` and the row as ``reject_<column>``;
* an info ``.json``: ``status: rejected`` and the row under ``rejection``.

Here, in the I/O layer, so every stage can write and recognise them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from medcyclegan.io import atomic

#: the columns of ``results/qc/rejected.csv``, one rejection row each
COLUMNS = ["modality", "volume", "rule", "file", "reason", "action"]
NIFTI_MARK = b"medcyclegan REJECTED placeholder"
_NIFTI_COMMENT = 6  # NIfTI extension code of a comment


def write_rejected_nifti(path: str | os.PathLike, row: dict[str, str]) -> None:
    """A valid 1-voxel NIfTI marked as a rejection placeholder, carrying ``row`` (atomic write)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.zeros((1, 1, 1), dtype=np.uint8), np.eye(4))
    img.header["descrip"] = NIFTI_MARK
    img.header.extensions.append(nib.nifti1.Nifti1Extension(_NIFTI_COMMENT, json.dumps(row).encode()))
    atomic.write_nifti(path, img)


def rejected_npz_arrays(row: dict[str, str], *, subject: str, size: int) -> dict[str, Any]:
    """Arrays of a slice-stack placeholder: no slice (so TFRecords skip it), plus the row."""
    return {
        "images": np.zeros((0, size, size), dtype=np.float32),
        "slice": np.zeros(0, dtype=np.int64),
        "z_mm": np.zeros(0, dtype=np.float64),
        "volume": np.array(row["volume"]),
        "subject": np.array(subject),
        "modality": np.array(row["modality"]),
        "rejected": np.array(True),
        **{f"reject_{c}": np.array(str(row[c])) for c in COLUMNS},
    }


def npz_rejection(arrays) -> dict[str, str]:
    """The row carried by an ``.npz`` placeholder's arrays (a dict or an open ``NpzFile``; ""
    for columns it lacks)."""
    return {c: str(arrays[f"reject_{c}"]) if f"reject_{c}" in arrays else "" for c in COLUMNS}


def read_rejection(path: str | os.PathLike) -> dict[str, str] | None:
    """The rejection row carried by a placeholder (``.nii[.gz]``, ``.npz`` or info ``.json``), else None.

    Reads headers only (a NIfTI's data and an npz's images are never loaded).
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        hdr = nib.load(str(p)).header
        if bytes(hdr["descrip"].tobytes()).rstrip(b"\0") != NIFTI_MARK:
            return None
        for ext in hdr.extensions:
            if ext.get_code() == _NIFTI_COMMENT:
                return json.loads(ext.get_content().decode())
        return {c: "" for c in COLUMNS}
    if name.endswith(".npz"):
        with np.load(p) as f:
            if "rejected" not in f.files or not bool(f["rejected"]):
                return None
            return npz_rejection(f)
    if name.endswith(".json"):
        data = json.loads(p.read_text())
        return data.get("rejection") if data.get("status") == "rejected" else None
    raise ValueError(f"{p}: no rejection marker defined for this file type")
