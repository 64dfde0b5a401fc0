"""Demo qure.ai CQ500 head-CT studies, written exactly like an unzipped CQ500 download.

Why: the CT ingest must cope with what the real data throws at it - a study folder holding
several series (thin plain, thin bone kernel, thick 5 mm), folder names with spaces, file names
numbered from the top of the head down (so file order is the reverse of z), JPEG 2000 lossless
pixel data, HU only through RescaleSlope/Intercept, and a scanner headrest and table that the
head mask has to remove.  The demo reproduces all of that from the phantom in ``anatomy.py``.

Layout (``i`` = study index)::

    <ct_root>/CQ500-CT-{i}/CQ500CT{i} CQ500CT{i}/Unknown Study/CT <SeriesDescription>/CT000000.dcm ...

Series folders are ``"CT " + SeriesDescription`` (as in CQ500): one of ``CT PLAIN THIN`` /
``CT Plain 0.625mm`` / ``CT Thin Plain`` (JPEG 2000 lossless), ``CT BONE`` and ``CT 5mm``
(Explicit VR Little Endian).  Geometry: axial, ImageOrientationPatient [1,0,0,0,1,0] (rows run
to patient left, columns to posterior: the headrest is at the bottom of the image), head first
supine, no gantry tilt.  Stored values are HU + 1024 (uint16, 12 bits stored, -1024..3071 HU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcyclegan.demo import anatomy, layout
from medcyclegan.io import atomic

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
COVERAGE_MM = 150.0  # thin series: skull base to vertex
THIN_NAMES = ("PLAIN THIN", "Plain {mm}mm", "Thin Plain")
UID_ROOT = "medcyclegan-demo"


def _uid(*parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[UID_ROOT, *map(str, parts)])


def _ds(v: float) -> str:
    """A DICOM decimal string of at most 16 characters."""
    s = f"{float(v):.6f}".rstrip("0").rstrip(".")
    return s if s not in ("-0", "") else "0"


def _headrest(head_xy: np.ndarray, r: np.random.Generator) -> dict:
    """A parabolic plastic cradle under the back of the head (posterior = +y in LPS) with a
    0-4 mm gap to the skin, and a flat table slab 15-40 mm further posterior.

    ``head_xy`` are LPS (x, y) skin points of the head inside the series' z range.
    """
    p = dict(
        xh=float(np.median(head_xy[:, 0])) + r.uniform(-4, 4),
        radius=r.uniform(100, 140),
        half_w=r.uniform(65, 85),
        thick=r.uniform(5, 8),
        hu=r.uniform(40, 200),
    )
    near = np.abs(head_xy[:, 0] - p["xh"]) < p["half_w"]
    gap = r.uniform(0.0, 4.0)
    p["y0"] = float(np.max(head_xy[near, 1] - (head_xy[near, 0] - p["xh"]) ** 2 / (2 * p["radius"]))) + gap
    p["y_tab"] = p["y0"] + p["thick"] + r.uniform(15, 40)
    p["tab_thick"] = r.uniform(6, 10)
    p["tab_hu"] = r.uniform(100, 250)
    return p


def _headrest_image(p: dict, xs: np.ndarray, ys: np.ndarray, dx: float):
    """(HU, coverage fraction) images, indexed (x, y) like the rendered volume."""
    x, y = xs[:, None], ys[None, :]
    y_in = p["y0"] + (x - p["xh"]) ** 2 / (2 * p["radius"])

    def ramp(d):  # pixel coverage by a half-plane at signed distance d (mm, > 0 inside)
        return np.clip(d / dx + 0.5, 0.0, 1.0)

    rest = ramp(y - y_in) * ramp(y_in + p["thick"] - y) * ramp(p["half_w"] - np.abs(x - p["xh"]))
    table = ramp(y - p["y_tab"]) * ramp(p["y_tab"] + p["tab_thick"] - y) * np.ones_like(x)
    rest_hu = p["hu"] + 30.0 * np.cos((x - p["xh"]) / 25.0)  # uneven plastic
    hu = np.where(rest > 0, rest_hu, p["tab_hu"]).astype(np.float32)
    return hu, np.clip(rest + table, 0.0, 1.0).astype(np.float32)


def _base_dataset(*, study, series, index, pixel, rows, cols, desc, number, thickness, kernel, window):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    name = f"CQ500CT{index}"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "MedCycleGAN synthetic phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT HEAD PLAIN"
    ds.SeriesDescription = desc
    ds.PatientName = name
    ds.PatientID = name
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "HEAD"
    ds.SliceThickness = _ds(thickness)
    ds.KVP = "120"
    ds.SpacingBetweenSlices = _ds(thickness)
    ds.ReconstructionDiameter = _ds(pixel * cols)
    ds.GantryDetectorTilt = "0"
    ds.ConvolutionKernel = kernel
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    ds.SeriesNumber = number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [_ds(pixel), _ds(pixel)]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = _ds(window[0])
    ds.WindowWidth = _ds(window[1])
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def _write_series(
    folder: Path, stored: np.ndarray, z: np.ndarray, x0: float, y0: float, *, base, uid_parts, frame_uid, compress: bool
) -> None:
    """Write slices ``stored[k]`` (rows, cols) at heights ``z[k]``, files numbered top-down."""
    import copy

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import JPEG2000Lossless

    folder.mkdir(parents=True)
    order = np.argsort(-z)  # most superior slice first
    for n, k in enumerate(order):
        ds = Dataset()  # element-wise shallow copy: much faster than deepcopy, values are immutable
        for elem in base:
            ds.add(copy.copy(elem))
        ds.file_meta = FileMetaDataset()
        for elem in base.file_meta:
            ds.file_meta.add(copy.copy(elem))
        uid = _uid(*uid_parts, "instance", n)
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z[k])]
        ds.SliceLocation = _ds(z[k])
        pixels = np.ascontiguousarray(stored[k])
        if compress:
            ds.compress(JPEG2000Lossless, pixels, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        else:
            ds.PixelData = pixels.tobytes()
            ds["PixelData"].VR = "OW"
        ds.save_as(folder / f"CT{n:06d}.dcm", enforce_file_format=True)


def _to_stored(hu: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """HU -> stored uint16 (HU + 1024, 12 bits); -1024 HU outside the reconstruction circle."""
    s = np.clip(np.rint(hu) + 1024.0, 0, 4095)
    return np.where(outside, 0.0, s).astype(np.uint16)  # ``outside`` broadcasts over leading axes


def write_ct_study(
    ct_root, index: int, seed: int, *, matrix: int = 512, thin_mm: float = 0.625, thick_mm: float = 5.0
) -> Path:
    """Render and write one CQ500-style study; returns ``ct_root/CQ500-CT-{index}``."""
    if matrix < 16 or thin_mm <= 0 or thick_mm <= 0:
        raise ValueError(
            f"write_ct_study: need matrix >= 16 and positive slice thicknesses, got "
            f"matrix={matrix}, thin_mm={thin_mm}, thick_mm={thick_mm}"
        )
    target = Path(ct_root) / layout.ct_study_ids(index + 1)[index]
    anat = anatomy.head_anatomy()
    pose = _ct_pose(seed, index)
    r_scan = layout.rng(seed, "ct-scan", index)
    scan = _scan_geometry(pose.to_world(anat.surface) * [-1.0, -1.0, 1.0], matrix, thin_mm, r_scan)  # RAS -> LPS
    hu = _render_thin(anat, pose, scan)
    _add_headrest(hu, scan, r_scan)
    outside = (((scan.ys - scan.centre[1]) ** 2)[:, None] + ((scan.xs - scan.centre[0]) ** 2)[None, :]) > (
        scan.pixel * matrix / 2
    ) ** 2
    # noise: plain kernel (mildly correlated), bone kernel (sharpened + stronger), thick (averaged)
    sig_plain = r_scan.uniform(5.0, 12.0)
    sig_bone = r_scan.uniform(25.0, 45.0)
    sig_thick = r_scan.uniform(2.5, 5.0)
    r_noise = layout.rng(seed, "ct-noise", index)
    plain, bone = _thin_series(hu, outside, sig_plain, sig_bone, r_noise)
    z_thick, thick = _thick_series(hu, scan, thick_mm, outside, sig_thick, r_noise)
    del hu
    names = [THIN_NAMES[int(r_scan.integers(len(THIN_NAMES)))].format(mm=f"{thin_mm:g}"), "BONE", f"{thick_mm:g}mm"]
    series = [
        (names[0], plain, scan.z_thin, thin_mm, "STANDARD", (40, 80), True),
        (names[1], bone, scan.z_thin, thin_mm, "BONE", (500, 3000), False),
        (names[2], thick, z_thick, thick_mm, "STANDARD", (40, 80), False),
    ]
    _write_study(target, seed, index, scan, series)
    return target


@dataclass(frozen=True)
class _Scan:
    """Where the thin series lies (LPS mm): slice heights, the headrest and the pixel grid."""

    thin_mm: float
    z_top: float
    z_thin: np.ndarray  # ascending slice centres
    rest: dict  # headrest and table (:func:`_headrest`)
    centre: np.ndarray  # (x, y) of the reconstruction circle
    pixel: float
    x0: float
    y0: float
    xs: np.ndarray  # column centres (x)
    ys: np.ndarray  # row centres (y)


def _ct_pose(seed: int, index: int) -> anatomy.Pose:
    """The subject's head size and pose on the table: head first, 100-200 mm below the origin."""
    r_pose = layout.rng(seed, "ct-pose", index)
    return anatomy.Pose(
        anatomy.random_scale(layout.rng(seed, "ct-anatomy", index)),
        anatomy.random_rotation(r_pose),
        (r_pose.uniform(-10, 10), r_pose.uniform(-10, 10), r_pose.uniform(-200, -100)),
    )


