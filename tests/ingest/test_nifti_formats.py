"""NIfTI formats and voxel values: NIfTI-2 is read with the NIfTI-1 geometry checks, a file no
reader opens is refused with each reader's reason, and non-finite voxels are fixed (a few) or
rejected (more than reject.max_nonfinite_fraction)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medcyclegan.config.settings import ingest_settings, modality_settings
from medcyclegan.config.validation import validate_config
from medcyclegan.ingest import IngestError
from medcyclegan.ingest.nifti import fix_nonfinite_voxels, read_nifti_3d
from medcyclegan.ingest.volume import read_plausible_volume
from medcyclegan.testing.hostile_data import REJECT, head_nifti, nifti2, run_volume

AFFINE = np.array([[-1.5, 0, 0, 40.0], [0, -2.0, 0, 30.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1]])


def voxels(dtype=np.float32):
    return np.random.default_rng(0).integers(0, 1000, size=(12, 10, 8)).astype(dtype)


def nifti1(path, data, affine, *, qform=None, sform=None):
    img = nib.Nifti1Image(data, affine)
    img.set_qform(*(qform or (affine, 1)))
    img.set_sform(*(sform or (affine, 1)))
    nib.save(img, path)
    return path


def same_image(a: sitk.Image, b: sitk.Image):
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


# ----------------------------------------------------------------------------- NIfTI-2


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti2_reads_like_nifti1(tmp_path, suffix):
    data = voxels(np.int16)
    n2 = nifti2(tmp_path / f"t1{suffix}", data, AFFINE)
    assert nib.load(n2).header["sizeof_hdr"] == 540  # a real NIfTI-2
    one = read_nifti_3d(nifti1(tmp_path / f"t1_n1{suffix}", data, AFFINE))
    two = read_nifti_3d(n2)
    assert two.GetPixelID() == sitk.sitkFloat32
    same_image(two, one)
    assert two.GetOrigin() == pytest.approx((-40.0, -30.0, -20.0))  # RAS -> LPS


def test_nifti2_scaled_and_single_volume_4d(tmp_path):
    img = nib.Nifti2Image(voxels(np.int16)[..., None], AFFINE)
    img.header.set_slope_inter(0.5, -10.0)
    nib.save(img, tmp_path / "scaled.nii")
    arr = sitk.GetArrayFromImage(read_nifti_3d(tmp_path / "scaled.nii"))
    np.testing.assert_allclose(arr, voxels().T * 0.5 - 10.0)


SHEARED = np.array([[2.0, 0.5, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
SINGULAR = np.array([[3.0, 3, 0, 0], [3, 3, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]])
BAD = {
    "no orientation": {"qform": (AFFINE, 0), "sform": (AFFINE, 0)},
    "singular": {"qform": (AFFINE, 0), "sform": (SINGULAR, 1)},
    "sheared": {"qform": (AFFINE, 0), "sform": (SHEARED, 1)},
    "qform and sform disagree": {"qform": (AFFINE, 1), "sform": (AFFINE @ np.diag([1, 1, 1.3, 1]), 1)},
}
EXPECTED = {
    "no orientation": "no orientation",
    "singular": "not invertible",
    "sheared": "sheared",
    "qform and sform disagree": "qform and sform disagree",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_nifti2_bad_geometry_gets_the_nifti1_refusal(tmp_path, kind):
    data = voxels()
    refusals = []
    for write, name in ((nifti1, "one.nii.gz"), (nifti2, "two.nii.gz")):
        path = write(tmp_path / name, data, AFFINE, **BAD[kind])
        with pytest.raises(IngestError) as err:
            read_nifti_3d(path)
        refusals.append(str(err.value).replace(str(path), "FILE"))
    assert EXPECTED[kind] in refusals[0]
    assert refusals[1] == refusals[0]


# ----------------------------------------------------------------------------- unreadable


def test_unreadable_file_names_each_reader_and_its_reason(tmp_path):
    bad = tmp_path / "t1.nii"
    bad.write_bytes(b"not a NIfTI header at all " * 40)
    with pytest.raises(IngestError) as err:
        read_nifti_3d(bad)
    msg = str(err.value)
    assert str(bad) in msg and "nibabel: " in msg and "SimpleITK: " in msg and "truncated" not in msg


def test_unreadable_single_file_input_is_bad_input_not_a_crash(tmp_path):
    bad = tmp_path / "t1.nii.gz"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(IngestError, match="cannot read the NIfTI file .nibabel: .*; SimpleITK: "):
        read_plausible_volume("mr", bad, reject_cfg=REJECT)


def test_complete_file_simpleitk_refuses_is_not_called_truncated(tmp_path, monkeypatch):
    path = nifti1(tmp_path / "t1.nii.gz", voxels(), AFFINE)

    def refuse(name, *args, **kw):
        raise RuntimeError("Exception thrown in ReadImage: somewhere.cxx:1\nITK ERROR: unsupported intent")

    monkeypatch.setattr(sitk, "ReadImage", refuse)
    with pytest.raises(IngestError) as err:
        read_nifti_3d(path)
    msg = str(err.value)
    assert "SimpleITK cannot read the NIfTI voxel data (ITK ERROR: unsupported intent; nibabel: reads it)" in msg
    assert "truncated" not in msg and "corrupt" not in msg


# ----------------------------------------------------------------------------- non-finite voxels


def image(arr):
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing((2.0, 2.0, 2.0))
    return img


@pytest.mark.parametrize("write", [nifti1, nifti2])
def test_reader_keeps_nonfinite_voxels_itk_would_zero(tmp_path, write):
    """ITK's NIfTI reader turns NaN/Inf into 0; read_nifti_3d gives what the file holds."""
    data = voxels() + 1
    data[0, 0, 0], data[1, 0, 0], data[2, 0, 0] = np.nan, np.inf, -np.inf
    arr = sitk.GetArrayFromImage(read_nifti_3d(write(tmp_path / "t1.nii.gz", data, AFFINE))).T
    assert np.isnan(arr[0, 0, 0]) and arr[1, 0, 0] == np.inf and arr[2, 0, 0] == -np.inf
    np.testing.assert_array_equal(arr[3:], data[3:])


