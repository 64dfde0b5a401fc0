"""OASIS-3 sessions: locate the T1w MR / PET NIfTI by file name, read NIfTI into LPS physical space.

Accepted layouts (DESIGN.md section 2)::

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

NIfTI geometry: SimpleITK (ITK's NIfTI reader) turns the qform/sform into LPS origin, spacing and
direction. :func:`read_nifti_3d` checks the result against nibabel's best affine (sform if set,
else qform), converted RAS -> LPS; a disagreement (qform and sform that differ, a sheared sform)
or a file without any orientation (qform_code = sform_code = 0) raises :class:`IngestError`
rather than guessing.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medcyclegan.ingest import IngestError

__all__ = [
    "parse_session_name",
    "find_t1w",
    "find_pet",
    "find_sidecar",
    "load_sidecar",
    "nifti_affine_lps",
    "check_itk_agrees",
    "read_nifti_3d",
    "ingest_mr_session",
]

_SESSION_RE = re.compile(r"^(?P<subject>OAS\d+)_(?P<mod>[A-Za-z0-9]+)_d(?P<day>\d+)$")
_NII_RE = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_RUN_RE = re.compile(r"_run-(\d+)(?=_)")
_FOLDER_NUM_RE = re.compile(r"^(?:anat|pet)(\d+)$", re.IGNORECASE)

#: sidecar keys copied into ``info`` (acquisition parameters only: nothing identifying)
MR_SIDECAR_KEYS = (
    "Modality",
    "MagneticFieldStrength",
    "Manufacturer",
    "ManufacturersModelName",
    "SeriesDescription",
    "ProtocolName",
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
    m = _SESSION_RE.match(base)
    if not m:
        raise IngestError(
            f"{name}: not an OASIS-3 session name (expected 'OAS3xxxx_<MR|PIB|AV45|FDG>_dNNNN', "
            f"e.g. 'OAS30001_MR_d0129'). Rename the folder or point the config at the session folders."
        )
    return {"subject": m["subject"], "modality_or_tracer": m["mod"], "day": int(m["day"])}


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


def _find(session_dir, suffix: str, what: str, example: str) -> tuple[Path, Path | None, list[Path]]:
    session = _check_session(session_dir)
    found = _candidates(session, suffix)
    if not found:
        raise IngestError(
            f"{session}: no {what} image found (looked for files named '*_{suffix}.nii[.gz]', e.g. "
            f"'{example}', in any sub-folder). Check the download is complete, or leave the session out."
        )
    return found[0], find_sidecar(found[0]), found


def find_t1w(session_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """The session's T1w NIfTI and its JSON sidecar (or None), found by file NAMES only.

    Several T1w files: the lowest ``run-NN`` (none = 0), then lowest ``anatN``, then name.
    """
    nii, side, _ = _find(session_dir, "T1w", "T1w MR", "anat2/sub-OAS30001_ses-d0129_run-01_T1w.nii.gz")
    return nii, side


def find_pet(session_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """The session's PET NIfTI (``*_pet.nii[.gz]``; CT images ``*_ct.nii.gz`` are ignored) and its
    sidecar (same folder or ``BIDS/``), or None. Several PET files: same rule as :func:`find_t1w`."""
    nii, side, _ = _find(session_dir, "pet", "PET", "pet1/sub-OAS31463_ses-d0364_acq-PIB_pet.nii.gz")
    return nii, side


def load_sidecar(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """Read a JSON sidecar (None -> None); malformed JSON -> :class:`IngestError`."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise IngestError(f"{path}: cannot read the JSON sidecar ({exc}). Fix or remove the file.") from exc
    if not isinstance(data, dict):
        raise IngestError(f"{path}: JSON sidecar is not an object.")
    return data


