"""The sCT as a DICOM CT series, refereed by the field's own readers: pydicom, SimpleITK (GDCM),
dciodvfy (dicom3tools) and dcm2niix. The phantom is analytic in world coordinates, so every grid
(axial, oblique, sagittal) samples the same head and the truth is known."""

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_rescale

from medcyclegan.errors import BadInput
from medcyclegan.inference import dicom_sct

SIZE, SPACING = (48, 40, 30), (0.9, 1.1, 2.0)
CENTRE = np.array([12.3, -25.6, 40.2])  # world (LPS) centre of the phantom and of every grid
MARKER = CENTRE + [5.0, -4.0, 6.0]  # the bright cube's centre
MARKER_THRESHOLD = 700.0  # the head's tissue stays below, the marker (+1500 HU) above


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def phantom_hu(p: np.ndarray, edge_mm: float = 2.0) -> np.ndarray:
    """HU at world points ``p`` [..., 3]: an ellipsoidal head of smooth tissue (negative and
    fractional values), air (-1024) outside, and a +1500 HU cube of half-width 4 mm at MARKER."""
    q = (p - CENTRE) / [17.0, 18.0, 19.0]
    head = _smoothstep((1 - np.sqrt((q**2).sum(-1))) * 17.0 / edge_mm)
    x, y, z = np.moveaxis(p - CENTRE, -1, 0)
    tissue = 30.25 + 60 * np.sin(x / 9) * np.cos(y / 11) + 40 * np.cos(z / 13)
    cube = np.prod(_smoothstep((4.0 - np.abs(p - MARKER)) / edge_mm + 0.5), axis=-1)
    return -1024 + (1024 + tissue) * head + 1500 * cube


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


AXIAL = np.eye(3)
OBLIQUE = rotation(0, 20) @ rotation(1, 20)
SAGITTAL = np.array([[0.0, 0, 1], [1, 0, 0], [0, -1, 0]])  # i along +y (P), j along -z (I), k along +x (L)
RAS = np.diag([-1.0, -1.0, 1.0])  # a NIfTI's usual grid, read in LPS


def world_points(image: sitk.Image) -> np.ndarray:
    """World coordinates of every voxel centre, [z, y, x, 3] like the array."""
    size, d = image.GetSize(), np.asarray(image.GetDirection()).reshape(3, 3)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1)[..., None]
    pts = np.asarray(image.GetOrigin()) + (d @ (idx * np.reshape(image.GetSpacing(), (3, 1))))[..., 0]
    return pts.transpose(2, 1, 0, 3)


def phantom(direction: np.ndarray, edge_mm: float = 2.0) -> sitk.Image:
    image = sitk.Image(SIZE, sitk.sitkFloat32)
    image.SetSpacing(SPACING)
    image.SetDirection(tuple(direction.ravel()))
    image.SetOrigin(tuple(CENTRE - direction @ ((np.array(SIZE) - 1) * SPACING / 2)))
    values = sitk.GetImageFromArray(phantom_hu(world_points(image), edge_mm).astype(np.float32))
    values.CopyInformation(image)
    return values


def marker_centre(image: sitk.Image) -> np.ndarray:
    """World centre of mass of the marker (HU above the threshold, weighted by the excess)."""
    w = np.clip(sitk.GetArrayFromImage(image).astype(np.float64) - MARKER_THRESHOLD, 0, None)
    return (world_points(image) * w[..., None]).sum((0, 1, 2)) / w.sum()


def read_series(folder) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def read_sitk(folder) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.fixture(scope="module")
def axial(tmp_path_factory):
    image = phantom(AXIAL, edge_mm=0.5)  # sharp edges: nothing to hide behind a smooth phantom
    out = tmp_path_factory.mktemp("axial") / "sct"
    reference = dicom_sct.pseudonymous_reference()
    return image, out, reference, dicom_sct.write_ct_series(image, out, reference=reference)


