"""NIfTI files read into LPS physical space, with their geometry, voxel type and size checked.

SimpleITK (ITK's NIfTI reader) turns the qform/sform into LPS origin, spacing and direction.
:func:`read_nifti_3d` checks the result against nibabel's best affine (sform if set, else qform),
converted RAS -> LPS; a disagreement (qform and sform that differ, a sheared sform) or a file
without any orientation (qform_code = sform_code = 0) raises :class:`IngestError` rather than
guessing. ITK reads a truncated ``.nii.gz`` without an error (zeros for the missing voxels), so
the file's length is checked against its header first.

NIfTI-2 (64-bit dimensions, 540-byte header): ITK's NIfTI reader does not open it, so nibabel
reads the voxels and ITK reads the header converted to NIfTI-1 (same fields, by nibabel): every
geometry check above applies unchanged. A file neither reader opens is refused with each
reader's reason.

Documented fix (:func:`fix_nonfinite_voxels`; ITK reads NaN/Inf voxels as 0, so
:func:`read_nifti_3d` puts back what nibabel reads): a few NaN/Inf voxels (masked-out voxels of a
conversion) become the volume's background, its minimum finite value (air for CT, the darkest
background for MR/PET; 0 could be brighter than that); more than ``reject.max_nonfinite_fraction``
of the voxels means a broken file: rejected.
"""

from __future__ import annotations

import gzip
import os
import tempfile
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
    "load_nifti",
    "itk_header_geometry",
    "fix_nonfinite_voxels",
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
        img = load_nifti(path)
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
        itk_geometry = itk_header_geometry(p)
    o, sp, d = itk_geometry
    dim = len(o)
    if dim < 3:
        raise IngestError(f"{p}: the NIfTI header describes a {dim}D image; a 3D volume is expected here.")
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


