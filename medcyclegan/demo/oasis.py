"""Demo OASIS-3 MR (T1w) and dynamic PET sessions, in the layouts of the real downloads.

Why: the MR/PET ingest must handle what OASIS-3 really looks like - both the flat layout of the
official download scripts and the XNAT web layout (``NIFTI/`` + ``BIDS/``), ``ses-``/``sess-``
spellings, optional ``run-NN``, varying ``anatN``, decoy scans, sagittal T1w volumes stored in a
non-RAS voxel order, 4D dynamic PET whose frame timing sits in either the BIDS fields or the old
draft ``FrameTimes`` table - and it needs a known answer: for every session a ground-truth CT of
the very same anatomy and pose, in the session's own voxel grid, is written OUTSIDE the raw
tree (``<gt_root>/<session>_ct.nii.gz``, int16 HU).

Session ``i`` belongs to subject ``OAS3{i+1:04d}``; its MR and PET share the subject's anatomy
(size) but are positioned independently.  Variants cycle with the index:

======  ==========================  ============================================  ==========
i % 4   MR layout / orientation     PET tracer, frames, timing, layout             PET voxels
======  ==========================  ============================================  ==========
0       flat,  axes P,I,L           PIB 0-60 min (19 fr), BIDS timing, flat       RAS
1       XNAT,  axes P,I,L (+T2w)    AV45 0-70 min (21 fr), draft FrameTimes, XNAT  LAS
2       flat,  axes R,P,I           PIB 0-60 min (19 fr), draft FrameTimes, XNAT   LAS
3       XNAT,  axes R,P,I           AV45 50-70 min (4 fr), BIDS timing, flat       RAS
======  ==========================  ============================================  ==========

Also: MR ``sess-`` when i % 3 == 1 (else ``ses-``), no ``run-01`` when i % 4 == 3, ``anat3`` when
i % 3 == 2 (else ``anat2``), decoy ``anat1/...T2w`` when i % 4 == 1; PET ``sess-`` when i % 3 == 2.
Session days come from the seed (``layout._days``); the PET day follows the MR day.

MR: 1 mm isotropic, 256 x 256 in-plane x 176 sagittal slices, int16; T1w contrast from the
MNI152 template times a smooth +-20 % bias field, with Rician noise (also outside the head).
PET: 128 x 128 x 63, 2.0 x 2.0 x 2.425 mm, 4D int16 with scl_slope (scl_inter 0);
frame values are decay-corrected activity (Bq/mL); 6 mm FWHM resolution; noise ~ 1/sqrt(duration).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medcyclegan.demo import anatomy, layout
from medcyclegan.io import atomic

MR_SHAPE = {"PIL": (256, 256, 176), "RPI": (176, 256, 256)}
PET_SHAPE = (128, 128, 63)
PET_ZOOMS = (2.0, 2.0, 2.425)
_AXES = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def _affine(codes: str, shape, zooms, centre) -> np.ndarray:
    """Voxel -> RAS affine whose axes point along ``codes`` with the grid centred on ``centre``."""
    a = np.eye(4)
    a[:3, :3] = np.array([_AXES[c] for c in codes], float).T * np.asarray(zooms, float)
    a[:3, 3] = np.asarray(centre, float) - a[:3, :3] @ ((np.asarray(shape[:3]) - 1) / 2.0)
    return a


def _place(pose: anatomy.Pose, affine, shape, r: np.random.Generator, top_margin, jitter) -> anatomy.Pose:
    """Move the head so its vertex sits ``top_margin`` mm below the top of the grid, centred
    (+-``jitter`` mm) in x and y - as a technician would position the field of view."""
    corners = (
        np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
        @ affine.T
    )
    lo, hi = corners[:, :3].min(0), corners[:, :3].max(0)
    skin = pose.moved((0.0, 0.0, 0.0)).to_world(anatomy.head_anatomy().surface)
    top = skin[:, 2].max()
    cranium = skin[skin[:, 2] > top - 120.0]  # head above the chin: centre on it
    mid = (cranium[:, :2].max(0) + cranium[:, :2].min(0)) / 2
    shift_xy = (lo[:2] + hi[:2]) / 2 - mid + r.uniform(-jitter, jitter, 2)
    shift_z = hi[2] - r.uniform(*top_margin) - top
    return pose.moved((shift_xy[0], shift_xy[1], shift_z))


def _nifti(data, affine, path: Path, slope: float | None = None) -> None:
    """Save with qform = sform = ``affine`` (code 1, scanner); ``slope`` sets scl_slope (inter 0)."""
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    atomic.write_nifti(path, img)


def _write_json(path: Path, obj) -> None:
    atomic.write_text(path, json.dumps(obj, indent=2) + "\n")


def _gt_ct(anat, affine, shape, pose) -> np.ndarray:
    hu = anatomy.render(anat.ct, affine, shape, pose, default=-1000.0)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def _subject_pose(seed: int, index: int, r_pose: np.random.Generator) -> anatomy.Pose:
    scale = anatomy.random_scale(layout.rng(seed, "oasis-anatomy", index))  # shared by MR and PET
    return anatomy.Pose(scale, anatomy.random_rotation(r_pose), (0.0, 0.0, 0.0))


def _paths(session_dir: Path, folder: str, stem: str, xnat: bool):
    """(image path, sidecar path) in the flat or the XNAT layout."""
    base = session_dir / folder
    if xnat:
        (base / "NIFTI").mkdir(parents=True, exist_ok=True)
        (base / "BIDS").mkdir(parents=True, exist_ok=True)
        return base / "NIFTI" / f"{stem}.nii.gz", base / "BIDS" / f"{stem}.json"
    base.mkdir(parents=True, exist_ok=True)
    return base / f"{stem}.nii.gz", base / f"{stem}.json"


def _bias_field(shape, r: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field, second-order polynomial, peak deviation 10-20 %."""
    u, v, w = (
        np.linspace(-1, 1, n, dtype=np.float32).reshape([-1 if a == i else 1 for a in range(3)])
        for i, n in enumerate(shape)
    )
    c = r.uniform(-1, 1, 9).astype(np.float32)
    dev = (
        c[0] * u
        + c[1] * v
        + c[2] * w
        + c[3] * u * u
        + c[4] * v * v
        + c[5] * w * w
        + c[6] * u * v
        + c[7] * u * w
        + c[8] * v * w
    )
    dev = dev - dev.mean()
    return 1.0 + dev * np.float32(r.uniform(0.10, 0.20) / (np.abs(dev).max() + 1e-6))


