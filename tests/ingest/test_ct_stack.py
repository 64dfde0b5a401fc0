"""CT slice stacking: order along the normal, spacing, orientation, duplicates, gantry tilt."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.ct import read_ct_series
from medcyclegan.testing.fake_trees import write_test_series, write_test_slice


def test_slice_order_from_positions_not_names_or_instance_numbers(tmp_path):
    n = 9
    names = [f"CT{k:06d}.dcm" for k in range(n)]
    random.Random(3).shuffle(names)
    values = [np.full((6, 7), 1000 + 10 * k, dtype=np.int16) for k in range(n)]
    for k in range(n):
        values[k][0, 0] = k  # marker
    # instance numbers reversed with respect to position
    write_test_series(tmp_path / "s", n, names=names, instances=list(range(n, 0, -1)), values=values, dz=1.25, z0=10.0)
    img = read_ct_series(tmp_path / "s")
    arr = sitk.GetArrayFromImage(img)
    assert arr.shape == (n, 6, 7)
    assert [int(arr[k, 0, 0]) for k in range(n)] == [k - 1024 for k in range(n)]
    np.testing.assert_array_equal(arr[:, 3, 3], [1000 + 10 * k - 1024 for k in range(n)])
    zs = [img.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(n)]
    assert np.all(np.diff(zs) > 0)
    assert zs == pytest.approx([10.0 + 1.25 * k for k in range(n)])
    assert img.GetOrigin() == pytest.approx((-10.0, -20.0, 10.0))
    assert img.GetSpacing() == pytest.approx((0.6, 0.5, 1.25))
    assert img.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_descending_positions_are_sorted_ascending_along_normal(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    for k in range(5):  # file 0 is the highest slice
        write_test_slice(
            folder / f"CT{k:06d}.dcm", np.full((4, 4), k, dtype=np.int16), ipp=(0, 0, 100.0 - 2.0 * k), intercept=0.0
        )
    img = read_ct_series(folder)
    arr = sitk.GetArrayFromImage(img)
    np.testing.assert_array_equal(arr[:, 0, 0], [4, 3, 2, 1, 0])
    assert img.GetOrigin() == pytest.approx((0, 0, 92.0))


def test_pydicom_ct_small(tmp_path):
    src = get_testdata_file("CT_small.dcm")
    ref = pydicom.dcmread(src)
    (tmp_path / "one").mkdir()
    shutil.copy(src, tmp_path / "one" / "CT000000.dcm")
    img = read_ct_series(tmp_path / "one")
    assert img.GetSize() == (128, 128, 1)
    assert img.GetOrigin() == pytest.approx([float(v) for v in ref.ImagePositionPatient])
    assert img.GetSpacing() == pytest.approx((0.661468, 0.661468, 5.0))
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(img)[0],
        ref.pixel_array.astype(np.float64) * float(ref.RescaleSlope) + float(ref.RescaleIntercept),
    )
    # three copies stacked along z (shuffled names) -> a real series of the real slice
    (tmp_path / "three").mkdir()
    for k, name in zip(range(3), ["b.dcm", "c.dcm", "a.dcm"]):
        ds = pydicom.dcmread(src)
        ds.ImagePositionPatient = [
            ref.ImagePositionPatient[0],
            ref.ImagePositionPatient[1],
            float(ref.ImagePositionPatient[2]) + 5.0 * k,
        ]
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(tmp_path / "three" / name)
    img3 = read_ct_series(tmp_path / "three")
    assert img3.GetSize() == (128, 128, 3)
    assert img3.GetSpacing()[2] == pytest.approx(5.0)
    assert img3.GetOrigin() == pytest.approx([float(v) for v in ref.ImagePositionPatient])


def test_direction_and_origin_match_ipp_iop_for_oblique_series(tmp_path):
    # rotate the axial frame by 30 deg about z, then tilt 20 deg about the new x axis
    a, b = np.radians(30), np.radians(20)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rot = rz @ rx
    r, c, n = rot[:, 0], rot[:, 1], rot[:, 2]
    iop = tuple(r) + tuple(c)
    folder = tmp_path / "s"
    folder.mkdir()
    p0 = np.array([-50.0, 20.0, 30.0])
    ps = (0.7, 0.9)  # row spacing (y), column spacing (x)
    for k in range(4):
        v = np.zeros((5, 6), dtype=np.int16)
        v[1, 2] = 100 + k  # row 1, column 2
        write_test_slice(folder / f"x{3 - k}.dcm", v, ipp=p0 + 1.5 * k * n, iop=iop, pixel_spacing=ps, intercept=0.0)
    img = read_ct_series(folder)
    d = np.array(img.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(d[:, 0], r, atol=1e-6)
    np.testing.assert_allclose(d[:, 1], c, atol=1e-6)
    np.testing.assert_allclose(d[:, 2], np.cross(r, c), atol=1e-6)
    assert img.GetOrigin() == pytest.approx(tuple(p0), abs=1e-5)
    assert img.GetSpacing() == pytest.approx((0.9, 0.7, 1.5))
    arr = sitk.GetArrayFromImage(img)
    for k in range(4):
        assert arr[k, 1, 2] == 100 + k
        # DICOM: voxel (col i, row j) of slice k is at IPP_k + i*colspacing*r + j*rowspacing*c
        expected = p0 + 1.5 * k * n + 2 * 0.9 * r + 1 * 0.7 * c
        assert img.TransformIndexToPhysicalPoint((2, 1, k)) == pytest.approx(tuple(expected), abs=1e-5)


def test_sagittal_series_direction(tmp_path):
    iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # rows run anterior->posterior, columns head->feet
    folder = tmp_path / "s"
    folder.mkdir()
    for k in range(3):
        write_test_slice(
            folder / f"{k}.dcm",
            np.full((4, 5), k, dtype=np.int16),
            ipp=(10.0 + 2.0 * k, -30.0, 60.0),
            iop=iop,
            intercept=0.0,
            pixel_spacing=(1, 1),
        )
    img = read_ct_series(folder)
    d = np.array(img.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(d, [[0, 0, -1], [1, 0, 0], [0, -1, 0]], atol=1e-9)
    # normal is -x (patient right): ascending projection = descending x, first slice at x=14
    assert img.GetOrigin() == pytest.approx((14.0, -30.0, 60.0))
    assert img.GetSpacing() == pytest.approx((1.0, 1.0, 2.0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img)[:, 0, 0], [2, 1, 0])


def test_gap_raises(tmp_path):
    write_test_series(tmp_path / "s", 8)
    (tmp_path / "s" / "CT000004.dcm").unlink()
    with pytest.raises(IngestError, match="not uniform"):
        read_ct_series(tmp_path / "s")


def test_duplicate_positions_and_mixed_orientation_raise(tmp_path):
    # an exact copy of a slice is a documented fix (kept once); a different image at the same
    # position is refused
    write_test_series(tmp_path / "d", 4)
    shutil.copy(tmp_path / "d" / "CT000001.dcm", tmp_path / "d" / "copy.dcm")
    assert read_ct_series(tmp_path / "d").GetSize()[2] == 4
    write_test_slice(tmp_path / "d" / "other.dcm", np.full((8, 10), 7, np.int16), ipp=(-10.0, -20.0, -40.0 + 0.625))
    with pytest.raises(IngestError, match="share the position"):
        read_ct_series(tmp_path / "d")
    # one scout among the slices is dropped (documented fix); many odd orientations are refused
    write_test_series(tmp_path / "o", 4)
    write_test_slice(tmp_path / "o" / "scout.dcm", np.zeros((8, 10), np.int16), iop=(1, 0, 0, 0, 0, -1), ipp=(0, 0, 0))
    assert read_ct_series(tmp_path / "o").GetSize()[2] == 4
    for k in range(3):
        write_test_slice(
            tmp_path / "o" / f"cor{k}.dcm", np.zeros((8, 10), np.int16), iop=(1, 0, 0, 0, 0, -1), ipp=(0, float(k), 0)
        )
    with pytest.raises(IngestError, match="ImageOrientationPatient"):
        read_ct_series(tmp_path / "o")
    write_test_series(tmp_path / "m", 4)
    write_test_slice(tmp_path / "m" / "other.dcm", np.zeros((8, 10), np.int16), ipp=(-10, -20, 100), series_uid="9.9.9")
    with pytest.raises(IngestError, match="mixes 2 DICOM series"):
        read_ct_series(tmp_path / "m")


def test_gantry_tilt_corrected_or_refused(tmp_path):
    folder = tmp_path / "tilt"
    folder.mkdir()
    ny, nx, nz = 12, 10, 6
    # slice k's field of view moves +1 mm (= 1 pixel) in y per 1 mm step in z (45 deg tilt)
    for k in range(nz):
        v = np.zeros((ny, nx), dtype=np.int16)
        # a rod fixed in space at x=3, y=8 (mm): row = 8 - k, column = 3
        v[8 - k, 3] = 500
        write_test_slice(
            folder / f"{k}.dcm", v, ipp=(0.0, float(k), float(k)), pixel_spacing=(1, 1), thickness=1.0, intercept=0.0
        )
    with pytest.raises(IngestError, match="gantry tilt"):
        read_ct_series(folder, gantry_tilt="error")
    img = read_ct_series(folder)
    arr = sitk.GetArrayFromImage(img)
    assert img.GetSpacing() == pytest.approx((1, 1, 1))
    assert arr.shape == (nz, ny + nz - 1, nx)  # enlarged to keep every slice's field of view
    for k in range(nz):
        j, i = np.argwhere(arr[k] == 500)[0]
        assert img.TransformIndexToPhysicalPoint((int(i), int(j), k)) == pytest.approx((3.0, 8.0, float(k)))
    # outside a slice's field of view: fill value
    assert arr[0, -1, 0] == -1024.0


def test_matches_simpleitk_gdcm_reader_on_oblique_series(tmp_path):
    """Independent check: SimpleITK's own (GDCM) series reader gives the same geometry and HU."""
    a = np.radians(25)
    r = np.array([np.cos(a), np.sin(a), 0.0])
    c = np.array([0.0, 0.0, -1.0])  # coronal-ish oblique
    n = np.cross(r, c)
    folder = tmp_path / "s"
    folder.mkdir()
    rng = np.random.default_rng(5)
    names = ["q.dcm", "a.dcm", "m.dcm", "c.dcm", "z.dcm"]
    for k, name in enumerate(names):
        write_test_slice(
            folder / name,
            rng.integers(-1000, 2000, size=(6, 7)).astype(np.int16),
            ipp=np.array([5.0, -7.0, 12.0]) + 0.8 * k * n,
            iop=tuple(r) + tuple(c),
            pixel_spacing=(0.45, 0.55),
            thickness=0.8,
            intercept=-3.0,
            slope=1.0,
            instance=len(names) - k,
        )
    ours = read_ct_series(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    ref = reader.Execute()
    assert ours.GetOrigin() == pytest.approx(ref.GetOrigin(), abs=1e-4)
    assert ours.GetSpacing() == pytest.approx(ref.GetSpacing(), abs=1e-4)
    assert ours.GetDirection() == pytest.approx(ref.GetDirection(), abs=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(ref).astype(np.float32))


def test_gantry_tilt_16deg_linear_field_is_exact(tmp_path):
    """A real-looking tilted series (IOP tilted by 16 deg, table moving along z): after the
    correction every voxel holds the value of a linear field f at its physical point."""
    t = np.radians(16.0)
    r = np.array([1.0, 0.0, 0.0])
    c = np.array([0.0, np.cos(t), -np.sin(t)])
    ps = (0.8, 0.7)  # row spacing (y), column spacing (x)

    def f(p):
        return 2.0 * p[..., 0] + 3.0 * p[..., 1] + 5.0 * p[..., 2]

    folder = tmp_path / "tilt16"
    folder.mkdir()
    ny, nx, nz, table_step = 20, 16, 7, 2.5
    jj, ii = np.mgrid[0:ny, 0:nx]
    for k in range(nz):
        ipp = np.array([-6.0, -8.0, 40.0 + table_step * k])
        pts = ipp + ii[..., None] * ps[1] * r + jj[..., None] * ps[0] * c
        stored = np.round(f(pts) * 100).astype(np.int16)
        write_test_slice(
            folder / f"{nz - k}.dcm",
            stored,
            ipp=ipp,
            iop=tuple(r) + tuple(c),
            pixel_spacing=ps,
            slope=0.01,
            intercept=0.0,
            thickness=2.5,
        )
    img = read_ct_series(folder)
    assert img.GetSpacing()[2] == pytest.approx(table_step * np.cos(t))
    arr = sitk.GetArrayFromImage(img)
    valid = arr != -1024.0
    # shifted slices keep their full field of view: grid enlarged, the rest filled
    assert arr.shape[1] > ny and valid.sum() >= nz * (ny - 1) * (nx - 1)
    zz, yy, xx = np.nonzero(valid)
    phys = np.array(
        [img.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z))) for z, y, x in zip(zz, yy, xx)]
    )
    inner = np.abs(arr[valid] - f(phys)) < 0.02
    # only the interpolated border pixels (mixed with the fill value) may differ
    assert inner.mean() > 0.85
    border_free = valid & np.roll(valid, 1, 1) & np.roll(valid, -1, 1)
    zz, yy, xx = np.nonzero(border_free)
    phys = np.array([img.TransformIndexToPhysicalPoint((int(x), int(y), int(z))) for z, y, x in zip(zz, yy, xx)])
    np.testing.assert_allclose(arr[border_free], f(phys), atol=0.02)
