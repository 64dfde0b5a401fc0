"""An MR (or static PET) DICOM series as hospitals export it: a series folder, or a study folder
holding several series, read with the CT reader's geometry checks.

Which series of a study is used (:func:`choose_series`), in order of the rules:

1. the modality must match (MR for ``mr``, PT for ``pet``); single-frame files only (Enhanced MR
   multi-frame objects are refused with that reason); at least ``min_slices`` files;
2. localizers and scouts are never used (ImageType ``LOCALIZER``, or a description, protocol or
   sequence name matching ``localizer|scout|survey|plan|3-plane``);
3. for MR, a T1-weighted series is required: its description, protocol or sequence name matches
   ``t1|mprage|mp-rage|mp2rage|spgr|bravo|tfl|tfe`` and does not match
   ``t2|flair|dwi|diff|swi|tof|pd|bold|perf|dti|adc``;
4. among the rest: 3D acquisitions (``MRAcquisitionType`` 3D) first, then the most slices, then
   the series found first.

The texts are read to choose, never written: the record names a series by its rank (``series 2 of
3``) and structured facts (slice count, acquisition type, orientation). The stack is built by
:func:`medcyclegan.ingest.ct_stack.read_ct_stack` (orientation, spacing, missing slices, duplicate
positions, sheared stacks), which works for any single-frame DICOM image series.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.ct_series import list_series
from medcyclegan.ingest.ct_stack import read_ct_stack
from medcyclegan.ingest.dicom_files import dcmread, dicom_files
from medcyclegan.privacy import free_text

log = logging.getLogger("medcyclegan.ingest")

DICOM_MODALITY = {"mr": "MR", "pet": "PT"}
MIN_SLICES = 20
_LOCALIZER = re.compile(r"localizer|localiser|scout|survey|\bplan\b|3[\s_-]?plane", re.IGNORECASE)
_T1 = re.compile(r"t1|mprage|mp-rage|mp2rage|spgr|bravo|tfl|tfe", re.IGNORECASE)
_NOT_T1 = re.compile(r"t2|flair|dwi|diff|swi|tof|\bpd\b|bold|perf|dti|adc", re.IGNORECASE)


@dataclass(frozen=True)
class ChosenSeries:
    """The series :func:`choose_series` picked, and why (no free text of the input)."""

    files: list[Path]
    header: pydicom.Dataset  #: the first file's header (patient and study for a DICOM sCT)
    rank: int  #: 1-based position among the study's series, in the order they were found
    n_series: int
    facts: dict[str, Any]  #: modality, slices, acquisition type
    others: list[str]  #: "series k of n: reason" for every series not taken


def is_dicom_folder(path) -> bool:
    """A folder with DICOM files somewhere below it and no NIfTI file (not an OASIS-3 session)."""
    folder = Path(str(path))
    if not folder.is_dir():
        return False
    if any(folder.rglob("*.nii")) or any(folder.rglob("*.nii.gz")):
        return False
    return any(dicom_files(Path(root)) for root, _, _ in os.walk(folder))


def _texts(header: pydicom.Dataset) -> list[str]:
    keys = ("SeriesDescription", "ProtocolName", "SequenceName")
    return [free_text(header.get(k, "") or "") for k in keys]  # read to choose, never written


def _series_facts(row: pd.Series) -> tuple[dict[str, Any], pydicom.Dataset | None]:
    files = list(row["files"])
    header = dcmread(files[0], headers_only=True) if files and not row["error"] else None
    facts = {
        "modality": str(row["modality"]),
        "n_slices": int(row["n_files"]),
        "frames_per_file": int(row["number_of_frames"] or 1),
        "acquisition": str(header.get("MRAcquisitionType", "") or "") if header is not None else "",
    }
    return facts, header


def _why_not(modality: str, facts: dict[str, Any], header: pydicom.Dataset | None, error: str) -> str:
    if error or header is None:
        return f"unreadable header ({error or 'no header'})"
    if facts["modality"] != DICOM_MODALITY[modality]:
        return f"Modality {facts['modality'] or 'missing'}, not {DICOM_MODALITY[modality]}"
    if facts["frames_per_file"] > 1:
        return f"multi-frame object ({facts['frames_per_file']} frames per file) is not supported"
    if facts["n_slices"] < MIN_SLICES:
        return f"{facts['n_slices']} slices < {MIN_SLICES}"
    texts = _texts(header)
    if "LOCALIZER" in str(header.get("ImageType", "")).upper() or any(_LOCALIZER.search(t) for t in texts):
        return "a localizer / scout"
    if modality == "mr" and not any(_T1.search(t) and not _NOT_T1.search(t) for t in texts):
        return "not T1-weighted (description, protocol and sequence name name no T1 sequence)"
    return ""


def choose_series(folder, modality: str) -> ChosenSeries:
    """The series of ``folder`` (a series or a study folder) to read, by the module's rules."""
    folder = Path(str(folder))
    if modality not in DICOM_MODALITY:
        raise ValueError(f"DICOM series input is for mr or pet, not {modality!r}")
    if not is_dicom_folder(folder):
        raise IngestError(f"{folder}: not a folder of DICOM files (or it also holds NIfTI files).")
    table = list_series(folder)
    n = len(table)
    candidates, others = [], []
    for i, row in table.iterrows():
        facts, header = _series_facts(row)
        why = _why_not(modality, facts, header, str(row["error"]))
        if why:
            others.append(f"series {i + 1} of {n}: {why}")
        else:
            candidates.append((facts["acquisition"] != "3D", -facts["n_slices"], i, facts, header))
    if not candidates:
        raise IngestError(
            f"{folder}: no usable {DICOM_MODALITY[modality]} series ({'; '.join(others)}). "
            "Give the folder of the T1-weighted series itself if its description does not name it."
            if modality == "mr"
            else f"{folder}: no usable PT series ({'; '.join(others)})."
        )
    candidates.sort(key=lambda c: c[:3])
    *_, best, facts, header = candidates[0]
    for *_, i, f, _h in candidates[1:]:
        others.append(
            f"series {i + 1} of {n}: candidate, not chosen ({f['n_slices']} slices, {f['acquisition'] or '?'})"
        )
    return ChosenSeries(list(table.loc[best, "files"]), header, int(best) + 1, n, facts, sorted(others))


