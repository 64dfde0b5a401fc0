"""OASIS-3 sessions: locate the T1w MR / PET NIfTI (and sidecar) by file name; ingest the T1w MR.

Accepted layouts (the official download scripts, and the XNAT web client's ``NIFTI/`` +
``BIDS/`` folders)::

    OAS30001_MR_d0129/anat2/sub-OAS30001_ses-d0129_run-01_T1w.nii.gz   (+ .json)     official scripts
    OAS30001_MR_d0129/anat2/NIFTI/sub-OAS30001_ses-d0129_T1w.nii.gz
    OAS30001_MR_d0129/anat2/BIDS/sub-OAS30001_ses-d0129_T1w.json                       XNAT web client
    OAS31463_PIB_d0364/pet1/[NIFTI/]sub-OAS31463_ses-d0364_acq-PIB_pet.nii.gz (+ .json in the same
    folder or in BIDS/)

``ses-`` and ``sess-`` both occur, ``run-NN`` is optional, the ``anatN``/``petN`` number varies,
other images (T2w, FLAIR, ``func/``, ``dwi/``, a CT ``..._ct.nii.gz`` in PET sessions) are ignored.

Choice among several matching files (documented rule): the lowest ``run-NN`` number (a file
without ``run-`` counts as run 0, i.e. first), then the lowest ``anatN``/``petN`` folder number,
then the path name. The other candidates are reported in ``info``.

The NIfTI itself is read by :func:`medcyclegan.ingest.nifti.read_nifti_3d` (geometry checked).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medcyclegan.ingest import IngestError, geometry_info
from medcyclegan.ingest.discovery import OASIS_SESSION
from medcyclegan.ingest.nifti import check_nifti_dtype, read_nifti_3d
from medcyclegan.privacy import free_text_fields

__all__ = [
    "parse_session_name",
    "find_t1w",
    "find_pet",
    "find_sidecar",
    "load_sidecar",
    "find_session_image",
    "session_fields",
    "ingest_mr_session",
]

_NII_RE = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_RUN_RE = re.compile(r"_run-(\d+)(?=_)")
_FOLDER_NUM_RE = re.compile(r"^(?:anat|pet)(\d+)$", re.IGNORECASE)

#: sidecar keys copied into ``info``: acquisition parameters that are numbers or codes only (no
#: descriptions or names, which are free text: see medcyclegan.privacy)
MR_SIDECAR_KEYS = (
    "Modality",
    "MagneticFieldStrength",
    "ScanningSequence",
    "MRAcquisitionType",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "SliceThickness",
)


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------


def parse_session_name(name: str | os.PathLike) -> dict[str, Any]:
    """``OAS30001_MR_d0129`` -> ``{"subject": "OAS30001", "modality_or_tracer": "MR", "day": 129}``.

    Also accepts a path (its last component). ``day`` is the days since the subject's entry
    into the study (an int), never a date. Raises :class:`IngestError` on other names.
    """
    base = Path(str(name).rstrip("/\\")).name
    m = OASIS_SESSION.match(base)
    if not m:
        raise IngestError(
            f"{name}: not an OASIS-3 session name (expected 'OAS3xxxx_<MR|PIB|AV45|FDG>_dNNNN', "
            f"e.g. 'OAS30001_MR_d0129'). Rename the folder or point the config at the session folders."
        )
    return {"subject": m["subject"], "modality_or_tracer": m["kind"], "day": int(m["day"][1:])}


def _stem(path: Path) -> str:
    return _NII_RE.sub("", path.name)


def _folder_number(path: Path, session: Path) -> int:
    """Number of the ``anatN``/``petN`` folder above ``path`` (large when none)."""
    for parent in path.relative_to(session).parents:
        m = _FOLDER_NUM_RE.match(parent.name)
        if m:
            return int(m.group(1))
    return 10**9


def _candidates(session: Path, suffix: str) -> list[Path]:
    """Files under ``session`` whose name ends with ``_<suffix>.nii[.gz]`` sorted by the rule."""
    pat = re.compile(rf"_{re.escape(suffix)}\.nii(\.gz)?$")
    found = [p for p in session.rglob("*") if p.is_file() and not p.name.startswith(".") and pat.search(p.name)]

    def key(p: Path):
        m = _RUN_RE.search(p.name)
        return (int(m.group(1)) if m else 0, _folder_number(p, session), str(p))

    return sorted(found, key=key)


def find_sidecar(nifti: str | os.PathLike) -> Path | None:
    """The JSON sidecar of a NIfTI: same folder and stem, or ``BIDS/`` next to ``NIFTI/``
    (XNAT layout), or the parent ``anatN``/``petN`` folder; None when absent."""
    p = Path(nifti)
    name = _stem(p) + ".json"
    options = [p.parent / name, p.parent / "BIDS" / name]
    if p.parent.name.upper() == "NIFTI":
        options += [p.parent.parent / "BIDS" / name, p.parent.parent / name]
    for o in options:
        if o.is_file():
            return o
    return None


def _check_session(session_dir: str | os.PathLike) -> Path:
    session = Path(session_dir)
    if not session.is_dir():
        raise IngestError(f"{session}: OASIS-3 session folder does not exist or is not a folder.")
    return session


#: file-name suffix of each image kind -> (what it is, an example path for error messages)
_IMAGE_KINDS = {
    "T1w": ("T1w MR", "anat2/sub-OAS30001_ses-d0129_run-01_T1w.nii.gz"),
    "pet": ("PET", "pet1/sub-OAS31463_ses-d0364_acq-PIB_pet.nii.gz"),
}


def find_session_image(session_dir: str | os.PathLike, suffix: str) -> tuple[Path, Path | None, list[Path]]:
    """``(image, its sidecar or None, every candidate in rule order)`` for the files named
    ``*_<suffix>.nii[.gz]`` (``suffix``: "T1w" or "pet") anywhere in the session folder."""
    session = _check_session(session_dir)
    found = _candidates(session, suffix)
    if not found:
        what, example = _IMAGE_KINDS[suffix]
        raise IngestError(
            f"{session}: no {what} image found (looked for files named '*_{suffix}.nii[.gz]', e.g. "
            f"'{example}', in any sub-folder). Check the download is complete, or leave the session out."
        )
    return found[0], find_sidecar(found[0]), found


def find_t1w(session_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """The session's T1w NIfTI and its JSON sidecar (or None), found by file NAMES only.

    Several T1w files: the lowest ``run-NN`` (none = 0), then lowest ``anatN``, then name.
    """
    nii, side, _ = find_session_image(session_dir, "T1w")
    return nii, side


def find_pet(session_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """The session's PET NIfTI (``*_pet.nii[.gz]``; CT images ``*_ct.nii.gz`` are ignored) and its
    sidecar (same folder or ``BIDS/``), or None. Several PET files: same rule as :func:`find_t1w`."""
    nii, side, _ = find_session_image(session_dir, "pet")
    return nii, side


def load_sidecar(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """Read a JSON sidecar (None -> None); malformed JSON -> :class:`IngestError`."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, and text that is not UTF-8
        raise IngestError(f"{path}: cannot read the JSON sidecar ({exc}). Fix or remove the file.") from exc
    if not isinstance(data, dict):
        raise IngestError(f"{path}: JSON sidecar is not an object.")
    free_text_fields(data)  # descriptions, names: read, never written
    return data


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


