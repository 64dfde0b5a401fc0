"""Synthetic CT for a planning system: a DICOM MR series in, a DICOM CT series out, in the MR's
frame of reference, checked against the NIfTI sCT of the same run and by dciodvfy and dcm2niix."""

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medcyclegan.inference import predict
from medcyclegan.ingest.volume import read_volume
from medcyclegan.testing.dicom_mr import PATIENT, write_mr_series
from medcyclegan.testing.phantoms import MARKER_RAS, identity_generator, model_folder, phantom

MARKER_LPS = MARKER_RAS * np.array([-1, -1, 1])

#: (NIfTI axis codes, shape, voxel size, obliquity): how the MR was acquired
ACQUISITIONS = {
    "axial": ("LPS", (150, 170, 124), (1.2, 1.1, 1.3), 0.0),
    "sagittal": ("PIL", (150, 170, 130), (1.3, 1.1, 1.4), 0.0),
    "oblique": ("LAS", (120, 190, 100), (1.6, 1.0, 1.9), 12.0),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("model") / "model", "mr2ct", "mr")


def dicom_mr(tmp_path, name, marker=True, study=None):
    """The phantom MR written as a DICOM series (integer values), as a scanner would export it."""
    codes, shape, zooms, oblique = ACQUISITIONS[name]
    nii = tmp_path / f"{name}_{marker}.nii.gz"
    phantom(nii, codes, shape, zooms, marker=marker, oblique_deg=oblique)
    img, _ = read_volume("mr", nii)
    img = sitk.Round(img)
    folder = tmp_path / f"{name}_{marker}_dicom"
    return folder, write_mr_series(img, folder, study=study)


def read_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def marker_lps(img: sitk.Image, without: sitk.Image) -> np.ndarray:
    diff = sitk.GetArrayFromImage(img).astype(float) - sitk.GetArrayFromImage(without).astype(float)
    k, j, i = np.nonzero(diff > 0.5 * diff.max())
    w = diff[k, j, i]
    points = np.array([img.TransformIndexToPhysicalPoint((int(a), int(b), int(c))) for a, b, c in zip(i, j, k)])
    return (points * w[:, None]).sum(0) / w.sum()


@pytest.fixture(scope="module", params=list(ACQUISITIONS))
def run(request, tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp(request.param)
    folder, study = dicom_mr(tmp, request.param)
    folder0, _ = dicom_mr(tmp, request.param, marker=False, study=study)
    out = {}
    for key, src in (("marker", folder), ("plain", folder0)):
        nifti, dicom = tmp / f"sct_{key}.nii.gz", tmp / f"sct_{key}_dicom"
        info = predict.predict(model, src, nifti, output_dicom=dicom, generator=identity_generator)
        out[key] = {"nifti": nifti, "dicom": dicom, "info": info}
    return {"name": request.param, "study": study, "mr": folder, **out}


def test_marker_at_the_same_world_position_in_both_outputs(run):
    for kind in ("nifti", "dicom"):
        read = sitk.ReadImage if kind == "nifti" else read_series
        img, img0 = read(str(run["marker"][kind])), read(str(run["plain"][kind]))
        found = marker_lps(img, img0)
        assert np.linalg.norm(found - MARKER_LPS) <= 1.0, (run["name"], kind, found, MARKER_LPS)


def test_dicom_series_equals_the_nifti_sct(run):
    nifti = sitk.ReadImage(str(run["marker"]["nifti"]))
    dicom = read_series(run["marker"]["dicom"])
    info = run["marker"]["info"]["dicom"]
    files = sorted(run["marker"]["dicom"].glob("*.dcm"))
    by_pydicom = np.stack([pydicom.dcmread(f).pixel_array * 1.0 + 0.0 for f in files])  # slope 1, intercept 0
    np.testing.assert_array_equal(by_pydicom, sitk.GetArrayFromImage(dicom))
    np.testing.assert_allclose(dicom.GetDirection(), np.eye(3).ravel(), atol=1e-6)  # an axial CT series
    if info["grid"] == "input":  # same grid: exactly the NIfTI
        assert run["name"] == "axial"
        np.testing.assert_allclose(dicom.GetOrigin(), nifti.GetOrigin(), atol=1e-4)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(dicom), sitk.GetArrayFromImage(nifti))
        return
    # axial series of a non-axial input: the NIfTI resampled onto the series' grid
    back = sitk.Resample(sitk.Cast(nifti, sitk.sitkFloat32), dicom, sitk.Transform(), sitk.sitkLinear, -1024.0)
    a, b = sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(dicom).astype(np.float32)
    head = (a > -1000) & (b > -1000)
    inner = sitk.GetArrayFromImage(sitk.BinaryErode(sitk.GetImageFromArray(head.astype(np.uint8)), [3, 3, 3])) > 0
    error = np.abs(a - b)[inner]
    if info["grid"] == "input-reoriented":  # axes permuted / flipped only: no interpolation
        assert error.max() <= 0.5 + 1e-3
    else:
        # both come from the same float sCT (the series by linear resampling, then rounding; the
        # NIfTI rounded, then resampled here): they differ by the roundings, measured 0.3 HU mean
        assert error.mean() <= 1.0 and error.max() <= 2.0, (error.mean(), error.max())
        # and read back onto the MR's grid, as a viewer overlaying it would: interpolated twice
        # (measured mean 1.4 HU inside the head; up to ~140 HU at the marker's 3000 HU edge)
        series_back = sitk.Resample(
            sitk.Cast(dicom, sitk.sitkFloat32), nifti, sitk.Transform(), sitk.sitkLinear, -1024.0
        )
        a, b = sitk.GetArrayFromImage(sitk.Cast(nifti, sitk.sitkFloat32)), sitk.GetArrayFromImage(series_back)
        head = sitk.BinaryErode(sitk.GetImageFromArray((a > -1000).astype(np.uint8)), [3, 3, 3])
        assert np.abs(a - b)[sitk.GetArrayFromImage(head) > 0].mean() <= 2.0