def orientation_name(direction) -> str:
    """axial, coronal or sagittal when the slice normal is within 1 degree of an axis, else oblique."""
    normal = np.asarray(direction, float).reshape(3, 3)[:, 2]
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < np.cos(np.radians(1.0)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def read_dicom_series(folder, modality: str, chosen: ChosenSeries | None = None):
    """(image in LPS, info) of the chosen series of ``folder``; values as stored times the rescale."""
    chosen = chosen or choose_series(folder, modality)
    facts = chosen.facts
    log.info(
        "DICOM input: series %d of %d taken (%s, %d slices, %s); not used: %s",
        chosen.rank,
        chosen.n_series,
        facts["modality"],
        facts["n_slices"],
        facts["acquisition"] or "acquisition type not given",
        "; ".join(chosen.others) or "none",
    )
    img, details = read_ct_stack(Path(str(folder)), files=chosen.files, fill_value=0.0)
    info = {
        "source": "dicom series",
        "series": f"series {chosen.rank} of {chosen.n_series}",
        "series_facts": chosen.facts,
        "series_not_chosen": chosen.others,
        "orientation": orientation_name(img.GetDirection()),
        "native": {"size": list(img.GetSize()), "spacing": [round(s, 6) for s in img.GetSpacing()]},
        "fixes": details["fixes"],
        "n_files_skipped": details["n_files_skipped"],
        "rescale": details["rescale"],
    }
    return img, info