def _scan_geometry(skin: np.ndarray, matrix: int, thin_mm: float, r_scan: np.random.Generator) -> _Scan:
    """Thin slices from just above the vertex down over ~150 mm; a field of view holding head and
    headrest, centred (+-6 mm); pixel 0.42-0.50 mm at 512 (larger if needed). ``skin``: LPS points."""
    n_thin = max(8, int(round(COVERAGE_MM / thin_mm)))
    z_top = float(skin[:, 2].max()) + r_scan.uniform(1.0, 6.0)
    z_thin = z_top - thin_mm * np.arange(n_thin)[::-1]  # ascending
    inside_z = skin[(skin[:, 2] >= z_thin[0] - 2) & (skin[:, 2] <= z_top)]
    rest = _headrest(inside_z[:, :2], r_scan)
    pts = np.vstack([inside_z[:, :2], [[rest["xh"], rest["y0"] + rest["thick"] + 2.0]]])
    centre = (pts.max(0) + pts.min(0)) / 2 + r_scan.uniform(-6, 6, 2)
    need = 2 * np.abs(pts - centre).max() + 10.0
    pixel = max(r_scan.uniform(0.42, 0.50) * 512 / matrix, need / matrix)
    pixel = float(np.round(pixel, 6))
    x0, y0 = (centre - pixel * (matrix - 1) / 2).round(4)
    xs = x0 + pixel * np.arange(matrix)
    ys = y0 + pixel * np.arange(matrix)
    return _Scan(thin_mm, z_top, z_thin, rest, centre, pixel, x0, y0, xs, ys)


