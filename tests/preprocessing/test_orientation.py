"""One marker on the subject's left-anterior-superior side must land at the same canonical
image position whether it came from an axial DICOM CT, a sagittal non-RAS MR NIfTI or a 4D PET."""

import json

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medcyclegan.ingest import pet as pet_ingest
from medcyclegan.ingest.ct import read_ct_series
from medcyclegan.ingest.nifti import read_nifti_3d
from medcyclegan.preprocessing.geometry import to_canonical
from medcyclegan.testing.fake_trees import ras_affine, sample_grid, write_ct_series

MARKER_LPS = np.array([40.0, -50.0, 20.0])  # patient left, anterior, superior (mm)
HEAD_RADIUS = 70.0


def phantom_value(lps_points):
    """Head ball of water with a bright marker ball: a function of LPS world position."""
    d_head = np.linalg.norm(lps_points, axis=-1)
    d_marker = np.linalg.norm(lps_points - MARKER_LPS, axis=-1)
    value = np.where(d_head < HEAD_RADIUS, 100.0, 0.0)
    return np.where(d_marker < 5.0, 1000.0, value)


def marker_canonical_position(img):
    canon = to_canonical(img, (1.0, 1.0, 1.0))
    arr = sitk.GetArrayFromImage(canon)
    z, y, x = np.unravel_index(np.argmax(arr > 0.6 * arr.max()), arr.shape)
    marker = np.argwhere(arr > 0.6 * arr.max()).mean(axis=0)  # centroid, [z, y, x]
    world = np.array(
        canon.TransformContinuousIndexToPhysicalPoint([float(marker[2]), float(marker[1]), float(marker[0])])
    )
    head = np.argwhere(arr > 0.05 * arr.max()).mean(axis=0)
    return world, marker, head


def test_marker_same_place_in_ct_mr_pet(tmp_path):
    # CT: axial DICOM, shuffled file names
    series = tmp_path / "ct" / "CT PLAIN THIN"
    write_ct_series(
        series, n=80, size=96, hu_fn=lambda lps: np.where(phantom_value(lps) > 0, phantom_value(lps), -1000.0)
    )
    ct_world, ct_marker, ct_head = marker_canonical_position(read_ct_series(series))

    # MR: sagittal, array axes (A->P, S->I, R->L): not RAS-ordered
    mr_axes = [[0, 1, 0], [0, 0, -1], [1, 0, 0]]
    mr_spacing = np.array([1.0, 1.2, 1.0])
    mr_shape = (150, 140, 150)
    mr_origin = np.array([-75.0, -75.0, 84.0])
    mr_data = sample_grid(mr_shape, mr_axes, mr_spacing, mr_origin, phantom_value).astype(np.float32)
    mr_path = tmp_path / "mr_T1w.nii.gz"
    nib.save(nib.Nifti1Image(mr_data, ras_affine(mr_axes, mr_spacing, mr_origin)), mr_path)
    assert nib.aff2axcodes(nib.load(mr_path).affine) != ("R", "A", "S")
    mr_world, mr_marker, mr_head = marker_canonical_position(read_nifti_3d(mr_path))

    # PET: 4D, LAS-ordered axial, 2 mm voxels, 3 frames with timing; 30-60 min window = last 2
    pet_axes = [[-1, 0, 0], [0, -1, 0], [0, 0, 1]]
    pet_spacing = np.array([2.0, 2.0, 2.4])
    pet_shape = (90, 90, 70)
    pet_origin = np.array([89.0, 89.0, -83.0])
    frame = sample_grid(pet_shape, pet_axes, pet_spacing, pet_origin, phantom_value).astype(np.float32)
    pet4d = np.stack([frame * 0.2, frame, frame], axis=-1)
    pet_path = tmp_path / "sub-X_ses-d0001_acq-PIB_pet.nii.gz"
    nib.save(nib.Nifti1Image(pet4d, ras_affine(pet_axes, pet_spacing, pet_origin)), pet_path)
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


def test_threaded_gaussian_equals_scipy_bit_for_bit():
    """The anti-aliasing filter runs in slabs on threads; it must give scipy's exact result,
    whatever the slab count, including axes with no blur and axes shorter than the slab count."""
    from scipy import ndimage

    from medcyclegan.preprocessing.geometry import gaussian_filter_threaded

    rng = np.random.default_rng(3)
    cases = [((40, 33, 17), (0.6, 0.9, 0.9)), ((7, 5, 3), (0.5, 0.0, 2.0)), ((30, 1, 9), (1.0, 1.0, 0.0))]
    for shape, sigmas in cases:
        for dtype in (np.float32, np.float64):
            arr = rng.normal(size=shape).astype(dtype)
            before = arr.copy()
            expected = ndimage.gaussian_filter(arr, sigmas, mode="nearest")
            for threads in (1, 2, 3):
                got = gaussian_filter_threaded(arr, sigmas, threads)
                assert got.dtype == expected.dtype
                np.testing.assert_array_equal(got, expected)
            np.testing.assert_array_equal(arr, before)  # input untouched
    unfiltered = rng.normal(size=(4, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(gaussian_filter_threaded(unfiltered, (0, 0, 0), 2), unfiltered)
