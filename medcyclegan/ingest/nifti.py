"""NIfTI files read into LPS physical space, with their geometry, voxel type and size checked.

SimpleITK (ITK's NIfTI reader) turns the qform/sform into LPS origin, spacing and direction.
:func:`read_nifti_3d` checks the result against nibabel's best affine (sform if set, else qform),
converted RAS -> LPS; a disagreement (qform and sform that differ, a sheared sform) or a file
without any orientation (qform_code = sform_code = 0) raises :class:`IngestError` rather than
guessing. ITK reads a truncated ``.nii.gz`` without an error (zeros for the missing voxels), so
the file's length is checked against its header first.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medcyclegan.ingest import IngestError

__all__ = [
    "nifti_affine_lps",
    "check_itk_agrees",
    "check_nifti_dtype",
    "check_complete",
    "read_nifti_3d",
]

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