# --------------------------------------------------------------------------------------------
# NIfTI geometry
# --------------------------------------------------------------------------------------------

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def nifti_affine_lps(
    path: str | os.PathLike, img: nib.Nifti1Image | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(origin, spacing, direction 3x3)`` in LPS from nibabel's best affine of a NIfTI file.

    Raises :class:`IngestError` when the file has no orientation (qform_code = sform_code = 0),
    or the affine is singular, non-finite or sheared (not representable by an ITK image).
    """
    if img is None:
        try:
            img = nib.load(str(path))
        except Exception as exc:  # noqa: BLE001
            raise IngestError(f"{path}: cannot read NIfTI ({exc}).") from exc
    hdr = img.header
    qcode = int(hdr["qform_code"]) if "qform_code" in hdr else 0
    scode = int(hdr["sform_code"]) if "sform_code" in hdr else 0
    if qcode == 0 and scode == 0:
        raise IngestError(
            f"{path}: NIfTI has no orientation (qform_code = sform_code = 0); the position of the "
            f"head in space is unknown. Re-convert the DICOM with dcm2niix."
        )
    aff = np.asarray(img.affine, dtype=np.float64)
    lin = _RAS_TO_LPS @ aff[:3, :3]
    origin = _RAS_TO_LPS @ aff[:3, 3]
    spacing = np.linalg.norm(lin, axis=0)
    if not (np.all(np.isfinite(lin)) and np.all(np.isfinite(origin)) and np.all(spacing > 1e-9)):
        raise IngestError(f"{path}: NIfTI affine is not finite or has a zero voxel size:\n{aff}")
    if abs(np.linalg.det(lin)) < 1e-6 * float(np.prod(spacing)):
        raise IngestError(
            f"{path}: NIfTI affine is not invertible (its axes are linearly dependent), so voxel "
            f"positions are undefined:\n{aff}\nRe-convert the DICOM with dcm2niix."
        )
    direction = lin / spacing
    gram = direction.T @ direction
    if not np.allclose(gram, np.eye(3), atol=1e-4):
        raise IngestError(
            f"{path}: NIfTI affine is sheared (axes not orthogonal), which an image grid cannot "
            f"represent without resampling:\n{aff}\nResample it to an orthogonal grid first."
        )
    return origin, spacing, direction


def _check_sitk_geometry(img: sitk.Image, path: Path) -> None:
    d = np.array(img.GetDirection(), dtype=np.float64).reshape(img.GetDimension(), -1)
    sp = np.array(img.GetSpacing(), dtype=np.float64)
    org = np.array(img.GetOrigin(), dtype=np.float64)
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(sp)) and np.all(np.isfinite(org))):
        raise IngestError(f"{path}: image geometry is not finite (direction/spacing/origin).")
    if np.any(sp <= 0) or abs(np.linalg.det(d)) < 1e-6:
        raise IngestError(f"{path}: image direction is not invertible or a spacing is <= 0.")


def check_itk_agrees(
    path: str | os.PathLike,
    origin: np.ndarray,
    spacing: np.ndarray,
    direction: np.ndarray,
    itk_geometry: tuple | None = None,
) -> None:
    """Raise :class:`IngestError` unless ITK's reading of the NIfTI header places the first three
    axes where nibabel's affine does (``origin``/``spacing``/``direction`` in LPS).

    ``itk_geometry``: ``(origin, spacing, direction)`` of an already read image; else the header
    is read (no pixel data). A disagreement means the qform and sform differ, or the sform is
    inconsistent with the voxel sizes: which one is right cannot be decided here.
    """
    p = Path(path)
    if itk_geometry is None:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise IngestError(f"{p}: SimpleITK cannot read the NIfTI header ({exc}).") from exc
        itk_geometry = (reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection())
    o, sp, d = itk_geometry
    dim = len(o)
    o = np.asarray(o, dtype=np.float64)[:3]
    sp = np.asarray(sp, dtype=np.float64)[:3]
    d = np.asarray(d, dtype=np.float64).reshape(dim, dim)[:3, :3]
    d_itk = d * sp
    d_nib = np.asarray(direction) * np.asarray(spacing)
    scale = float(np.max(spacing))
    if not (np.allclose(d_itk, d_nib, atol=1e-3 * scale) and np.allclose(o, origin, atol=1e-2 + 1e-3 * scale)):
        raise IngestError(
            f"{p}: the NIfTI qform and sform disagree (or the sform is inconsistent with the voxel "
            f"sizes): SimpleITK places the image at origin {np.round(o, 3).tolist()} "
            f"with axes {np.round(d_itk, 4).tolist()}, nibabel at {np.round(origin, 3).tolist()} "
            f"with axes {np.round(d_nib, 4).tolist()}. Fix the header (e.g. re-convert with dcm2niix)."
        )


def check_nifti_dtype(path: str | os.PathLike, nimg: nib.Nifti1Image) -> str | None:
    """Refuse voxel types that are not one real number per voxel (RGB, complex, structured);
    return a note when the type is accepted but unusual (float64, 64-bit integers: cast to
    float32, logged), else None."""
    dtype = np.dtype(nimg.get_data_dtype())
    if dtype.fields is not None or dtype.kind not in "biuf":
        kind = "RGB/structured" if dtype.fields is not None else ("complex" if dtype.kind == "c" else str(dtype))
        raise IngestError(
            f"{path}: NIfTI voxel type {dtype} ({kind}) is not an intensity image (one real value per "
            f"voxel expected). Re-convert the scan to a scalar image."
        )
    if dtype.itemsize > 4 or dtype.kind == "b":
        return f"voxel type {dtype} cast to float32"
    return None


def check_complete(path: str | os.PathLike, nimg: nib.Nifti1Image) -> None:
    """Refuse a truncated NIfTI: the (decompressed) file must hold the header's voxel count.

    Needed because ITK reads a truncated ``.nii.gz`` without an error and fills the missing
    voxels with zeros (a silently wrong volume). A ``.gz`` is streamed, not loaded whole.
    """
    p = Path(path)
    hdr = nimg.header
    expected = int(hdr.get_data_offset()) + int(np.prod(nimg.shape)) * np.dtype(nimg.get_data_dtype()).itemsize
    if p.name.lower().endswith(".gz"):
        got = 0
        try:
            with gzip.open(p, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    got += len(chunk)
        except (EOFError, OSError, zlib.error) as exc:
            raise IngestError(
                f"{p}: the file is truncated or corrupt ({type(exc).__name__}: {exc}). Re-download or re-convert it."
            ) from exc
    else:
        got = p.stat().st_size
    if got < expected:
        raise IngestError(
            f"{p}: the file is truncated: {got} bytes of the {expected} its header announces. "
            f"Re-download or re-convert it."
        )


def read_nifti_3d(path: str | os.PathLike) -> sitk.Image:
    """Read a 3D NIfTI with SimpleITK as float32, in LPS physical space, geometry checked.

    A 4D file with a single volume is accepted (the volume is extracted); a 4D file with several
    volumes, or fewer than 3 dimensions, raises :class:`IngestError`, as does a geometry that
    ITK and nibabel read differently (see the module docstring).
    """
    p = Path(path)
    if not p.is_file():
        raise IngestError(f"{p}: NIfTI file does not exist.")
    try:
        nimg = nib.load(str(p))
    except Exception as exc:  # noqa: BLE001
        raise IngestError(f"{p}: cannot read NIfTI header ({exc}).") from exc
    check_nifti_dtype(p, nimg)
    check_complete(p, nimg)
    shape = tuple(int(v) for v in nimg.shape)
    if len(shape) < 3 or (len(shape) > 3 and int(np.prod(shape[3:])) != 1):
        raise IngestError(
            f"{p}: image has shape {shape}; a single 3D volume is expected here"
            + (" (this is a 4D/dynamic file: sum or select its frames first)." if len(shape) > 3 else ".")
        )
    origin, spacing, direction = nifti_affine_lps(p, nimg)
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise IngestError(
            f"{p}: cannot read the NIfTI voxel data, the file is truncated or corrupt "
            f"({str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}). Re-download or re-convert it."
        ) from exc
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise IngestError(f"{p}: vector/RGB NIfTI is not supported (one value per voxel expected).")
    if img.GetDimension() == 4:
        size = list(img.GetSize())
        img = sitk.Extract(img, size[:3] + [0], [0, 0, 0, 0])
    if img.GetDimension() != 3:
        raise IngestError(f"{p}: SimpleITK read a {img.GetDimension()}D image; 3D expected.")
    _check_sitk_geometry(img, p)
    # ITK and nibabel must agree on where every voxel is
    check_itk_agrees(p, origin, spacing, direction, (img.GetOrigin(), img.GetSpacing(), img.GetDirection()))
    if img.GetPixelID() != sitk.sitkFloat32:
        img = sitk.Cast(img, sitk.sitkFloat32)
    return img


def geometry_info(img: sitk.Image) -> dict[str, Any]:
    """Size/spacing/origin/direction of an image as JSON-friendly lists."""
    return {
        "size": [int(v) for v in img.GetSize()],
        "spacing_mm": [round(float(v), 6) for v in img.GetSpacing()],
        "origin_mm": [round(float(v), 4) for v in img.GetOrigin()],
        "direction": [round(float(v), 6) for v in img.GetDirection()],
    }


def _rel(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


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
    nii, side, found = _find(session, "T1w", "T1w MR", "anat2/sub-OAS30001_ses-d0129_run-01_T1w.nii.gz")
    try:
        names = parse_session_name(session.name)
    except IngestError:
        names = {"subject": None, "modality_or_tracer": None, "day": None}
    sidecar = load_sidecar(side) or {}
    if str(sidecar.get("Modality", "MR")).upper() not in ("MR", ""):
        raise IngestError(f"{side}: sidecar says Modality '{sidecar.get('Modality')}', not MR, for a T1w file.")
    img = read_nifti_3d(nii)
    dtype_note = check_nifti_dtype(nii, nib.load(str(nii)))
    arr = sitk.GetArrayViewFromImage(img)
    if not np.all(np.isfinite(arr)):
        raise IngestError(f"{nii}: image contains NaN/Inf values.")
    info: dict[str, Any] = {
        "modality": "MR",
        "sequence": "T1w",
        "session": session.name,
        "subject": names["subject"],
        "day": names["day"],
        "file": _rel(nii, session),
        "sidecar": _rel(side, session),
        "candidates": [_rel(p, session) for p in found],
        "selection_rule": "lowest run-NN (no run = 0), then lowest anatN folder, then name",
        "sidecar_fields": {k: _json_value(sidecar[k]) for k in MR_SIDECAR_KEYS if k in sidecar},
        **geometry_info(img),
        "value_min": float(arr.min()),
        "value_max": float(arr.max()),
        "fixes": [dtype_note] if dtype_note else [],
    }
    return img, info