def _render_thin(anat, pose: anatomy.Pose, scan: _Scan) -> np.ndarray:
    """The phantom's HU on the thin series' grid, (slice, row, col), C-contiguous."""
    matrix = len(scan.xs)
    a_lps = np.array(
        [
            [scan.pixel, 0, 0, scan.x0],
            [0, scan.pixel, 0, scan.y0],
            [0, 0, scan.thin_mm, scan.z_thin[0]],
            [0, 0, 0, 1.0],
        ]
    )
    shape = (matrix, matrix, len(scan.z_thin))
    return anatomy.render(anat.ct, np.diag([-1.0, -1.0, 1.0, 1.0]) @ a_lps, shape, pose, default=-1000.0).transpose(
        2, 1, 0
    )


def _add_headrest(hu: np.ndarray, scan: _Scan, r_scan: np.random.Generator) -> None:
    """Blend the headrest and table into the slices below the top 25-50 mm (in place)."""
    rest_hu, rest_frac = (a.T for a in _headrest_image(scan.rest, scan.xs, scan.ys, scan.pixel))  # (row, col)
    rest_top = scan.z_top - r_scan.uniform(25, 50)
    for k in np.nonzero(scan.z_thin < rest_top)[0]:
        hu[k] += rest_frac * (rest_hu - hu[k])