def test_a_few_nonfinite_voxels_become_the_background(tmp_path):
    arr = np.random.default_rng(1).uniform(-500, 900, size=(20, 20, 20)).astype(np.float32)
    arr[0, 0, :4] = np.nan
    arr[1, 0, :3] = np.inf
    arr[2, 0, :1] = -np.inf
    info = {"fixes": ["earlier fix"]}
    fixed = sitk.GetArrayFromImage(fix_nonfinite_voxels(image(arr), info, {"max_nonfinite_fraction": 0.01}, where="x"))
    finite = np.isfinite(arr)
    assert np.isfinite(fixed).all() and np.all(fixed[~finite] == arr[finite].min())
    np.testing.assert_array_equal(fixed[finite], arr[finite])
    assert info["fixes"][0] == "earlier fix"
    assert info["fixes"][1].startswith("8 non-finite voxels (4 NaN, 3 +Inf, 1 -Inf; 0.100% of the image)")
    assert f"background value {arr[finite].min():g}" in info["fixes"][1]


def test_too_many_nonfinite_voxels_rejected_naming_the_fraction():
    arr = np.ones((10, 10, 10), np.float32)
    arr[:2] = np.nan  # 20 %
    with pytest.raises(IngestError, match=r"20\.00% of the voxels \(200 of 1000\).*max_nonfinite_fraction = 0\.1"):
        fix_nonfinite_voxels(image(arr), {}, {"max_nonfinite_fraction": 0.1}, where="x")
    info = {}
    fix_nonfinite_voxels(image(arr), info, {"max_nonfinite_fraction": 0.25}, where="x")
    assert "200 non-finite voxels" in info["fixes"][0]
    with pytest.raises(IngestError, match="max_nonfinite_fraction = 0.01"):  # the schema default
        fix_nonfinite_voxels(image(arr), {}, {}, where="x")
    untouched = image(np.ones((4, 4, 4)))
    assert fix_nonfinite_voxels(untouched, info := {}, {}, where="x") is untouched and info == {}


def test_config_key_reaches_the_ingest_stage():
    cfg = validate_config({"reject": {"max_nonfinite_fraction": 0.2}})
    assert ingest_settings(modality_settings(cfg, "mr"))["reject_cfg"]["max_nonfinite_fraction"] == 0.2
    assert validate_config({})["reject"]["max_nonfinite_fraction"] == 0.01


def nan_head(path, fraction):
    head_nifti(path)
    src = nib.load(path)
    data = np.asarray(src.dataobj, dtype=np.float32)
    picked = np.random.default_rng(2).choice(data.size, int(fraction * data.size), replace=False)
    data[np.unravel_index(picked, data.shape)] = np.nan
    nib.save(nib.Nifti1Image(data, src.affine, src.header), path)
    return path


def test_nonfinite_fix_reaches_fixes_csv_and_rejection_reaches_rejected_csv(tmp_path):
    nii = nan_head(tmp_path / "raw" / "few.nii.gz", 0.002)
    rows, info = run_volume(tmp_path / "a", "mr", nii, "OAS30020_MR_d0100", reject_cfg=REJECT)
    assert rows.empty and any("non-finite voxels (360 NaN" in f for f in info["ingest"]["fixes"])
    fixes = (tmp_path / "a/results/qc/fixes.csv").read_text()
    assert "non-finite voxels" in fixes
    nii = nan_head(tmp_path / "raw" / "many.nii.gz", 0.05)
    cfg = {**REJECT, "max_nonfinite_fraction": 0.02}
    with pytest.raises(IngestError, match="5.00% of the voxels"):
        read_plausible_volume("mr", nii, reject_cfg=cfg)
    rows, _ = run_volume(tmp_path / "b", "mr", nii, "OAS30021_MR_d0100", reject_cfg=cfg)
    assert len(rows) == 1 and "NaN or infinite" in rows.iloc[0].reason