def write_mr_session(mr_root, gt_root, index: int, seed: int) -> Path:
    """Write ``<mr_root>/<OAS3xxxx_MR_dNNNN>/anatN/...T1w.nii.gz`` (+ sidecar) and its GT CT."""
    mr_root, gt_root = Path(mr_root), Path(gt_root)
    sid = layout.mr_session_id(index, seed)
    subj, day = sid.split("_MR_")
    anat = anatomy.head_anatomy()
    r = layout.rng(seed, "mr-scan", index)
    r_pose = layout.rng(seed, "mr-pose", index)

    codes = "PIL" if (index // 2) % 2 == 0 else "RPI"
    shape = MR_SHAPE[codes]
    zooms = (1.0, 1.0, 1.0)
    centre = (r.uniform(-3, 3), r.uniform(0, 20), r.uniform(0, 30))  # scanner coordinates
    affine = _affine(codes, shape, zooms, centre)
    pose = _place(_subject_pose(seed, index, r_pose), affine, shape, r_pose, (12.0, 30.0), 6.0)

    t1 = anatomy.render(anat.t1, affine, shape, pose, default=0.0)
    t1 *= _bias_field(shape, r) * np.float32(r.uniform(1.6, 3.2))
    sigma = np.float32(r.uniform(0.012, 0.025) * 220.0 * 2.4)
    r_noise = layout.rng(seed, "mr-noise", index)
    n1 = r_noise.standard_normal(shape, dtype=np.float32)
    t1 += sigma * n1
    np.square(t1, out=t1)
    n1 = r_noise.standard_normal(shape, dtype=np.float32)
    n1 *= sigma
    np.square(n1, out=n1)
    t1 += n1
    np.sqrt(t1, out=t1)
    del n1
    mr = np.clip(np.rint(t1), 0, 32767).astype(np.int16)
    del t1

    ses = "sess" if index % 3 == 1 else "ses"
    run = "" if index % 4 == 3 else "_run-01"
    stem = f"sub-{subj}_{ses}-{day}{run}_T1w"
    anat_dir = f"anat{2 + (index % 3 == 2)}"
    xnat = index % 2 == 1
    sidecar = {
        "Modality": "MR",
        "MagneticFieldStrength": 3 if index % 5 else 1.5,
        "Manufacturer": "Siemens",
        "ManufacturersModelName": "TrioTim",
        "SeriesDescription": "MPRAGE",
        "ProtocolName": "MPRAGE",
        "ScanningSequence": "GR_IR",
        "SequenceVariant": "SK_SP_MP",
        "MRAcquisitionType": "3D",
        "SliceThickness": 1.0,
        "RepetitionTime": 2.4,
        "EchoTime": 0.00316,
        "InversionTime": 1.0,
        "FlipAngle": 8,
        "ImageComments": "MedCycleGAN synthetic phantom",
        "ConversionSoftware": "dcm2niix",
    }
    with atomic.atomic_dir(mr_root / sid) as tmp:
        img_path, json_path = _paths(tmp, anat_dir, stem, xnat)
        _nifti(mr, affine, img_path)
        _write_json(json_path, sidecar)
        if index % 4 == 1:  # decoy: a small T2w in another anat folder
            t2_shape = (64, 64, 40)
            t2_aff = _affine(
                "LAS", t2_shape, (3.6, 3.6, 4.5), affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
            )
            t1d = anatomy.render(anat.t1, t2_aff, t2_shape, pose, default=0.0)
            t2 = np.where(t1d > 1, 300.0 - t1d, 0.0) * 2.0
            dimg, djson = _paths(tmp, "anat1", f"sub-{subj}_{ses}-{day}_T2w", xnat)
            _nifti(np.clip(t2, 0, 32767).astype(np.int16), t2_aff, dimg)
            _write_json(
                djson,
                {
                    "Modality": "MR",
                    "MagneticFieldStrength": sidecar["MagneticFieldStrength"],
                    "SeriesDescription": "T2 FLAIR",
                    "ProtocolName": "T2_FLAIR",
                },
            )
        _nifti(_gt_ct(anat, affine, shape, pose), affine, gt_root / f"{sid}_ct.nii.gz")
    return mr_root / sid


# ------------------------------------------------------------------------------------------
# PET
# ------------------------------------------------------------------------------------------


def frame_scheme(index: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, duration) in seconds for session ``index``'s PET frames."""
    early = [30] * 4 + [60] * 4 + [240]  # 0-10 min
    if layout.tracer(index) == "PIB":
        durations = early + [300] * 10  # 10-60 min
        start0 = 0
    elif index % 4 == 1:
        durations = early + [300] * 12  # AV45 0-70 min
        start0 = 0
    else:
        durations = [300] * 4  # AV45 50-70 min
        start0 = 3000
    d = np.array(durations, float)
    return start0 + np.concatenate([[0.0], np.cumsum(d)[:-1]]), d


def _curves(tracer: str, t_min: np.ndarray, tp: float):
    """Delivery a(t), white-matter retention b(t) and specific cortical retention c(t) (arbitrary
    units); ``tp`` is the time (min) of the perfusion peak."""
    a = 3.0 * (t_min / tp) * np.exp(1.0 - t_min / tp) + 0.5 * np.exp(-t_min / 30.0) * (1 - np.exp(-t_min / 0.5))
    if tracer == "PIB":
        b = 0.9 * (1 - np.exp(-t_min / 6.0)) * np.exp(-t_min / 150.0)
        c = 1.0 - np.exp(-t_min / 20.0)
    else:  # AV45: slower washout, higher nonspecific white-matter signal
        b = 1.1 * (1 - np.exp(-t_min / 8.0)) * np.exp(-t_min / 200.0)
        c = 1.0 - np.exp(-t_min / 25.0)
    return a, b, c


def write_pet_session(pet_root, gt_root, index: int, seed: int) -> Path:
    """Write ``<pet_root>/<OAS3xxxx_TRACER_dNNNN>/pet1/...acq-TRACER_pet.nii.gz`` (+ sidecar), GT CT."""
    from scipy import ndimage as ndi

    pet_root, gt_root = Path(pet_root), Path(gt_root)
    sid = layout.pet_session_id(index, seed)
    subj, tracer, day = sid.split("_")
    anat = anatomy.head_anatomy()
    r = layout.rng(seed, "pet-scan", index)
    r_pose = layout.rng(seed, "pet-pose", index)

    codes = "RAS" if index % 4 in (0, 3) else "LAS"
    affine = _affine(codes, PET_SHAPE, PET_ZOOMS, (r.uniform(-2, 2), r.uniform(-2, 2), r.uniform(-5, 5)))
    pose = _place(_subject_pose(seed, index, r_pose), affine, PET_SHAPE, r_pose, (4.0, 14.0), 10.0)

    sig_vox = 6.0 / 2.3548 / np.asarray(PET_ZOOMS)  # 6 mm FWHM
    maps = [
        ndi.gaussian_filter(anatomy.render(v, affine, PET_SHAPE, pose, 0.0), sig_vox)
        for v in (anat.perf, anat.ret_wm, anat.ret_ctx)
    ]
    head = ndi.gaussian_filter(anatomy.render(anat.ct, affine, PET_SHAPE, pose, -1000.0), sig_vox) > -500

    starts, durs = frame_scheme(index)
    amyloid = r.uniform(0.5, 1.0) if r.uniform() < 0.4 else r.uniform(0.0, 0.15)
    tp = r.uniform(0.8, 1.3)
    frames = np.empty(PET_SHAPE + (len(starts),), np.float32)
    r_noise = layout.rng(seed, "pet-noise", index)
    eff = r.uniform(0.4, 0.8)  # counts per (unit activity * second) per voxel
    unit = r.uniform(6000.0, 14000.0)  # Bq/mL per unit activity
    for f, (t0, d) in enumerate(zip(starts, durs)):
        t = (t0 + d * (np.arange(40) + 0.5) / 40) / 60.0
        a, b, c = (float(v.mean()) for v in _curves(tracer, t, tp))
        img = a * maps[0] + b * maps[1] + c * amyloid * maps[2]
        img += np.float32(0.01 * (a + b)) * ~head  # scatter/randoms background
        noise = ndi.gaussian_filter(r_noise.standard_normal(PET_SHAPE, dtype=np.float32), 0.8)
        noise /= noise.std()
        img += np.sqrt(np.maximum(img, 0.02) / (d * eff)) * noise
        frames[..., f] = img * unit
    del maps
    slope = float(np.abs(frames).max()) / 32000.0
    stored = np.clip(np.rint(frames / slope), -32768, 32767).astype(np.int16)
    del frames

    ses = "sess" if index % 3 == 2 else "ses"
    stem = f"sub-{subj}_{ses}-{day}_acq-{tracer}_pet"
    xnat = index % 4 in (1, 2)
    sidecar = {
        "Modality": "PT",
        "Manufacturer": "Siemens",
        "ManufacturersModelName": "HR+",
        "SeriesDescription": f"{tracer} dynamic" if starts[0] == 0 else f"{tracer} static",
        "TracerName": tracer,
        "TracerRadionuclide": "C11" if tracer == "PIB" else "F18",
        "Units": "Bq/mL",
        "ImageDecayCorrected": True,
        "ReconMethodName": "FBP",
        "ImageComments": "MedCycleGAN synthetic phantom",
        "ConversionSoftware": "dcm2niix",
    }
    if index % 4 in (0, 3):
        sidecar["FrameTimesStart"] = [int(s) for s in starts]
        sidecar["FrameDuration"] = [int(d) for d in durs]
    else:
        sidecar["FrameTimes"] = {
            "Labels": ["start", "end", "duration"],
            "Units": ["s", "s", "s"],
            "Values": [[int(s), int(s + d), int(d)] for s, d in zip(starts, durs)],
        }
    with atomic.atomic_dir(pet_root / sid) as tmp:
        img_path, json_path = _paths(tmp, "pet1", stem, xnat)
        _nifti(stored, affine, img_path, slope=slope)
        _write_json(json_path, sidecar)
        _nifti(_gt_ct(anat, affine, PET_SHAPE, pose), affine, gt_root / f"{sid}_ct.nii.gz")
    return pet_root / sid