def _rel(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def session_fields(session: Path, nii: Path, side: Path | None, found: list[Path]) -> dict[str, Any]:
    """The ``info`` entries every OASIS-3 session reader reports: ``session`` (folder name),
    ``subject`` / ``day`` (None for a name that is not an OASIS-3 session), ``file`` and
    ``sidecar`` (relative to the session folder) and ``candidates`` (in rule order)."""
    try:
        names = parse_session_name(session.name)
    except IngestError:
        names = {"subject": None, "day": None}
    return {
        "session": session.name,
        "subject": names["subject"],
        "day": names["day"],
        "file": _rel(nii, session),
        "sidecar": _rel(side, session),
        "candidates": [_rel(p, session) for p in found],
    }


def _json_value(v: Any) -> Any:
    if isinstance(v, (str, bool, int)) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return str(v)


def ingest_mr_session(session_dir: str | os.PathLike) -> tuple[sitk.Image, dict[str, Any]]:
    """Ingest the T1w MR of one OASIS-3 session (float32, LPS, scanner grid, not resampled).

    ``info``: ``modality`` ("MR"), ``sequence`` ("T1w"), ``session`` (folder name),
    ``subject`` / ``day`` (OASIS pseudonymous id and day number), ``file`` and ``sidecar``
    (paths relative to the session folder), ``candidates`` (all T1w files found, in rule order),
    ``selection_rule``, ``sidecar_fields`` (acquisition parameters from
    :data:`MR_SIDECAR_KEYS`), geometry (``size``, ``spacing_mm``, ``origin_mm``, ``direction``)
    and ``value_min`` / ``value_max``.
    """
    session = _check_session(session_dir)
    nii, side, found = find_session_image(session, "T1w")
    sidecar = load_sidecar(side) or {}
    if str(sidecar.get("Modality", "MR")).upper() not in ("MR", ""):
        raise IngestError(f"{side}: sidecar says Modality '{sidecar.get('Modality')}', not MR, for a T1w file.")
    img = read_nifti_3d(nii)
    dtype_note = check_nifti_dtype(nii, nib.load(str(nii)))
    arr = sitk.GetArrayViewFromImage(img)
    finite = arr[np.isfinite(arr)]  # NaN/Inf voxels: fixed or refused by ingest.volume (reject config)
    info: dict[str, Any] = {
        "modality": "MR",
        "sequence": "T1w",
        **session_fields(session, nii, side, found),
        "selection_rule": "lowest run-NN (no run = 0), then lowest anatN folder, then name",
        "sidecar_fields": {k: _json_value(sidecar[k]) for k in MR_SIDECAR_KEYS if k in sidecar},
        **geometry_info(img),
        "value_min": float(finite.min()) if finite.size else None,
        "value_max": float(finite.max()) if finite.size else None,
        "fixes": [dtype_note] if dtype_note else [],
    }
    return img, info
