"""Stack the slices of one CT series into a SimpleITK image in LPS physical space.

Geometry rules:

* slices are ordered by ImagePositionPatient projected on the slice normal
  (row cosine x column cosine of ImageOrientationPatient) -- never by file name, InstanceNumber
  or SliceLocation;
* z spacing and origin come from every slice at once: a least-squares line
  ``position_k = first + k * spacing`` through the sorted projected positions (k = index after
  sorting), so positions written with few decimals (1.25 mm steps stored as 1.2/1.3 mm) or with
  small jitter give the true spacing instead of one rounded step. Every slice must lie within
  ``max(POSITION_ROUNDING_MM, spacing_tolerance * spacing)`` of that line, otherwise
  :class:`IngestError` naming the files: a missing slice moves every later slice by a whole
  spacing (at least half a spacing off the best line), two spacings in one series drift off it;
* spacing (x, y, z) = (PixelSpacing[1], PixelSpacing[0], fitted spacing); origin =
  ImagePositionPatient of the first slice moved along the normal onto the fitted line; direction
  columns = (row cosine, column cosine, normal). DICOM patient coordinates are LPS, as SimpleITK's;
* orientation, matrix size and pixel spacing must agree between slices, otherwise
  :class:`IngestError`;
* gantry tilt (slices whose positions move in-plane from slice to slice -- a sheared stack that
  an orthogonal image grid cannot represent) is either corrected, by shifting every slice in-plane
  onto an orthogonal grid (linear interpolation; the grid is enlarged to keep every slice's field
  of view; new pixels get ``fill_value``), or refused (``gantry_tilt="error"``).

Documented fixes (each recorded in ``details["fixes"]``): files that are not images are skipped
(:mod:`~medcyclegan.ingest.dicom_files`), a few images with another orientation (a
localizer/scout) are dropped, an exact duplicate slice is kept once.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.dicom_files import dicom_files, read_slices, slice_fixes, transfer_syntax_name
from medcyclegan.ingest.enhanced_ct import expand_frames
from medcyclegan.ingest.zipped_study import ZipMember

#: in-plane drift (pixels) of the slice positions above which the stack counts as tilted
TILT_DRIFT_PIXELS = 0.05
#: how far (mm) a slice may lie from the fitted line whatever its spacing: positions written with
#: one decimal are up to 0.05 mm off, and the line fitted through them (short series) up to as
#: much again; a missing slice is at least half a spacing off
POSITION_ROUNDING_MM = 0.1


def slice_axes(iop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row cosine, column cosine and their cross product (the slice normal) of an IOP."""
    r = np.asarray(iop[:3], dtype=np.float64)
    c = np.asarray(iop[3:], dtype=np.float64)
    return r, c, np.cross(r, c)


# --------------------------------------------------------------------------------------------
# the slices
# --------------------------------------------------------------------------------------------


def _series_files(folder: Path, files: list[Path] | None) -> list[Path]:
    if files is None:
        if not folder.is_dir():
            raise IngestError(f"{folder}: CT series folder does not exist.")
        files = dicom_files(folder)
    files = [f if isinstance(f, ZipMember) else Path(f) for f in files]  # members of a study zip stay
    if not files:
        raise IngestError(f"{folder}: no DICOM files in the series folder.")
    return files


def _load_slices(folder: Path, files: list[Path], workers: int | None) -> tuple[list[dict[str, Any]], int, list[str]]:
    """The image slices (each with its ``file``), the number of skipped files and the fixes."""
    slices, skipped, fixes = [], 0, []
    for f, s in expand_frames(files, read_slices(files, workers)):  # an Enhanced CT frame is a slice
        if s["skip"]:
            skipped += 1
            fixes.append(f"skipped {f.name}: {s['reason']}")
            continue
        s["file"] = f
        slices.append(s)
    if not slices:
        raise IngestError(f"{folder}: none of the {len(files)} DICOM files holds pixel data.")
    return slices, skipped, fixes