def _thin_series(hu, outside, sig_plain: float, sig_bone: float, r_noise) -> tuple[np.ndarray, np.ndarray]:
    """Stored values of the plain series (2x2-correlated noise) and the bone-kernel series
    (sharpened, stronger noise), computed 16 slices at a time to bound the memory."""
    from scipy import ndimage as ndi

    plain = np.empty(hu.shape, np.uint16)
    bone = np.empty(hu.shape, np.uint16)
    for k0 in range(0, hu.shape[0], 16):
        k1 = min(hu.shape[0], k0 + 16)
        block = hu[k0:k1]
        n = r_noise.standard_normal(block.shape, dtype=np.float32)
        n = (n + np.roll(n, 1, 1) + np.roll(n, 1, 2) + np.roll(np.roll(n, 1, 1), 1, 2)) * 0.5  # 2x2 box
        plain[k0:k1] = _to_stored(block + sig_plain * n, outside)
        sharp = block + 1.2 * (block - ndi.uniform_filter(block, size=(1, 3, 3)))
        sharp += sig_bone * r_noise.standard_normal(block.shape, dtype=np.float32)
        bone[k0:k1] = _to_stored(sharp, outside)
    return plain, bone


def _thick_series(hu, scan: _Scan, thick_mm: float, outside, sig_thick: float, r_noise):
    """(slice centres, stored values) of the thick series: thin slices averaged over each slab."""
    thin_mm, z_thin = scan.thin_mm, scan.z_thin
    edge = scan.z_top + thin_mm / 2
    n_thick = max(1, int(np.floor(len(z_thin) * thin_mm / thick_mm + 1e-6)))
    z_thick = edge - thick_mm * (np.arange(n_thick)[::-1] + 0.5)
    thick = np.empty((n_thick, *hu.shape[1:]), np.uint16)
    for k, zc in enumerate(z_thick):
        sel = np.abs(z_thin - zc) <= thick_mm / 2 + 1e-6
        if not sel.any():  # thick_mm < thin_mm: nearest thin slice
            sel = np.abs(z_thin - zc) == np.abs(z_thin - zc).min()
        slab = hu[sel].mean(axis=0)
        slab += sig_thick * r_noise.standard_normal(slab.shape, dtype=np.float32)
        thick[k] = _to_stored(slab, outside)
    return z_thick, thick


def _write_study(target: Path, seed: int, index: int, scan: _Scan, series: list) -> None:
    """Write the series (``(description, stored, z, thickness, kernel, window, compress)``, numbered
    2, 3, 4) into the study folder, swapped into place only when all are written."""
    matrix = len(scan.xs)
    study_uid = _uid(seed, "ct", index, "study")
    frame_uid = _uid(seed, "ct", index, "frame")
    patient = f"CQ500CT{index}"
    with atomic.atomic_dir(target) as tmp:
        study_dir = tmp / f"{patient} {patient}" / "Unknown Study"
        for (desc, stored, zz, th, kernel, window, compress), number in zip(series, (2, 3, 4)):
            parts = (seed, "ct", index, "series", number)
            base = _base_dataset(
                study=study_uid,
                series=_uid(*parts),
                index=index,
                pixel=scan.pixel,
                rows=matrix,
                cols=matrix,
                desc=desc,
                number=number,
                thickness=th,
                kernel=kernel,
                window=window,
            )
            _write_series(
                study_dir / f"CT {desc}",
                stored,
                np.round(zz, 4),
                scan.x0,
                scan.y0,
                base=base,
                uid_parts=parts,
                frame_uid=frame_uid,
                compress=compress,
            )