def test_an_axial_input_reads_back_voxel_for_voxel(axial):
    image, out, _, result = axial
    expected = np.rint(sitk.GetArrayFromImage(image).astype(np.float64))
    assert expected.min() == -1024 and expected.max() > 1500 and (expected < 0).any()
    assert result["grid"] == "input" and result["n_files"] == SIZE[2] and result["shape"] == SIZE[::-1]
    assert result["files"] == sorted(p.name for p in out.iterdir())
    slices = read_series(out)
    assert [int(ds.InstanceNumber) for ds in slices] == list(range(1, SIZE[2] + 1))
    stack = np.stack([apply_rescale(ds.pixel_array, ds) for ds in slices])
    np.testing.assert_array_equal(stack, expected)
    for k, ds in enumerate(slices):  # inferior to superior, exact positions
        np.testing.assert_allclose(
            [float(v) for v in ds.ImagePositionPatient], image.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-6
        )
        assert float(ds.SliceLocation) == pytest.approx(float(ds.ImagePositionPatient[2]))
    assert [float(v) for v in slices[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in slices[0].PixelSpacing] == [SPACING[1], SPACING[0]]  # row step \ column step
    assert float(slices[0].SliceThickness) == float(slices[0].SpacingBetweenSlices) == SPACING[2]
    back = read_sitk(out)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), expected)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-4)


def test_the_series_carries_what_a_planning_system_reads(axial):
    image, out, reference, result = axial
    slices = read_series(out)
    uids = [ds.SOPInstanceUID for ds in slices]
    assert len(set(uids)) == len(uids) and all(pydicom.uid.UID(u).is_valid for u in uids)
    for ds in slices:
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert ds.SeriesInstanceUID == result["series_uid"] and ds.StudyInstanceUID == reference["StudyInstanceUID"]
        assert ds.FrameOfReferenceUID == reference["FrameOfReferenceUID"]
    ds = slices[0]
    assert pydicom.uid.UID(result["series_uid"]).is_valid and result["series_uid"] not in uids
    assert ds.Modality == "CT" and list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and ds.RescaleType == "HU"
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 1)
    assert "research use only" in ds.ImageComments.lower() and ds.BurnedInAnnotation == "NO"
    assert ds.SoftwareVersions.startswith("medcyclegan") and ds.PatientID.startswith("SCT-")
    assert all(name.startswith("CT_") for name in result["files"])  # names carry no identity


