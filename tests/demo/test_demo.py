"""Tests of the built-in demo dataset generator (medcyclegan.demo).

Why: the demo data stands in for real CQ500 / OASIS-3 downloads, so these tests pin down the
exact on-disk layouts, the DICOM/NIfTI conventions the ingest relies on, physical plausibility
(HU of air and bone, a headrest behind the head, noise outside the MR head), determinism, and
the geometry of the ground-truth CT volumes.  Small CT sizes keep the run short.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless
from scipy import ndimage as ndi

from medcyclegan import demo
from medcyclegan.demo import anatomy, cq500, layout, oasis

SEED = 1234
CT_KW = dict(matrix=128, thin_mm=2.0, thick_mm=5.0)
THIN_DIRS = {"CT PLAIN THIN", "CT Plain 2mm", "CT Thin Plain"}


# ------------------------------------------------------------------------------------------
# fixtures (module scope: each study/session is rendered once)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct_roots(tmp_path_factory):
    roots = {}
    for name, seed in (("a", SEED), ("a2", SEED), ("b", SEED + 1)):
        root = tmp_path_factory.mktemp(f"ct_{name}")
        demo.write_ct_study(root, 0, seed, **CT_KW)
        roots[name] = root
    return roots


@pytest.fixture(scope="module")
def oasis_roots(tmp_path_factory):
    out = {}
    for name, mr, pet in (("a", (0, 1), (0, 1)), ("a2", (0,), (3,))):
        base = tmp_path_factory.mktemp(f"oasis_{name}")
        for i in mr:
            demo.write_mr_session(base / "mr", base / "gt", i, SEED)
        for i in pet:
            demo.write_pet_session(base / "pet", base / "gt", i, SEED)
        out[name] = base
    return out


def _series_dirs(ct_root: Path, index: int = 0) -> dict[str, Path]:
    study = ct_root / f"CQ500-CT-{index}" / f"CQ500CT{index} CQ500CT{index}" / "Unknown Study"
    return {p.name: p for p in study.iterdir()}


def _read_series(folder: Path):
    files = sorted(folder.glob("*.dcm"))
    return files, [pydicom.dcmread(f) for f in files]


def _hu_volume(datasets) -> tuple[np.ndarray, np.ndarray]:
    z = np.array([float(d.ImagePositionPatient[2]) for d in datasets])
    order = np.argsort(z)
    vol = np.stack(
        [datasets[i].pixel_array * float(datasets[i].RescaleSlope) + float(datasets[i].RescaleIntercept) for i in order]
    )
    return vol, z[order]


def _find(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.rglob(pattern) if not any(part.startswith(".") for part in p.parts))


# ------------------------------------------------------------------------------------------
# ids
# ------------------------------------------------------------------------------------------


def test_ids_are_cheap_deterministic_and_well_formed():
    misses = anatomy.head_anatomy.cache_info().misses
    assert demo.ct_study_ids(3) == ["CQ500-CT-0", "CQ500-CT-1", "CQ500-CT-2"]
    mr = demo.mr_session_ids(4, SEED)
    pet = demo.pet_session_ids(4, SEED)
    assert anatomy.head_anatomy.cache_info().misses == misses  # nothing rendered
    assert mr == demo.mr_session_ids(4, SEED) and pet == demo.pet_session_ids(4, SEED)
    assert mr != demo.mr_session_ids(4, SEED + 1)
    for i, (m, p) in enumerate(zip(mr, pet)):
        assert re.fullmatch(rf"OAS3{i + 1:04d}_MR_d\d{{4}}", m)
        assert re.fullmatch(rf"OAS3{i + 1:04d}_(PIB|AV45)_d\d{{4}}", p)
    assert [p.split("_")[1] for p in pet] == ["PIB", "AV45", "PIB", "AV45"]


# ------------------------------------------------------------------------------------------
# CT
# ------------------------------------------------------------------------------------------


def test_ct_layout_exact(ct_roots):
    root = ct_roots["a"]
    assert [p.name for p in root.iterdir()] == ["CQ500-CT-0"]  # no partial/old folders left
    assert [p.name for p in (root / "CQ500-CT-0").iterdir()] == ["CQ500CT0 CQ500CT0"]
    assert [p.name for p in (root / "CQ500-CT-0" / "CQ500CT0 CQ500CT0").iterdir()] == ["Unknown Study"]
    series = _series_dirs(root)
    assert len(series) == 3 and "CT BONE" in series and "CT 5mm" in series
    (thin,) = set(series) - {"CT BONE", "CT 5mm"}
    assert thin in THIN_DIRS
    n_thin = round(cq500.COVERAGE_MM / CT_KW["thin_mm"])
    for name, n in ((thin, n_thin), ("CT BONE", n_thin), ("CT 5mm", 30)):
        names = sorted(p.name for p in series[name].iterdir())
        assert names == [f"CT{k:06d}.dcm" for k in range(n)], name


def test_ct_dicom_conventions(ct_roots):
    series = _series_dirs(ct_roots["a"])
    (thin,) = set(series) - {"CT BONE", "CT 5mm"}
    for name, syntax in (
        (thin, JPEG2000Lossless),
        ("CT BONE", ExplicitVRLittleEndian),
        ("CT 5mm", ExplicitVRLittleEndian),
    ):
        files, dss = _read_series(series[name])
        assert files[0].read_bytes()[128:132] == b"DICM"  # preamble + file meta
        ds = dss[0]
        assert ds.file_meta.TransferSyntaxUID == syntax
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.Modality == "CT"
        assert ds.SeriesDescription == name[3:]
        assert ds.PatientID == "CQ500CT0" and str(ds.PatientName) == "CQ500CT0"
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.PixelRepresentation) == (128, 128, 16, 0)
        assert float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == -1024
        assert 0.42 * 4 <= float(ds.PixelSpacing[0]) <= 0.6 * 4  # FOV stays ~230 mm at 128
        assert ds.pixel_array.shape == (128, 128)  # JPEG 2000 decodes
        assert len({d.SOPInstanceUID for d in dss}) == len(dss)
        assert len({d.SeriesInstanceUID for d in dss}) == 1
        thickness = 5.0 if name == "CT 5mm" else 2.0
        assert float(ds.SliceThickness) == thickness == float(ds.SpacingBetweenSlices)


def test_ct_file_order_is_reverse_of_z(ct_roots):
    for folder in _series_dirs(ct_roots["a"]).values():
        _, dss = _read_series(folder)
        z = np.array([float(d.ImagePositionPatient[2]) for d in dss])
        inst = [int(d.InstanceNumber) for d in dss]
        assert np.all(np.diff(z) < 0), folder.name  # CT000000 is the most superior slice
        assert inst == list(range(1, len(dss) + 1))
        assert np.allclose(-np.diff(z), float(dss[0].SpacingBetweenSlices), atol=1e-3)


def test_ct_hounsfield_units_and_headrest(ct_roots):
    series = _series_dirs(ct_roots["a"])
    (thin,) = set(series) - {"CT BONE", "CT 5mm"}
    vol, _ = _hu_volume(_read_series(series[thin])[1])
    assert vol.max() > 1200 and np.percentile(vol, 99.5) > 700  # skull
    assert vol.min() >= -1024
    n = vol.shape[1]
    rr, cc = np.mgrid[:n, :n]
    dist2 = (rr - n / 2 + 0.5) ** 2 + (cc - n / 2 + 0.5) ** 2
    in_circle = dist2 < (0.45 * n) ** 2
    assert np.all(vol[:, dist2 > (0.5 * n + 1) ** 2] == -1024)  # padding outside the FOV circle
    air = vol[:, in_circle][~ndi.binary_dilation(vol > -500, iterations=3)[:, in_circle]]
    assert air.size > 10_000 and abs(np.median(air) + 1000) < 5 and 2 < air.std() < 20
    mid = vol[len(vol) // 2]
    brain = mid[40:90, 40:90]
    assert 10 < np.median(brain) < 60  # soft tissue range inside the head

    # headrest: a plastic object (~0-300 HU) posterior (larger row index) of the head, separate
    # from it in most of the lower slices
    hits = 0
    lower = vol[: 2 * len(vol) // 3]
    for sl in lower:
        lab, n = ndi.label(sl > -400)
        if n < 2:
            continue
        sizes = ndi.sum(np.ones_like(sl), lab, range(1, n + 1))
        head = int(np.argmax(sizes)) + 1
        head_rows = np.nonzero(lab == head)[0]
        for k in range(1, n + 1):
            rows = np.nonzero(lab == k)[0]
            if k != head and sizes[k - 1] >= 10 and rows.mean() > head_rows.max() - 5:
                if -50 < np.median(sl[lab == k]) < 320:
                    hits += 1
                    break
    assert hits >= 0.5 * len(lower)


def test_ct_is_deterministic(ct_roots):
    a, a2, b = (_series_dirs(ct_roots[k]) for k in ("a", "a2", "b"))
    assert set(a) == set(a2)
    for name in a:
        fa = sorted(a[name].iterdir())
        fa2 = sorted(a2[name].iterdir())
        assert [f.name for f in fa] == [f.name for f in fa2]
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fa2)), name
    name = "CT BONE"
    pa = pydicom.dcmread(sorted(a[name].iterdir())[10]).pixel_array
    pb = pydicom.dcmread(sorted(b[name].iterdir())[10]).pixel_array
    assert not np.array_equal(pa, pb)


def test_ct_rewrite_is_atomic(tmp_path, monkeypatch):
    root = tmp_path / "ct"
    kw = dict(matrix=64, thin_mm=3.0, thick_mm=6.0)
    target = demo.write_ct_study(root, 1, SEED, **kw)
    assert target == root / "CQ500-CT-1"
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    def boom(*a, **k):
        raise RuntimeError("killed")

    monkeypatch.setattr(cq500, "_write_series", boom)
    with pytest.raises(RuntimeError):
        demo.write_ct_study(root, 1, SEED + 5, **kw)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before  # untouched, no partial
    monkeypatch.undo()
    demo.write_ct_study(root, 1, SEED, **kw)  # overwrite in place
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before


# ------------------------------------------------------------------------------------------
# MR / PET
# ------------------------------------------------------------------------------------------


def test_mr_layouts_orientation_and_noise(oasis_roots):
    base = oasis_roots["a"]
    sids = demo.mr_session_ids(2, SEED)
    assert sorted(p.name for p in (base / "mr").iterdir()) == sorted(sids)
    flat = _find(base / "mr" / sids[0], "*_T1w.nii.gz")
    xnat = _find(base / "mr" / sids[1], "*_T1w.nii.gz")
    assert len(flat) == 1 and re.fullmatch(r"anat\d", flat[0].parent.name)
    assert len(xnat) == 1 and xnat[0].parent.name == "NIFTI"
    assert (xnat[0].parent.parent / "BIDS" / xnat[0].name.replace(".nii.gz", ".json")).is_file()
    assert flat[0].with_name(flat[0].name.replace(".nii.gz", ".json")).is_file()
    subj, day = sids[0].split("_MR_")
    assert re.fullmatch(rf"sub-{subj}_(ses|sess)-{day}(_run-\d\d)?_T1w\.nii\.gz", flat[0].name)

    for path, sid in ((flat[0], sids[0]), (xnat[0], sids[1])):
        img = nib.load(path)
        assert img.ndim == 3 and img.get_data_dtype() == np.int16
        assert nib.aff2axcodes(img.affine) != ("R", "A", "S")
        assert np.allclose(img.header.get_zooms(), (1, 1, 1))
        data = np.asarray(img.dataobj)
        gt = nib.load(base / "gt" / f"{sid}_ct.nii.gz")
        assert gt.shape == img.shape and np.allclose(gt.affine, img.affine)
        assert gt.get_data_dtype() == np.int16
        hu = np.asarray(gt.dataobj)
        corner = (slice(0, 12), slice(0, 12), slice(0, 12))
        assert np.all(hu[corner] == -1000)  # outside the head ...
        assert data[corner].mean() > 2 and data[corner].std() > 1  # ... yet Rician noise
        assert data.max() > 20 * data[corner].mean()
        assert (hu > 700).sum() > 50_000 and ((hu > 20) & (hu < 45)).sum() > 500_000
        (js,) = _find(base / "mr" / sid, "*_T1w.json")
        sidecar = json.loads(js.read_text())
        assert sidecar["Modality"] == "MR" and "MagneticFieldStrength" in sidecar
    # the decoy T2w is not a T1w
    assert all("T1w" not in p.name for p in _find(base / "mr", "*T2w.nii.gz"))


def _frame_times(sidecar: dict) -> tuple[np.ndarray, np.ndarray]:
    if "FrameTimesStart" in sidecar:
        return np.array(sidecar["FrameTimesStart"], float), np.array(sidecar["FrameDuration"], float)
    ft = sidecar["FrameTimes"]
    assert ft["Labels"] == ["start", "end", "duration"] and ft["Units"] == ["s", "s", "s"]
    v = np.array(ft["Values"], float)
    assert np.allclose(v[:, 0] + v[:, 2], v[:, 1])
    return v[:, 0], v[:, 2]


def test_pet_4d_timing_layouts_and_ground_truth(oasis_roots):
    base = oasis_roots["a"]
    sids = demo.pet_session_ids(2, SEED)
    styles = set()
    for sid, tracer, window in ((sids[0], "PIB", (1800, 3600)), (sids[1], "AV45", (3000, 4200))):
        (path,) = _find(base / "pet" / sid, "*_pet.nii.gz")
        assert path.parts[-2] in ("pet1", "NIFTI")
        subj, _, day = sid.split("_")
        assert re.fullmatch(rf"sub-{subj}_(ses|sess)-{day}_acq-{tracer}_pet\.nii\.gz", path.name)
        (js,) = _find(base / "pet" / sid, "*_pet.json")
        sidecar = json.loads(js.read_text())
        assert sidecar["Modality"] == "PT" and sidecar["TracerName"] == tracer
        styles.add("bids" if "FrameTimesStart" in sidecar else "draft")
        start, dur = _frame_times(sidecar)
        img = nib.load(path)
        assert img.ndim == 4 and img.shape[3] == len(start) >= 4
        assert np.all(np.diff(start) > 0)
        end = start + dur
        inside = (start >= window[0]) & (end <= window[1])
        assert inside.sum() >= 2 and (end <= window[0]).sum() >= 2  # frames before and in the window
        gt = nib.load(base / "gt" / f"{sid}_ct.nii.gz")
        assert gt.shape == img.shape[:3] and np.allclose(gt.affine, img.affine)
        data = img.get_fdata(dtype=np.float32)
        hu = np.asarray(gt.dataobj)
        late = data[..., inside].mean(-1)
        assert np.median(late[(hu > 20) & (hu < 45)]) > 10 * abs(np.median(late[hu == -1000]))
    assert styles == {"bids", "draft"}
    # the ground truth never lands inside the raw trees
    assert not _find(base / "mr", "*_ct.nii.gz") and not _find(base / "pet", "*_ct.nii.gz")


def test_oasis_is_deterministic(oasis_roots, tmp_path):
    a, a2 = oasis_roots["a"], oasis_roots["a2"]
    sid = demo.mr_session_ids(1, SEED)[0]
    fa, fa2 = _find(a / "mr" / sid, "*.nii.gz"), _find(a2 / "mr" / sid, "*.nii.gz")
    assert [f.name for f in fa] == [f.name for f in fa2] and len(fa) == 1
    assert fa[0].read_bytes() == fa2[0].read_bytes()  # byte-identical (gzip without timestamps)
    gt = f"{sid}_ct.nii.gz"
    assert (a / "gt" / gt).read_bytes() == (a2 / "gt" / gt).read_bytes()
    # PET: rewrite one session with the same seed, then another seed
    sid = demo.pet_session_ids(4, SEED)[3]
    (first,) = _find(a2 / "pet" / sid, "*.nii.gz")
    before = first.read_bytes()
    demo.write_pet_session(a2 / "pet", a2 / "gt", 3, SEED)
    assert first.read_bytes() == before
    other = tmp_path / "pet"
    demo.write_pet_session(other, tmp_path / "gt", 3, SEED + 1)
    (f_other,) = _find(other, "*.nii.gz")
    assert not np.array_equal(np.asarray(nib.load(f_other).dataobj), np.asarray(nib.load(first).dataobj))
    assert [p.name for p in a2.joinpath("pet").iterdir()] == [sid]  # no partial folder left


def test_mr_and_pet_share_anatomy_but_not_pose():
    mr = oasis._subject_pose(SEED, 3, layout.rng(SEED, "mr-pose", 3))
    pet = oasis._subject_pose(SEED, 3, layout.rng(SEED, "pet-pose", 3))
    assert mr.scale == pet.scale
    assert not np.allclose(mr.rotation, pet.rotation)
    assert all(0.78 < s < 1.05 for s in mr.scale)
