"""Builders of bad (and good) raw inputs for the hostile-input tests, and a small harness that
runs the per-volume jobs' functions (ingest -> preprocess -> rejected table) on one input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import generate_uid

from medcyclegan.testing.fake_trees import (
    ball_head_hu,
    ras_affine,
    sample_grid,
    write_dicom_slice,
    write_oasis_mr,
    write_oasis_pet,
)

CT_RULES = {"max_slice_thickness_mm": 3.5, "min_slices": 30}
PET_CFG = {
    "windows_min": {"PIB": [30, 60], "AV45": [50, 70]},
    "fallback_frames": [-4, None],
    "min_window_coverage": 0.5,
}
MASK = {
    "ct": {
        "threshold": -500,
        "threshold_scale": 1.0,
        "smoothing_sigma_mm": 1.0,
        "opening_radius_mm": 4,
        "closing_radius_mm": 3,
    },
    "mr": {
        "threshold": "otsu",
        "threshold_scale": 0.5,
        "smoothing_sigma_mm": 2.0,
        "opening_radius_mm": 3,
        "closing_radius_mm": 5,
    },
    "pet": {
        "threshold": "otsu",
        "threshold_scale": 0.1,
        "smoothing_sigma_mm": 3.0,
        "opening_radius_mm": 3,
        "closing_radius_mm": 6,
    },
}
SLICING = {"min_head_area_mm2": 3000, "min_head_fraction_of_max": 0.25, "max_depth_below_vertex_mm": None, "size": 128}
INTENSITY = {"ct_window_hu": [-1024, 3000], "mr_percentiles": [0.5, 99.5], "pet_percentiles": [0.5, 99.5]}
REJECT = {"min_extent_mm": 60, "min_head_volume_ml": 250}


def write_ct(
    folder: Path,
    *,
    n=50,
    size=64,
    spacing=3.0,
    thickness=3.0,
    description="CT PLAIN",
    kernel="STANDARD",
    series_uid=None,
    signed=False,
    rescale=(1.0, -1024.0),
    tilt_y_per_slice=0.0,
    prefix="CT",
    extra_tags=None,
    mislabel_unsigned=False,
    hu_fn=None,
    transfer_syntax=None,
    first_index=0,
):
    """An axial CT series of a ball 'head' (LPS, centred on the origin), one file per slice.

    ``signed``: stored int16 (PixelRepresentation 1), else uint16 (0). ``rescale``: (slope,
    intercept) written to the headers, None: no rescale tags (stored values are then HU + the
    intercept the data was made with). ``tilt_y_per_slice``: in-plane y drift of each slice's
    position (mm per slice; gantry tilt). ``mislabel_unsigned``: signed values written with
    PixelRepresentation 0. ``extra_tags``: {keyword: value} set on every file (PHI markers).
    """
    hu_fn = hu_fn or ball_head_hu
    folder.mkdir(parents=True, exist_ok=True)
    uid = series_uid or generate_uid()
    origin = np.array([-(size - 1) / 2 * spacing, -(size - 1) / 2 * spacing, -(n - 1) / 2 * thickness])
    rows, cols = np.indices((size, size))
    slope, intercept = rescale if rescale is not None else (1.0, -1024.0 if not signed else 0.0)
    for k in range(n):
        ipp = origin + np.array([0.0, k * tilt_y_per_slice, k * thickness])
        lps = np.stack([ipp[0] + cols * spacing, ipp[1] + rows * spacing, np.full(cols.shape, ipp[2])], -1)
        stored = np.round((hu_fn(lps) - intercept) / slope)
        write_dicom_slice(
            folder / f"{prefix}{first_index + k:06d}.dcm",
            stored.astype(np.int16) if signed else np.clip(stored, 0, None).astype(np.uint16),
            series_uid=uid,
            description=description,
            ipp=ipp,
            pixel_spacing=(spacing, spacing),
            thickness=thickness,
            rescale=None if rescale is None else (slope, intercept),
            instance=k + 1,
            pixel_representation=0 if mislabel_unsigned else None,
            compress=transfer_syntax,
            ConvolutionKernel=kernel,
            ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
            **(extra_tags or {}),
        )
    return folder


def cq500_study(root: Path, n: int, **series) -> Path:
    """``root/CQ500CT{n} CQ500CT{n}/Unknown Study/<series name>/`` with one series per keyword
    argument (name -> write_ct kwargs); default: one plain series."""
    study = root / f"CQ500CT{n} CQ500CT{n}"
    for name, kw in (series or {"CT PLAIN": {}}).items():
        write_ct(study / "Unknown Study" / name, **kw)
    return study


def head_nifti(path: Path, *, shape=(60, 60, 50), spacing=3.0, dtype=np.float32, frames=None, value=None, affine=None):
    """A NIfTI of a ball head (MR-like values) on an axial LPS->RAS grid; ``frames``: 4D."""
    axes = [[-1, 0, 0], [0, -1, 0], [0, 0, 1]]
    sp = np.array([spacing] * 3)
    origin = np.array([(shape[0] - 1) / 2 * spacing, (shape[1] - 1) / 2 * spacing, -(shape[2] - 1) / 2 * spacing])
    from medcyclegan.testing.fake_trees import mr_value

    data = sample_grid(shape, axes, sp, origin, mr_value) if value is None else np.full(shape, value, float)
    if frames:
        data = np.stack([data * (1 + i) for i in range(frames)], -1)
    aff = ras_affine(axes, sp, origin) if affine is None else affine
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(dtype), aff), path)
    return path


def mr_session(root: Path, subject: str, day: str = "d0100", **kw) -> tuple[Path, Path]:
    """``root/{subject}_MR_{day}/anat2/sub-..._T1w.nii.gz`` (+ sidecar); returns (session, nifti)."""
    session = root / f"{subject}_MR_{day}"
    nii = head_nifti(session / "anat2" / f"sub-{subject}_ses-{day}_T1w.nii.gz", **kw)
    (session / "anat2" / f"sub-{subject}_ses-{day}_T1w.json").write_text(json.dumps({"Modality": "MR"}))
    return session, nii


def pet_session(root: Path, subject: str, *, tracer="PIB", day="d0200", timing="bids", starts=None, duration=600):
    """A dynamic PET session; ``timing``: "bids", "old" (FrameTimes table) or None (no timing)."""
    starts = list(range(0, 4200, 600)) if starts is None else list(starts)
    session = root / f"{subject}_{tracer}_{day}"
    stem = f"sub-{subject}_ses-{day}_acq-{tracer}_pet"
    head_nifti(session / "pet1" / f"{stem}.nii.gz", frames=len(starts))
    side = {"Modality": "PT", "TracerName": tracer}
    if timing == "bids":
        side.update(FrameTimesStart=starts, FrameDuration=[duration] * len(starts))
    elif timing == "old":
        side["FrameTimes"] = {
            "Labels": ["start", "end", "duration"],
            "Units": ["s", "s", "s"],
            "Values": [[s, s + duration, duration] for s in starts],
        }
    (session / "pet1" / f"{stem}.json").write_text(json.dumps(side))
    return session


def ct_small() -> pydicom.FileDataset:
    """pydicom's bundled ``CT_small.dcm``: a real 128 x 128 CT slice (signed, explicit VR little
    endian, RescaleIntercept -1024, PixelPaddingValue -2000 that no pixel holds)."""
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def write_bare_dataset(path: Path, ds: pydicom.Dataset) -> Path:
    """``ds`` written as old archives export it: no 128-byte preamble, no file meta, implicit VR
    little endian."""
    bare = copy.deepcopy(ds)
    bare.file_meta = FileMetaDataset()
    bare.preamble = None
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return path


def nifti2(path: Path, data: np.ndarray, affine: np.ndarray, *, qform=None, sform=None) -> Path:
    """A NIfTI-2 file (``.nii`` or ``.nii.gz``); ``qform``/``sform``: (affine, code) to set
    instead of ``affine`` with code 1 (aligned), e.g. to make them disagree."""
    img = nib.Nifti2Image(data, affine)
    img.set_qform(*(qform or (affine, 1)))
    img.set_sform(*(sform or (affine, 1)))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def ingest_volume(out: Path, modality: str, source: Path, volume: str, *, reject_cfg=REJECT) -> tuple[Path, Path]:
    """Run the ingest job on one input as the workflow does (2 mm grid, the test rules); returns
    the paths of its volume and info JSON under ``out``."""
    from medcyclegan.workflow import jobs

    vol, info = out / f"volumes/{modality}/{volume}.nii.gz", out / f"volumes/{modality}/{volume}.json"
    jobs.ingest(
        modality,
        str(source),
        volume,
        str(vol),
        str(info),
        spacing_mm=[2.0, 2.0, 2.0],
        ct_series=CT_RULES if modality == "ct" else None,
        pet=PET_CFG if modality == "pet" else None,
        reject_cfg=reject_cfg,
    )
    return vol, info


def run_volume(tmp: Path, modality: str, source: Path, volume: str, *, reject_cfg=REJECT, mask_cfg=None):
    """Run ingest and preprocess on one input as the workflow does and the rejected table over
    it. Returns (rejected.csv rows as a DataFrame, the volume's info JSON)."""
    from medcyclegan.workflow import jobs

    out = tmp / "results"
    vol, info = ingest_volume(out, modality, source, volume, reject_cfg=reject_cfg)
    npz = out / f"slices/{modality}/{volume}.npz"
    jobs.preprocess(
        modality,
        volume,
        str(vol),
        str(npz),
        str(out / f"slices/{modality}/{volume}.csv"),
        str(out / f"masks/{modality}/{volume}.nii.gz"),
        mask_cfg=mask_cfg or MASK[modality],
        slicing_cfg=SLICING,
        intensity_cfg=INTENSITY,
        reject_cfg=reject_cfg,
    )
    jobs.rejected_table(
        [str(npz)], str(out / "qc/rejected.csv"), info_paths=[str(info)], out_fixes=str(out / "qc/fixes.csv")
    )
    return pd.read_csv(out / "qc/rejected.csv", keep_default_na=False), json.loads(info.read_text())


def kept_slices(tmp: Path, modality: str, volume: str) -> int:
    with np.load(tmp / f"results/slices/{modality}/{volume}.npz") as f:
        return int(f["images"].shape[0])


__all__ = ["write_oasis_mr", "write_oasis_pet"]