def test_uids_patient_and_frame_of_reference_are_the_mrs(run):
    files = sorted(run["marker"]["dicom"].glob("*.dcm"))
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    sops = [str(h.SOPInstanceUID) for h in headers]
    assert len(set(sops)) == len(sops) and all(pydicom.uid.UID(u).is_valid for u in sops)
    assert len({str(h.SeriesInstanceUID) for h in headers}) == 1
    for h in headers[:: max(1, len(headers) // 5)]:
        assert h.StudyInstanceUID == run["study"]["StudyInstanceUID"]
        assert h.FrameOfReferenceUID == run["study"]["FrameOfReferenceUID"]
        assert str(h.PatientName) == PATIENT["PatientName"] and h.PatientID == PATIENT["PatientID"]
        assert h.Modality == "CT" and list(h.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert "research use" in h.ImageComments.lower() and "synthetic ct" in h.SeriesDescription.lower()
    assert run["marker"]["info"]["dicom"]["n_files"] == len(files)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed (Debian dicom3tools)")
def test_dciodvfy_finds_no_error(run):
    files = sorted(run["marker"]["dicom"].glob("*.dcm"))
    for f in (files[0], files[len(files) // 2], files[-1]):
        proc = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, timeout=60)
        lines = (proc.stdout + proc.stderr).splitlines()
        assert not [line for line in lines if line.startswith("Error")], lines
        assert any("CTImage" in line for line in lines), lines


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed (Debian dcm2niix)")
def test_dcm2niix_converts_the_series_back_to_the_nifti_sct(run, tmp_path):
    proc = subprocess.run(
        ["dcm2niix", "-z", "n", "-b", "n", "-o", str(tmp_path), "-f", "sct", str(run["marker"]["dicom"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    converted = sitk.ReadImage(str(tmp_path / "sct.nii"))
    series = read_series(run["marker"]["dicom"])
    on_series = sitk.Resample(converted, series, sitk.Transform(), sitk.sitkNearestNeighbor, -2000.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(on_series), sitk.GetArrayFromImage(series))


def test_nifti_input_gets_a_pseudonymous_patient_and_full_head_translates_more(tmp_path, model):
    nii = tmp_path / "mr.nii.gz"
    phantom(nii, "LPS", (150, 170, 124), (1.2, 1.1, 1.3))
    info = predict.predict(model, nii, output_dicom=tmp_path / "d", generator=identity_generator, patient=None)
    header = pydicom.dcmread(next((tmp_path / "d").glob("*.dcm")), stop_before_pixels=True)
    assert header.PatientID.startswith("SCT-") and pydicom.uid.UID(header.FrameOfReferenceUID).is_valid
    named = predict.predict(
        model,
        nii,
        tmp_path / "n.nii.gz",
        output_dicom=tmp_path / "e",
        generator=identity_generator,
        patient={"patient_id": "RT-0007", "patient_name": "Phantom^Head"},
        full_head=True,
    )
    header = pydicom.dcmread(next((tmp_path / "e").glob("*.dcm")), stop_before_pixels=True)
    assert header.PatientID == "RT-0007" and str(header.PatientName) == "Phantom^Head"
    assert named["n_slices_outside_trained_range"] > 0 and info["n_slices_outside_trained_range"] == 0
    assert named["n_slices_translated"] == info["n_slices_translated"] + named["n_slices_outside_trained_range"]
    assert "outside the trained cranial range were translated" in header.ImageComments
    sct = np.asarray(nib.load(str(tmp_path / "n.nii.gz")).dataobj)
    assert (sct > -1000).any()