def _drop_odd_orientations(slices: list[dict[str, Any]], folder: Path, fixes: list[str]) -> list[dict[str, Any]]:
    """Documented fix: a few images whose orientation differs from the rest (a localizer/scout
    saved into the series) are dropped and logged. If they are more than
    ``max(2, 5 %)`` of the images, the folder mixes acquisitions and is refused later."""
    keys = [tuple(np.round(s["iop"], 3)) for s in slices]
    counts: dict[tuple, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    if len(counts) < 2:
        return slices
    main = max(counts, key=lambda k: counts[k])
    odd = len(slices) - counts[main]
    if odd > max(2, int(0.05 * len(slices))):
        return slices  # too many to be a localizer: the orientation check explains
    kept = []
    for s, k in zip(slices, keys):
        if k == main:
            kept.append(s)
        else:
            fixes.append(
                f"dropped {s['file'].name}: orientation {list(k)} differs from the series' "
                f"{list(main)} (a localizer/scout image)"
            )
    return kept


def _check_one_acquisition(slices: list[dict[str, Any]], folder: Path) -> None:
    """One SeriesInstanceUID, and the same orientation, matrix size and pixel spacing throughout."""
    uids = {s["series_uid"] for s in slices if s["series_uid"]}
    if len(uids) > 1:
        raise IngestError(
            f"{folder}: the folder mixes {len(uids)} DICOM series (different SeriesInstanceUID); "
            f"separate them into one folder per series."
        )
    ref = slices[0]
    for s in slices[1:]:
        if not np.allclose(s["iop"], ref["iop"], atol=1e-4):
            raise IngestError(
                f"{folder}: slices have different ImageOrientationPatient ({s['file'].name}: "
                f"{s['iop'].round(5).tolist()} vs {ref['file'].name}: {ref['iop'].round(5).tolist()}); "
                f"the folder mixes acquisitions (e.g. a localizer). Remove the odd files or pick another series."
            )
        if s["shape"] != ref["shape"]:
            raise IngestError(
                f"{folder}: slices have different matrix sizes ({s['file'].name}: {s['shape']} vs "
                f"{ref['file'].name}: {ref['shape']})."
            )
        if not np.allclose(s["ps"], ref["ps"], rtol=1e-4, atol=1e-6):
            raise IngestError(
                f"{folder}: slices have different PixelSpacing ({s['file'].name}: {s['ps'].tolist()} "
                f"vs {ref['file'].name}: {ref['ps'].tolist()})."
            )


def _orthonormal_axes(iop: np.ndarray, folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and normal unit vectors (the column re-orthogonalised against the row)."""
    r, c, _ = slice_axes(iop)
    if abs(np.linalg.norm(r) - 1) > 1e-3 or abs(np.linalg.norm(c) - 1) > 1e-3 or abs(np.dot(r, c)) > 1e-3:
        raise IngestError(f"{folder}: ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors.")
    r = r / np.linalg.norm(r)
    c = c - np.dot(c, r) * r
    c = c / np.linalg.norm(c)
    return r, c, np.cross(r, c)


def _drop_exact_duplicates(slices: list[dict[str, Any]], proj: np.ndarray, fixes: list[str]) -> list[int]:
    """Documented fix: a slice stored twice (same position, identical pixel values) is kept once."""
    keep = [0]
    for i in range(1, len(slices)):
        j = keep[-1]
        if (
            abs(proj[i] - proj[j]) < 1e-3
            and slices[i]["shape"] == slices[j]["shape"]
            and np.array_equal(slices[i]["hu"], slices[j]["hu"])
        ):
            fixes.append(f"dropped {slices[i]['file'].name}: exact duplicate of {slices[j]['file'].name}")
            continue
        keep.append(i)
    return keep


def _sort_along_normal(
    slices: list[dict[str, Any]], normal: np.ndarray, fixes: list[str]
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Slices in ascending position along ``normal`` (exact duplicates dropped), their
    ImagePositionPatient rows and projected positions."""
    ipp = np.stack([s["ipp"] for s in slices])
    proj = ipp @ normal
    order = np.argsort(proj, kind="stable")
    slices = [slices[i] for i in order]
    ipp = ipp[order]
    proj = proj[order]
    keep = _drop_exact_duplicates(slices, proj, fixes)
    return [slices[i] for i in keep], ipp[keep], proj[keep]


# --------------------------------------------------------------------------------------------
# spacing and gantry tilt
# --------------------------------------------------------------------------------------------


def _fit_positions(
    slices: list[dict[str, Any]], proj: np.ndarray, thickness: float, folder: Path, spacing_tolerance: float
) -> tuple[float, float, dict[str, Any]]:
    """``(z spacing, fitted position of the first slice, fit facts)``: the least-squares line
    through every projected position (one rounded step would set the spacing of the whole
    stack); refuses shared positions and slices off the line (gaps, variable spacing)."""
    if len(slices) == 1:
        dz = thickness
        if not (math.isfinite(dz) and dz > 0):
            raise IngestError(f"{folder}: single slice without SliceThickness: the z spacing is unknown.")
        return dz, float(proj[0]), {"z_spacing_source": "SliceThickness (single slice)", "z_fit_max_residual_mm": 0.0}
    steps = np.diff(proj)
    if np.any(steps < 1e-3):
        k = int(np.argmin(steps))
        raise IngestError(
            f"{folder}: two slices share the position {proj[k]:.3f} mm along the slice normal "
            f"({slices[k]['file'].name}, {slices[k + 1]['file'].name}): duplicated slices or "
            f"several acquisitions in one folder. Pick another series or remove the duplicates."
        )
    index = np.arange(len(proj), dtype=np.float64)
    dz, first = (float(v) for v in np.polyfit(index, proj, 1))
    residuals = proj - (first + dz * index)
    worst = float(np.max(np.abs(residuals)))
    tol = max(POSITION_ROUNDING_MM, spacing_tolerance * dz)
    if worst > tol:
        _refuse_non_uniform(slices, proj, steps, residuals, dz, tol, folder)
    return (
        dz,
        first,
        {
            "z_spacing_source": f"least-squares line through the {len(proj)} slice positions "
            f"(ImagePositionPatient along the slice normal)",
            "z_fit_max_residual_mm": round(worst, 4),
            "z_fit_tolerance_mm": round(tol, 4),
        },
    )


def _refuse_non_uniform(slices, proj, steps, residuals, dz, tol, folder) -> None:
    """The error for positions off a uniform grid, naming the files around each odd step (a
    gap's step is a whole spacing too long) or, for a slow drift, the slice farthest off."""
    name = [s["file"].name for s in slices]
    bad = np.nonzero(np.abs(steps - dz) > tol)[0]
    if bad.size:
        details = ", ".join(
            f"{steps[k]:.3f} mm between {name[k]} ({proj[k]:.3f}) and {name[k + 1]} ({proj[k + 1]:.3f})"
            for k in bad[:5]
        ) + (" ..." if bad.size > 5 else "")
    else:
        k = int(np.argmax(np.abs(residuals)))
        details = f"{name[k]} ({proj[k]:.3f}) lies {residuals[k]:+.3f} mm off the grid"
    raise IngestError(
        f"{folder}: slice spacing is not uniform (fitted {dz:.4f} mm, steps {steps.min():.3f}-"
        f"{steps.max():.3f} mm, a slice up to {np.max(np.abs(residuals)):.3f} mm off the uniform grid, "
        f"tolerance {tol:.3f} mm): {details}. Missing slices or a variable-spacing series; pick "
        f"another series or leave this study out."
    )


def _in_plane_drift(ipp, proj, r, c, n, sx, sy) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-slice in-plane shift (x, y pixels) of the positions, the largest drift (pixels) and
    the tilt angle (degrees): a gantry tilt shears the stack."""
    d = ipp - ipp[0] - np.outer(proj - proj[0], n)
    shift_x = d @ r / sx  # pixels along the row direction (x, column index)
    shift_y = d @ c / sy  # pixels along the column direction (y, row index)
    nz = len(proj)
    drift = float(np.max(np.hypot(shift_x, shift_y))) if nz > 1 else 0.0
    tilt_deg = 0.0
    if nz > 1:
        span = proj[-1] - proj[0]
        tilt_deg = float(np.degrees(np.arctan2(np.linalg.norm(d[-1]), span)))
    return shift_x, shift_y, drift, tilt_deg


def _shift_onto_orthogonal_grid(
    vol: np.ndarray, shift_x: np.ndarray, shift_y: np.ndarray, fill_value: float
) -> tuple[np.ndarray, int, int]:
    """Every slice shifted in-plane by its drift (linear interpolation) on a grid enlarged to
    keep every slice's field of view; returns the volume and the pixels added before x and y."""
    from scipy import ndimage

    lo_x = int(math.ceil(max(0.0, -shift_x.min())))
    hi_x = int(math.ceil(max(0.0, shift_x.max())))
    lo_y = int(math.ceil(max(0.0, -shift_y.min())))
    hi_y = int(math.ceil(max(0.0, shift_y.max())))
    nz, ny, nx = vol.shape
    out = np.full((nz, ny + lo_y + hi_y, nx + lo_x + hi_x), fill_value, dtype=np.float32)
    for k in range(nz):
        padded = np.full(out.shape[1:], fill_value, dtype=np.float64)
        padded[lo_y : lo_y + ny, lo_x : lo_x + nx] = vol[k]
        out[k] = ndimage.shift(padded, (shift_y[k], shift_x[k]), order=1, mode="constant", cval=fill_value)
    return out, lo_x, lo_y


# --------------------------------------------------------------------------------------------
# the image
# --------------------------------------------------------------------------------------------


def _stack_hu(slices: list[dict[str, Any]]) -> np.ndarray:
    """``[z, y, x]`` float32 HU of the sorted slices in one preallocated array; each slice's own
    array is released once copied, so the series is not held twice (``np.stack`` of the list
    would be: 2 x 420 MB for 400 slices of 512x512)."""
    ny, nx = slices[0]["shape"]
    vol = np.empty((len(slices), ny, nx), dtype=np.float32)
    for k, s in enumerate(slices):
        vol[k] = s["hu"]
        s["hu"] = None
    return vol


def _image(vol: np.ndarray, spacing: tuple[float, float, float], origin, axes) -> sitk.Image:
    img = sitk.GetImageFromArray(vol)  # vol is float32 and C-contiguous: copied once, not converted
    img.SetSpacing(spacing)
    img.SetOrigin(tuple(float(v) for v in origin))
    direction = np.column_stack(axes)
    img.SetDirection(tuple(float(v) for v in direction.ravel()))
    return img


def _stack_details(slices, skipped, fixes, z_fit, tilt_deg, corrected, fill_value) -> dict[str, Any]:
    return {
        "n_slices": len(slices),
        "n_files_skipped": skipped,
        "transfer_syntax": sorted({transfer_syntax_name(s["ts"]) for s in slices}),
        "rescale": sorted({s["rescale"] for s in slices}),
        "rescale_slopes": sorted({float(s["slope"]) for s in slices}),
        "rescale_intercepts": sorted({float(s["intercept"]) for s in slices}),
        **z_fit,
        "gantry_tilt_deg": round(tilt_deg, 3),
        "gantry_tilt_corrected": corrected,
        "gantry_tilt_fill_value": float(fill_value) if corrected else None,
        "fixes": fixes
        + slice_fixes(slices)
        + ([f"gantry tilt {tilt_deg:.1f} deg: slices shifted in-plane onto an orthogonal grid"] if corrected else []),
    }


def read_ct_stack(
    series_dir: str | os.PathLike,
    *,
    files: list[Path] | None = None,
    spacing_tolerance: float = 0.1,
    gantry_tilt: str = "correct",
    fill_value: float = -1024.0,
    workers: int | None = None,
) -> tuple[sitk.Image, dict[str, Any]]:
    """``(image, details)`` of one series: float32 HU in LPS, by the rules of the module docstring.

    ``files``: the series' files (default: every DICOM file of ``series_dir``). ``workers``:
    decoding processes (:func:`~medcyclegan.ingest.dicom_files.read_slices`). ``details``:
    ``n_slices``, ``n_files_skipped``, ``transfer_syntax`` (names), ``rescale``, the rescale
    slopes and intercepts, ``z_spacing_source`` with the fit's ``z_fit_max_residual_mm`` and
    ``z_fit_tolerance_mm``, the gantry tilt and its correction, ``fixes``.
    """
    folder = Path(series_dir)
    if gantry_tilt not in ("correct", "error"):
        raise ValueError("gantry_tilt must be 'correct' or 'error'")
    files = _series_files(folder, files)
    slices, skipped, fixes = _load_slices(folder, files, workers)
    slices = _drop_odd_orientations(slices, folder, fixes)
    _check_one_acquisition(slices, folder)
    ref = slices[0]
    r, c, n = _orthonormal_axes(ref["iop"], folder)
    slices, ipp, proj = _sort_along_normal(slices, n, fixes)
    sy, sx = float(ref["ps"][0]), float(ref["ps"][1])  # PixelSpacing = (row spacing, col spacing)
    dz, first, z_fit = _fit_positions(slices, proj, ref["thickness"], folder, spacing_tolerance)

    shift_x, shift_y, drift, tilt_deg = _in_plane_drift(ipp, proj, r, c, n, sx, sy)
    vol = _stack_hu(slices)  # [z, y, x]
    origin = ipp[0] + (first - proj[0]) * n  # the first slice moved onto the fitted line
    corrected = drift > TILT_DRIFT_PIXELS
    if corrected:
        if gantry_tilt == "error":
            raise IngestError(
                f"{folder}: gantry tilt of {tilt_deg:.1f} deg (slice positions drift "
                f"{drift:.2f} pixels in-plane): the stack is sheared. Use gantry_tilt='correct' "
                f"or pick another series."
            )
        vol, lo_x, lo_y = _shift_onto_orthogonal_grid(vol, shift_x, shift_y, fill_value)
        origin = origin - lo_x * sx * r - lo_y * sy * c

    img = _image(vol, (sx, sy, float(dz)), origin, (r, c, n))
    return img, _stack_details(slices, skipped, fixes, z_fit, tilt_deg, corrected, fill_value)
