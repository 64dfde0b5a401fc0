"""One marker on the subject's left-anterior-superior side must land at the same canonical
image position whether it came from an axial DICOM CT, a sagittal non-RAS MR NIfTI or a 4D PET."""

import json

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medcyclegan.geometry import to_canonical
from medcyclegan.ingest import ct as ct_ingest
from medcyclegan.ingest import oasis
from medcyclegan.ingest import pet as pet_ingest

MARKER_LPS = np.array([40.0, -50.0, 20.0])  # patient left, anterior, superior (mm)
HEAD_RADIUS = 70.0


def phantom_value(lps_points):
    """Head ball of water with a bright marker ball: a function of LPS world position."""
    d_head = np.linalg.norm(lps_points, axis=-1)
    d_marker = np.linalg.norm(lps_points - MARKER_LPS, axis=-1)
    value = np.where(d_head < HEAD_RADIUS, 100.0, 0.0)
    return np.where(d_marker < 5.0, 1000.0, value)


def write_axial_dicom(folder, spacing=2.0, n=80, size=96):
    folder.mkdir(parents=True)
    uid = generate_uid()
    origin = np.array([-(size - 1) / 2 * spacing, -(size - 1) / 2 * spacing, -(n - 1) / 2 * spacing])
    rows, cols = np.indices((size, size))
    order = np.random.default_rng(0).permutation(n)  # file names unrelated to position
    for file_index, k in enumerate(order):
        pts = np.stack([origin[0] + cols * spacing, origin[1] + rows * spacing, np.full(cols.shape, origin[2] + k * spacing)], -1)
        hu = np.where(phantom_value(pts) > 0, phantom_value(pts), -1000.0)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesDescription = "CT", uid, "CT PLAIN THIN"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + k * spacing)]
        ds.PixelSpacing = [spacing, spacing]
        ds.SliceThickness = spacing
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.InstanceNumber = int(file_index + 1)
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"CT{file_index:06d}.dcm", enforce_file_format=True)
    return folder


def ras_affine_from_lps_axes(axes_lps, spacing, origin_lps):
    """NIfTI affine (RAS) whose voxel axes run along the given LPS unit vectors."""
    flip = np.diag([-1, -1, 1])
    aff = np.eye(4)
    aff[:3, :3] = flip @ (np.array(axes_lps, float).T * np.array(spacing))
    aff[:3, 3] = flip @ np.array(origin_lps)
    return aff


def sample_nifti_grid(shape, axes_lps, spacing, origin_lps):
    idx = np.indices(shape).reshape(3, -1).T.astype(float)
    lps = origin_lps + (idx * spacing) @ np.array(axes_lps, float)
    return phantom_value(lps).reshape(shape)


def marker_canonical_position(img):
    canon = to_canonical(img, (1.0, 1.0, 1.0))
    arr = sitk.GetArrayFromImage(canon)
    z, y, x = np.unravel_index(np.argmax(arr > 0.6 * arr.max()), arr.shape)
    marker = np.argwhere(arr > 0.6 * arr.max()).mean(axis=0)  # centroid, [z, y, x]
    world = np.array(canon.TransformContinuousIndexToPhysicalPoint([float(marker[2]), float(marker[1]), float(marker[0])]))
    head = np.argwhere(arr > 0.05 * arr.max()).mean(axis=0)
    return world, marker, head


def test_marker_same_place_in_ct_mr_pet(tmp_path):
    # CT: axial DICOM, shuffled file names
    series = write_axial_dicom(tmp_path / "ct" / "CT PLAIN THIN")
    ct_world, ct_marker, ct_head = marker_canonical_position(ct_ingest.read_ct_series(series))

    # MR: sagittal, array axes (A->P, S->I, R->L): not RAS-ordered
    mr_axes = [[0, 1, 0], [0, 0, -1], [1, 0, 0]]
    mr_spacing = np.array([1.0, 1.2, 1.0])
    mr_shape = (150, 140, 150)
    mr_origin = np.array([-75.0, -75.0, 84.0])
    mr_data = sample_nifti_grid(mr_shape, mr_axes, mr_spacing, mr_origin).astype(np.float32)
    mr_path = tmp_path / "mr_T1w.nii.gz"
    nib.save(nib.Nifti1Image(mr_data, ras_affine_from_lps_axes(mr_axes, mr_spacing, mr_origin)), mr_path)
    assert nib.aff2axcodes(nib.load(mr_path).affine) != ("R", "A", "S")
    mr_world, mr_marker, mr_head = marker_canonical_position(oasis.read_nifti_3d(mr_path))

    # PET: 4D, LAS-ordered axial, 2 mm voxels, 3 frames with timing; 30-60 min window = last 2
    pet_axes = [[-1, 0, 0], [0, -1, 0], [0, 0, 1]]
    pet_spacing = np.array([2.0, 2.0, 2.4])
    pet_shape = (90, 90, 70)
    pet_origin = np.array([89.0, 89.0, -83.0])
    frame = sample_nifti_grid(pet_shape, pet_axes, pet_spacing, pet_origin).astype(np.float32)
    pet4d = np.stack([frame * 0.2, frame, frame], axis=-1)
    pet_path = tmp_path / "sub-X_ses-d0001_acq-PIB_pet.nii.gz"
    nib.save(nib.Nifti1Image(pet4d, ras_affine_from_lps_axes(pet_axes, pet_spacing, pet_origin)), pet_path)
    sidecar = {"FrameTimesStart": [0, 1800, 2700], "FrameDuration": [1800, 900, 900]}
    (tmp_path / "sub-X_ses-d0001_acq-PIB_pet.json").write_text(json.dumps(sidecar))
    pet_img, info = pet_ingest.sum_pet(pet_path, sidecar, "PIB", {"PIB": [30, 60]}, [-2, None], 0.5)
    pet_world, pet_marker, pet_head = marker_canonical_position(pet_img)

    for world in (ct_world, mr_world, pet_world):
        assert np.allclose(world, MARKER_LPS, atol=1.5), world
    for marker, head in ((ct_marker, ct_head), (mr_marker, mr_head), (pet_marker, pet_head)):
        # canonical axial slice: anterior at the top (smaller row), patient left on the image right
        assert marker[1] < head[1] - 30 and marker[2] > head[2] + 25 and marker[0] > head[0] + 10
    assert np.allclose(ct_marker, mr_marker, atol=1.5) or np.allclose(ct_world, mr_world, atol=1.5)
