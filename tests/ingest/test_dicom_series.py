"""MR DICOM input: a series or a study folder read with the right geometry, the T1w series chosen
by the documented rules, and bad series refused with one clear reason."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.dicom_series import choose_series, is_dicom_folder, orientation_name
from medcyclegan.ingest.volume import read_volume
from medcyclegan.testing.dicom_mr import PATIENT, write_mr_series

MARKER_LPS = np.array([23.0, -31.0, 41.0])  # off-centre, mm


def rotation(ax_deg: float, ay_deg: float) -> np.ndarray:
    a, b = np.radians(ax_deg), np.radians(ay_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return rx @ ry


#: a sagittal 3D stack as scanners write it: rows along P, columns along I, slices along R (right-handed)
SAGITTAL = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float)


AXIAL = np.eye(3)


def phantom(direction=AXIAL, size=(44, 48, 36), spacing=(1.1, 0.9, 1.3)) -> sitk.Image:
    """A smooth head-like ball (integer values) with a bright marker cube at MARKER_LPS."""
    img = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    centre_index = (np.array(size) - 1) / 2
    centre = np.array(img.TransformContinuousIndexToPhysicalPoint(centre_index.tolist()))
    img.SetOrigin((np.array(img.GetOrigin()) + MARKER_LPS - centre + np.array([-6.0, 5.0, -4.0])).tolist())
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in size[::-1]], indexing="ij"), -1)[..., ::-1]  # [z,y,x] -> (i,j,k)
    world = np.asarray(img.GetOrigin()) + (idx * np.array(spacing)) @ np.asarray(direction).T
    r = np.linalg.norm(world - (MARKER_LPS - np.array([-6.0, 5.0, -4.0])), axis=-1)
    values = np.rint(np.where(r < 18, 400 + 3 * r, 0))
    values[np.all(np.abs(world - MARKER_LPS) <= 2.0, axis=-1)] = 2000
    out = sitk.GetImageFromArray(values.astype(np.float32))
    out.CopyInformation(img)
    return out


def marker_world(img: sitk.Image) -> np.ndarray:
    arr = sitk.GetArrayFromImage(img)
    k, j, i = np.nonzero(arr >= 1500)
    points = [img.TransformIndexToPhysicalPoint((int(a), int(b), int(c))) for a, b, c in zip(i, j, k)]
    return np.mean(points, axis=0)


@pytest.mark.parametrize(
    "name, direction",
    [("axial", np.eye(3)), ("sagittal", SAGITTAL), ("oblique", rotation(20, 15))],
)
def test_series_reads_back_with_exact_geometry(tmp_path, name, direction):
    source = phantom(direction)
    write_mr_series(source, tmp_path / "series")
    img, info = read_volume("mr", tmp_path / "series")
    assert img.GetSize() == source.GetSize()
    np.testing.assert_allclose(img.GetOrigin(), source.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(img.GetSpacing(), source.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(img.GetDirection(), source.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(source))
    assert np.linalg.norm(marker_world(img) - MARKER_LPS) <= 1.0
    assert info["orientation"] == name and info["series"] == "series 1 of 1"
    assert orientation_name(source.GetDirection()) == name


def test_left_handed_stack_is_the_same_world_image(tmp_path):
    """Slices written along -normal (a left-handed voxel order) are re-sorted along the normal:
    other indices, the same image in the world."""
    source = phantom(SAGITTAL * np.array([1, 1, -1]))
    write_mr_series(source, tmp_path / "series")
    img, _ = read_volume("mr", tmp_path / "series")
    back = sitk.Resample(img, source, sitk.Transform(), sitk.sitkNearestNeighbor, -1.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(source))
    assert np.linalg.norm(marker_world(img) - MARKER_LPS) <= 1.0


def test_study_folder_takes_the_t1w_3d_series_and_writes_no_free_text(tmp_path):
    study = tmp_path / "study"
    uids = write_mr_series(phantom(size=(44, 48, 3)), study / "s1", description="3-PLANE LOC", acquisition="2D")
    write_mr_series(phantom(), study / "s2", study=uids, description="T2 TSE AX", acquisition="2D")
    write_mr_series(phantom(SAGITTAL), study / "s3", study=uids, description="t1_mprage_sag_MARKERTEXT")
    write_mr_series(phantom(), study / "s4", study=uids, description="T1 SE AX 2D", acquisition="2D")
    chosen = choose_series(study, "mr")
    assert chosen.rank == 3 and chosen.n_series == 4 and chosen.facts["acquisition"] == "3D"
    assert chosen.others == [
        "series 1 of 4: 3 slices < 20",
        "series 2 of 4: not T1-weighted (description, protocol and sequence name name no T1 sequence)",
        "series 4 of 4: candidate, not chosen (36 slices, 2D)",
    ]
    img, info = read_volume("mr", study)
    assert info["orientation"] == "sagittal"
    text = json.dumps(info)
    assert "MARKER" not in text and "mprage" not in text.lower() and str(study) not in text
    assert all(v not in text for v in PATIENT.values())


def test_missing_slice_and_unusable_series_are_refused_with_the_reason(tmp_path):
    write_mr_series(phantom(), tmp_path / "gap", skip_slices=(17,))
    with pytest.raises(IngestError, match="gap|missing|spacing"):
        read_volume("mr", tmp_path / "gap")
    write_mr_series(phantom(), tmp_path / "flair", description="FLAIR AX")
    with pytest.raises(IngestError, match="not T1-weighted"):
        read_volume("mr", tmp_path / "flair")
    with pytest.raises(IngestError, match="Modality MR, not PT"):
        choose_series(tmp_path / "flair", "pet")


def test_nifti_and_oasis_folders_are_not_taken_for_dicom(tmp_path):
    (tmp_path / "session" / "anat1").mkdir(parents=True)
    (tmp_path / "session" / "anat1" / "x_T1w.nii.gz").touch()
    assert not is_dicom_folder(tmp_path / "session")
    assert not is_dicom_folder(tmp_path / "nothing")
    write_mr_series(phantom(size=(8, 8, 4)), tmp_path / "dcm")
    assert is_dicom_folder(tmp_path / "dcm")
