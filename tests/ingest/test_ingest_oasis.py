"""OASIS-3 MR ingest: session layouts, names, NIfTI orientation into LPS."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.nifti import read_nifti_3d
from medcyclegan.ingest.oasis import find_pet, find_t1w, ingest_mr_session, parse_session_name


def touch_nifti(path: Path, shape=(4, 5, 6), affine=None, data=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.zeros(shape, dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def touch_json(path: Path, content=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content or {"Modality": "MR", "MagneticFieldStrength": 3}))
    return path


# ----------------------------------------------------------------------------- names / layouts


@pytest.mark.parametrize(
    "name, expected",
    [
        ("OAS30001_MR_d0129", {"subject": "OAS30001", "modality_or_tracer": "MR", "day": 129}),
        ("OAS31463_PIB_d0364", {"subject": "OAS31463", "modality_or_tracer": "PIB", "day": 364}),
        ("OAS30001_AV45_d2430", {"subject": "OAS30001", "modality_or_tracer": "AV45", "day": 2430}),
        ("/data/oasis/OAS30001_AV45_d2430/", {"subject": "OAS30001", "modality_or_tracer": "AV45", "day": 2430}),
    ],
)
def test_parse_session_name(name, expected):
    assert parse_session_name(name) == expected


@pytest.mark.parametrize("bad", ["OAS30001_MR", "sub-OAS30001", "OAS30001_MR_0129", "xOAS30001_MR_d0129"])
def test_parse_session_name_rejects(bad):
    with pytest.raises(IngestError, match="not an OASIS-3 session name"):
        parse_session_name(bad)


def test_find_t1w_flat_layout_with_decoys(tmp_path):
    s = tmp_path / "OAS30001_MR_d0129"
    t1 = touch_nifti(s / "anat2" / "sub-OAS30001_ses-d0129_run-01_T1w.nii.gz")
    js = touch_json(s / "anat2" / "sub-OAS30001_ses-d0129_run-01_T1w.json")
    touch_nifti(s / "anat3" / "sub-OAS30001_ses-d0129_run-01_T2w.nii.gz")
    touch_nifti(s / "anat4" / "sub-OAS30001_ses-d0129_FLAIR.nii.gz")
    touch_nifti(s / "func1" / "sub-OAS30001_ses-d0129_task-rest_run-01_bold.nii.gz")
    touch_nifti(s / "dwi1" / "sub-OAS30001_ses-d0129_dwi.nii.gz")
    assert find_t1w(s) == (t1, js)


def test_find_t1w_lowest_run(tmp_path):
    s = tmp_path / "OAS30001_MR_d0129"
    touch_nifti(s / "anat3" / "sub-OAS30001_ses-d0129_run-02_T1w.nii.gz")
    first = touch_nifti(s / "anat5" / "sub-OAS30001_ses-d0129_run-01_T1w.nii.gz")
    nii, side = find_t1w(s)
    assert nii == first and side is None


def test_find_t1w_xnat_layout_sess_no_run(tmp_path):
    s = tmp_path / "OAS30002_MR_d0371"
    t1 = touch_nifti(s / "anat1" / "NIFTI" / "sub-OAS30002_sess-d0371_T1w.nii.gz")
    js = touch_json(s / "anat1" / "BIDS" / "sub-OAS30002_sess-d0371_T1w.json")
    touch_nifti(s / "anat2" / "NIFTI" / "sub-OAS30002_sess-d0371_T2w.nii.gz")
    touch_json(s / "anat2" / "BIDS" / "sub-OAS30002_sess-d0371_T2w.json")
    assert find_t1w(s) == (t1, js)


def test_find_t1w_none(tmp_path):
    s = tmp_path / "OAS30001_MR_d0129"
    touch_nifti(s / "anat3" / "sub-OAS30001_ses-d0129_T2w.nii.gz")
    with pytest.raises(IngestError, match="no T1w MR image found"):
        find_t1w(s)
    with pytest.raises(IngestError, match="does not exist"):
        find_t1w(tmp_path / "missing")


def test_find_pet_ignores_ct(tmp_path):
    s = tmp_path / "OAS31463_PIB_d0364"
    touch_nifti(s / "CT1" / "sub-OAS31463_ses-d0364_ct.nii.gz")
    pet = touch_nifti(s / "pet1" / "sub-OAS31463_ses-d0364_acq-PIB_pet.nii.gz")
    js = touch_json(s / "pet1" / "sub-OAS31463_ses-d0364_acq-PIB_pet.json", {"Modality": "PT"})
    assert find_pet(s) == (pet, js)
    s2 = tmp_path / "OAS30001_AV45_d2430"
    pet2 = touch_nifti(s2 / "pet1" / "NIFTI" / "sub-OAS30001_sess-d2430_acq-AV45_pet.nii.gz")
    js2 = touch_json(s2 / "pet1" / "BIDS" / "sub-OAS30001_sess-d2430_acq-AV45_pet.json")
    assert find_pet(s2) == (pet2, js2)
    s3 = tmp_path / "OAS30001_FDG_d0001"
    touch_nifti(s3 / "pet1" / "sub-OAS30001_ses-d0001_ct.nii.gz")
    with pytest.raises(IngestError, match="no PET image found"):
        find_pet(s3)


# ----------------------------------------------------------------------------- orientation


def sagittal_affine():
    """Sagittal-like storage (axes permuted and flipped): i -> posterior (RAS -y),
    j -> inferior (RAS -z), k -> patient left (RAS +x); spacings 1.2, 0.9, 1.5 mm."""
    a = np.zeros((4, 4))
    a[:3, 0] = [0.0, -1.2, 0.0]  # i: towards posterior
    a[:3, 1] = [0.0, 0.0, -0.9]  # j: towards inferior
    a[:3, 2] = [1.5, 0.0, 0.0]  # k: towards patient left (RAS +x)
    a[:3, 3] = [-30.0, 40.0, 55.0]
    a[3, 3] = 1.0
    return a


def test_read_nifti_3d_orientation_marker(tmp_path):
    shape = (7, 8, 9)
    data = np.zeros(shape, dtype=np.int16)
    idx = (2, 5, 6)
    data[idx] = 1000
    aff = sagittal_affine()
    path = touch_nifti(tmp_path / "t1.nii.gz", data=data, affine=aff)
    ras = aff @ np.array([*idx, 1.0])
    img = read_nifti_3d(path)
    assert img.GetDimension() == 3 and img.GetPixelID() == sitk.sitkFloat32
    assert img.GetSize() == shape
    assert img.GetSpacing() == pytest.approx((1.2, 0.9, 1.5))
    arr = sitk.GetArrayFromImage(img)
    assert arr[idx[2], idx[1], idx[0]] == 1000
    assert img.TransformIndexToPhysicalPoint(idx) == pytest.approx((-ras[0], -ras[1], ras[2]))
    # also through the canonical (RAS-stored) copy: same world point
    canon = nib.as_closest_canonical(nib.load(str(path)))
    cidx = tuple(int(v) for v in np.argwhere(np.asarray(canon.dataobj) == 1000)[0])
    cras = canon.affine @ np.array([*cidx, 1.0])
    np.testing.assert_allclose(cras[:3], ras[:3])


def test_read_nifti_3d_flipped_qform_only(tmp_path):
    """Only a qform (as some converters write): ITK and nibabel must agree."""
    data = np.zeros((5, 6, 7), dtype=np.float32)
    data[1, 2, 3] = 5.0
    aff = np.diag([-2.0, 1.0, -1.0, 1.0])
    aff[:3, 3] = [10, -20, 30]
    img = nib.Nifti1Image(data, None)
    img.set_qform(aff, code=1)
    img.set_sform(None, code=0)
    nib.save(img, str(tmp_path / "q.nii.gz"))
    out = read_nifti_3d(tmp_path / "q.nii.gz")
    ras = aff @ np.array([1, 2, 3, 1.0])
    assert out.TransformIndexToPhysicalPoint((1, 2, 3)) == pytest.approx((-ras[0], -ras[1], ras[2]))


def test_read_nifti_3d_rejects_4d_no_orientation_and_disagreeing_forms(tmp_path):
    p4 = touch_nifti(tmp_path / "dyn.nii.gz", data=np.zeros((4, 4, 4, 3), np.float32))
    with pytest.raises(IngestError, match="4D"):
        read_nifti_3d(p4)
    # a 4D file with one volume is a 3D volume
    p41 = touch_nifti(tmp_path / "one.nii.gz", data=np.ones((4, 5, 6, 1), np.float32))
    assert read_nifti_3d(p41).GetSize() == (4, 5, 6)

    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), None)
    img.set_qform(None, code=0)
    img.set_sform(None, code=0)
    nib.save(img, str(tmp_path / "none.nii.gz"))
    with pytest.raises(IngestError, match="no orientation"):
        read_nifti_3d(tmp_path / "none.nii.gz")

    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), None)
    a = np.diag([2.0, 3.0, 4.0, 1.0])
    img.set_qform(a, code=1)
    img.set_sform(sagittal_affine(), code=2)
    nib.save(img, str(tmp_path / "disagree.nii.gz"))
    with pytest.raises(IngestError, match="disagree"):
        read_nifti_3d(tmp_path / "disagree.nii.gz")


def test_ingest_mr_session(tmp_path):
    s = tmp_path / "OAS30001_MR_d0129"
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    touch_nifti(s / "anat2" / "sub-OAS30001_ses-d0129_run-02_T1w.nii.gz", data=data)
    touch_nifti(s / "anat2" / "sub-OAS30001_ses-d0129_run-01_T1w.nii.gz", data=data, affine=sagittal_affine())
    touch_json(
        s / "anat2" / "sub-OAS30001_ses-d0129_run-01_T1w.json",
        {
            "Modality": "MR",
            "MagneticFieldStrength": 3,
            "RepetitionTime": 2.4,
            "AcquisitionDateTime": "2010-01-01T10:00:00",
            "PatientName": "x",
        },
    )
    img, info = ingest_mr_session(s)
    assert info["file"] == "anat2/sub-OAS30001_ses-d0129_run-01_T1w.nii.gz"
    assert info["sidecar"].endswith("run-01_T1w.json")
    assert info["subject"] == "OAS30001" and info["day"] == 129
    assert len(info["candidates"]) == 2
    assert info["sidecar_fields"] == {"Modality": "MR", "MagneticFieldStrength": 3, "RepetitionTime": 2.4}
    assert info["spacing_mm"] == pytest.approx([1.2, 0.9, 1.5])
    text = json.dumps(info)
    assert "2010-01-01" not in text and "PatientName" not in text
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), data.transpose(2, 1, 0))