def _reason(exc: Exception) -> str:
    """The last line of a reader's message (SimpleITK's start with a C++ source location)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def load_nifti(path: str | os.PathLike) -> nib.Nifti1Image:
    """nibabel's image (header; voxels on access). A file nibabel cannot open is refused with
    nibabel's and SimpleITK's reasons, so the message says what is wrong with it."""
    try:
        return nib.load(str(path))
    except Exception as exc:  # noqa: BLE001
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
            itk = "reads the header"
        except RuntimeError as itk_exc:
            itk = _reason(itk_exc)
        raise IngestError(
            f"{path}: cannot read the NIfTI file (nibabel: {_reason(exc)}; SimpleITK: {itk}). "
            f"Re-download or re-convert it."
        ) from exc


def is_nifti2(nimg: nib.Nifti1Image) -> bool:
    return isinstance(nimg, nib.Nifti2Image)


def itk_header_geometry(path: str | os.PathLike, nimg: nib.Nifti1Image | None = None) -> tuple:
    """``(origin, spacing, direction)`` as ITK reads the header (no voxels). A NIfTI-2 header is
    converted to NIfTI-1 by nibabel into a header-only temporary file, which ITK does read."""
    p = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
        return reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection()
    except RuntimeError as exc:
        nimg = load_nifti(p) if nimg is None else nimg
        if not is_nifti2(nimg):
            raise IngestError(f"{p}: SimpleITK cannot read the NIfTI header ({_reason(exc)}).") from exc
    try:
        hdr = nib.Nifti1Header.from_header(nimg.header, check=False)
    except Exception as exc:  # noqa: BLE001 - e.g. a dimension above NIfTI-1's 32767
        raise IngestError(f"{p}: NIfTI-2 header that NIfTI-1 cannot hold ({_reason(exc)}).") from exc
    hdr["sizeof_hdr"] = 348
    hdr.set_data_offset(352)
    with tempfile.TemporaryDirectory() as tmp:
        header_only = Path(tmp) / "header.nii"
        with open(header_only, "wb") as fh:
            hdr.write_to(fh)
        reader.SetFileName(str(header_only))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise IngestError(f"{p}: SimpleITK cannot read the NIfTI-2 header ({_reason(exc)}).") from exc
    return reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection()


def _image_from_nibabel(p: Path, nimg: nib.Nifti1Image, geometry: tuple) -> sitk.Image:
    """The voxels as nibabel reads them (scaled by scl_slope/inter, as ITK does) on ITK's geometry
    of the header; a single-volume 4D file gives its 3D volume."""
    try:
        data = np.asanyarray(nimg.dataobj)
    except Exception as exc:  # noqa: BLE001
        raise IngestError(f"{p}: nibabel cannot read the NIfTI voxel data ({_reason(exc)}).") from exc
    data = data.reshape(data.shape[:3])  # float32, as read_nifti_3d returns every image
    img = sitk.GetImageFromArray(np.ascontiguousarray(data.T, dtype=np.float32))  # i,j,k -> ITK's k,j,i
    origin, spacing, direction = geometry
    dim = len(origin)
    img.SetOrigin(tuple(origin[:3]))
    img.SetSpacing(tuple(spacing[:3]))
    img.SetDirection(tuple(np.asarray(direction, dtype=np.float64).reshape(dim, dim)[:3, :3].ravel()))
    return img


def _read_voxels(p: Path, nimg: nib.Nifti1Image) -> sitk.Image:
    """SimpleITK's image of the file; NIfTI-2, which it does not read, through nibabel. A reading
    failure names the reader and its reason (the file's length was checked: not truncated)."""
    if is_nifti2(nimg):
        return _image_from_nibabel(p, nimg, itk_header_geometry(p, nimg))
    try:
        return sitk.ReadImage(str(p))
    except RuntimeError as exc:
        try:
            np.asanyarray(nimg.dataobj[(0,) * len(nimg.shape)])
            nib_reason = "reads it"
        except Exception as nib_exc:  # noqa: BLE001
            nib_reason = _reason(nib_exc)
        raise IngestError(
            f"{p}: SimpleITK cannot read the NIfTI voxel data ({_reason(exc)}; nibabel: {nib_reason}). "
            f"Re-convert it (e.g. with dcm2niix)."
        ) from exc


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
    """Refuse a truncated NIfTI: the (decompressed) file must hold the header's voxel count, and
    no more.

    Needed because ITK reads a truncated ``.nii.gz`` without an error and fills the missing
    voxels with zeros (a silently wrong volume). A file longer than its header announces has a
    damaged header (a dimension, the frame count or ``vox_offset``): read as announced, its
    voxels would be shifted or frames lost, silently. A ``.gz`` is streamed, not loaded whole.
    """
    p = Path(path)
    hdr = nimg.header
    # the offset the voxels are read from (nibabel resets the loaded header's vox_offset to 0)
    offset = int(getattr(nimg.dataobj, "offset", hdr.get_data_offset()))
    expected = offset + int(np.prod(nimg.shape)) * np.dtype(nimg.get_data_dtype()).itemsize
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
    if got > expected:
        raise IngestError(
            f"{p}: the file holds {got} bytes, more than the {expected} its header announces "
            f"(data offset {offset}, shape {tuple(int(v) for v in nimg.shape)}): "
            f"the header is damaged. Re-download or re-convert it."
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
    nimg = load_nifti(p)
    check_nifti_dtype(p, nimg)
    check_complete(p, nimg)
    shape = tuple(int(v) for v in nimg.shape)
    if len(shape) < 3 or (len(shape) > 3 and int(np.prod(shape[3:])) != 1):
        raise IngestError(
            f"{p}: image has shape {shape}; a single 3D volume is expected here"
            + (" (this is a 4D/dynamic file: sum or select its frames first)." if len(shape) > 3 else ".")
        )
    origin, spacing, direction = nifti_affine_lps(p, nimg)
    img = _read_voxels(p, nimg)
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
    return _restore_nonfinite(p, nimg, img)


def _restore_nonfinite(p: Path, nimg: nib.Nifti1Image, img: sitk.Image) -> sitk.Image:
    """ITK's NIfTI reader silently reads NaN and +-Inf voxels as 0 (a wrong value, not a
    background); put back what the file holds, as nibabel reads it, so that
    :func:`fix_nonfinite_voxels` decides. Only floating-point files can hold them."""
    if np.dtype(nimg.get_data_dtype()).kind != "f":
        return img
    try:
        data = np.asanyarray(nimg.dataobj)
    except Exception as exc:  # noqa: BLE001
        raise IngestError(f"{p}: nibabel cannot read the NIfTI voxel data ({_reason(exc)}).") from exc
    zyx = data.reshape(data.shape[:3]).T  # nibabel i,j,k -> ITK's k,j,i array
    bad = ~np.isfinite(zyx)
    if not bad.any():
        return img
    arr = sitk.GetArrayFromImage(img)
    arr[bad] = zyx[bad]
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out


def fix_nonfinite_voxels(img: sitk.Image, info: dict, reject_cfg: dict, *, where: str) -> sitk.Image:
    """Documented fix: NaN/Inf voxels become the minimum finite value (the background) and the
    count is added to ``info["fixes"]``, when they are at most ``reject.max_nonfinite_fraction``
    of the image; more: :class:`IngestError` (a failed conversion or a corrupt file)."""
    arr = sitk.GetArrayViewFromImage(img)
    bad = ~np.isfinite(arr)
    n = int(np.count_nonzero(bad))
    if n == 0:
        return img
    limit = reject_cfg.get("max_nonfinite_fraction")
    if limit is None:
        from medcyclegan.config.validation import schema_defaults

        limit = schema_defaults("reject")["max_nonfinite_fraction"]
    fraction = n / arr.size
    if fraction > float(limit) or n == arr.size:
        raise IngestError(
            f"{where}: {fraction:.2%} of the voxels ({n} of {arr.size}) are NaN or infinite, more than "
            f"reject.max_nonfinite_fraction = {float(limit):g}: a failed conversion or a corrupt file. "
            f"Re-export or re-convert the scan, or raise reject.max_nonfinite_fraction."
        )
    fixed = np.array(arr, dtype=np.float32)
    background = float(fixed[~bad].min())
    kinds = {"NaN": np.isnan(arr), "+Inf": np.isposinf(arr), "-Inf": np.isneginf(arr)}
    counts = ", ".join(f"{int(np.count_nonzero(m))} {k}" for k, m in kinds.items() if m.any())
    fixed[bad] = background
    out = sitk.GetImageFromArray(fixed)
    out.CopyInformation(img)
    info["fixes"] = list(info.get("fixes", [])) + [
        f"{n} non-finite voxels ({counts}; {fraction:.3%} of the image) set to the background value "
        f"{background:g} (the minimum finite value)"
    ]
    return out