def dciodvfy_errors(path) -> tuple[list[str], str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    return [line for line in output.splitlines() if "Error" in line], output


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
@pytest.mark.parametrize("source", ["pseudonymous", "mr", "oblique"])
def test_dciodvfy_finds_no_errors(tmp_path, source):
    direction = OBLIQUE if source == "oblique" else AXIAL
    mr = pydicom.examples.mr
    ref = dicom_sct.reference_from_dicom(mr) if source == "mr" else dicom_sct.pseudonymous_reference()
    result = dicom_sct.write_ct_series(phantom(direction), tmp_path / "sct", reference=ref)
    for name in [result["files"][0], result["files"][len(result["files"]) // 2], result["files"][-1]]:
        errors, output = dciodvfy_errors(tmp_path / "sct" / name)
        assert not errors, f"{name}:\n{output}"
        assert "CTImage" in output, output  # it did recognise the IOD


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix is not installed")
def test_dcm2niix_converts_the_series_to_the_same_volume(axial, tmp_path):
    image, out, _, _ = axial
    run = subprocess.run(
        ["dcm2niix", "-z", "n", "-o", str(tmp_path), "-f", "sct", str(out)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    nifti = sitk.ReadImage(str(tmp_path / "sct.nii"))
    assert nifti.GetSize() == SIZE
    on_input = sitk.Resample(nifti, image, sitk.Transform(), sitk.sitkNearestNeighbor, -5000.0, sitk.sitkFloat64)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(on_input), np.rint(sitk.GetArrayFromImage(image)))
    assert np.linalg.norm(marker_centre(nifti) - marker_centre(image)) < 1.0
    assert np.linalg.norm(marker_centre(nifti) - MARKER) < 1.0


#: mean |DICOM - input| (HU) after resampling onto the axial grid and back (both linear), 5 mm inside the head's
#: edge: in the smooth tissue 8 mm from the marker (measured 0.18 oblique, 0.17 tilted sagittal, the rounding to
#: whole HU included), and over the whole head (measured 17.2 and 7.8: the +1500 HU marker's 2 mm edges, blurred
#: by two linear interpolations at up to 2 mm steps)
MEAN_TISSUE_BOUND, MEAN_HEAD_BOUND = 1.0, 25.0


@pytest.mark.parametrize(
    "direction, grid",
    [
        (OBLIQUE, "axial-resampled"),
        (rotation(0, 10) @ SAGITTAL, "axial-resampled"),
        (SAGITTAL, "input-reoriented"),
        (RAS, "input-reoriented"),
    ],
    ids=["oblique", "tilted-sagittal", "sagittal", "ras"],
)
def test_a_non_axial_input_is_written_axial_in_the_same_place(tmp_path, direction, grid):
    image = phantom(direction)
    result = dicom_sct.write_ct_series(image, tmp_path / "sct", reference=dicom_sct.pseudonymous_reference())
    assert result["grid"] == grid
    slices = read_series(tmp_path / "sct")
    assert all([float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0] for ds in slices)
    back = read_sitk(tmp_path / "sct")
    np.testing.assert_allclose(back.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    assert np.linalg.norm(marker_centre(back) - MARKER) < 1.0
    assert np.linalg.norm(marker_centre(back) - marker_centre(image)) < 1.0
    # the DICOM back on the input grid, where both are defined and 5 mm inside the head's edge
    on_input = sitk.GetArrayFromImage(
        sitk.Resample(back, image, sitk.Transform(), sitk.sitkLinear, np.nan, sitk.sitkFloat64)
    )
    points = world_points(image)
    inside = (((points - CENTRE) / [17.0 - 5, 18.0 - 5, 19.0 - 5]) ** 2).sum(-1) < 1
    inside &= np.isfinite(on_input)
    tissue = inside & (np.abs(points - MARKER).max(-1) > 8)
    assert tissue.sum() > 0.05 * tissue.size
    error = np.abs(on_input - sitk.GetArrayFromImage(image))
    summary = f"mean {error[tissue].mean():.3f} HU in tissue, {error[inside].mean():.3f} in the head"
    summary += f", max {error[inside].max():.1f}"
    print(f"{grid}: {summary}")
    if grid == "input-reoriented":  # no interpolation at all: only the rounding to whole HU
        np.testing.assert_allclose(on_input[inside], np.rint(sitk.GetArrayFromImage(image))[inside], atol=1e-6)
    assert error[tissue].mean() <= MEAN_TISSUE_BOUND and error[inside].mean() <= MEAN_HEAD_BOUND, summary


def test_the_mr_reference_carries_patient_study_and_coordinates_over(tmp_path):
    mr = pydicom.examples.mr
    reference = dicom_sct.reference_from_dicom(mr)
    result = dicom_sct.write_ct_series(phantom(AXIAL), tmp_path / "sct", reference=reference)
    ds = pydicom.dcmread(tmp_path / "sct" / result["files"][0])
    for keyword in [
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
        "FrameOfReferenceUID",
        "PatientPosition",
    ]:
        assert keyword in reference and ds.get(keyword) == mr.get(keyword), keyword
    assert ds.SeriesInstanceUID != mr.SeriesInstanceUID and ds.SOPInstanceUID != mr.SOPInstanceUID
    no_frame = pydicom.Dataset()
    no_frame.StudyInstanceUID = mr.StudyInstanceUID
    with pytest.raises(BadInput, match="FrameOfReferenceUID"):
        dicom_sct.reference_from_dicom(no_frame)
    with pytest.raises(ValueError, match="SeriesInstanceUID"):
        dicom_sct.write_ct_series(phantom(AXIAL), tmp_path / "x", reference={**reference, "SeriesInstanceUID": "1.2"})


def test_a_failure_midway_leaves_no_partial_series(tmp_path, monkeypatch):
    image, reference = phantom(AXIAL), dicom_sct.pseudonymous_reference()
    write, calls = dicom_sct._write_file, []

    def failing(ds, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        write(ds, path)

    monkeypatch.setattr(dicom_sct, "_write_file", failing)
    with pytest.raises(OSError, match="disk full"):
        dicom_sct.write_ct_series(image, tmp_path / "sct", reference=reference)
    assert list(tmp_path.iterdir()) == []  # neither the series nor a hidden partial folder
    monkeypatch.setattr(dicom_sct, "_write_file", write)
    first = dicom_sct.write_ct_series(image, tmp_path / "sct", reference=reference)
    monkeypatch.setattr(dicom_sct, "_write_file", failing)
    calls.clear()
    with pytest.raises(OSError):
        dicom_sct.write_ct_series(image, tmp_path / "sct", reference=reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sct"]  # the previous series, whole
    assert {ds.SeriesInstanceUID for ds in read_series(tmp_path / "sct")} == {first["series_uid"]}
    assert len(list((tmp_path / "sct").iterdir())) == first["n_files"]


def test_a_folder_holding_other_files_is_not_replaced(tmp_path):
    (tmp_path / "sct").mkdir()
    (tmp_path / "sct" / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="not an sCT series folder"):
        dicom_sct.write_ct_series(phantom(AXIAL), tmp_path / "sct", reference=dicom_sct.pseudonymous_reference())
    assert (tmp_path / "sct" / "notes.txt").read_text() == "mine"
