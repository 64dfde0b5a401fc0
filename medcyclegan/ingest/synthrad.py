"""SynthRAD2023 Task 1 (brain) as an optional paired MR/CT source (``data.synthrad_dir``).

Layout: ``Task1/brain/<id>/{mr,ct,mask}.nii.gz`` (e.g. ``1BA001``): MR registered to CT on one
1 mm grid, CT outside the dilated body mask set to -1000. Each patient becomes one MR volume and
one CT volume with the same id. Training uses them unpaired (the two domains are streamed
independently, as CycleGAN requires); the subject-level split hashes the id, so a test patient's
MR *and* CT are both test, and the test patients' CT and mask serve as paired ground truth.
Discovery uses folder and file names only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Task 1 brain ids: task 1, B(rain), centre letter, three digits
ID_REGEX = r"1B[A-Z]\d{3}"
_ID = re.compile(rf"^{ID_REGEX}$")
FILES = {"mr": "mr.nii.gz", "ct": "ct.nii.gz", "mask": "mask.nii.gz"}


def brain_root(root) -> Path:
    """Accept ``.../Task1/brain``, ``.../Task1`` or the folder holding ``Task1``."""
    root = Path(root)
    for cand in (root, root / "brain", root / "Task1" / "brain"):
        if cand.is_dir() and any(_ID.match(e.name) for e in os.scandir(cand) if e.is_dir()):
            return cand
    raise FileNotFoundError(f"{root}: no SynthRAD2023 Task1 brain patient folders (like 1BA001/) found")


def find_patients(root) -> dict[str, str]:
    """``{id: patient folder}`` for folders holding both ``mr.nii.gz`` and ``ct.nii.gz``."""
    base = brain_root(root)
    out = {}
    for e in sorted(os.scandir(base), key=lambda e: e.name):
        if e.is_dir() and _ID.match(e.name) and all((Path(e.path) / FILES[k]).is_file() for k in ("mr", "ct")):
            out[e.name] = e.path
    return out


def is_patient_folder(path) -> bool:
    p = Path(path)
    return bool(_ID.match(p.name)) and (p / FILES["mr"]).is_file() and (p / FILES["ct"]).is_file()


def ingest(source, modality: str):
    """(image, info) of a patient's MR or CT, as the other readers return them (LPS, not resampled)."""
    from medcyclegan.ingest import geometry_info
    from medcyclegan.ingest.nifti import read_nifti_3d

    if modality not in ("mr", "ct"):
        raise ValueError(f"SynthRAD2023 Task 1 holds MR and CT, not {modality}")
    img = read_nifti_3d(Path(source) / FILES[modality])
    info = {
        "dataset": "SynthRAD2023 Task1 brain",
        "modality": modality.upper(),
        "file": FILES[modality],
        **geometry_info(img),
    }
    return img, info


def paired_files(source) -> dict:
    """Real CT and mask of a patient folder (the mask only when present)."""
    p = Path(source)
    out = {"ct": str(p / FILES["ct"])}
    if (p / FILES["mask"]).is_file():
        out["mask"] = str(p / FILES["mask"])
    return out
