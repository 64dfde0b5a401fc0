"""CQ500 CT ingest: series listing/selection, slice geometry, HU, compressed pixel data."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.ct import (
    ingest_ct_study,
    list_series,
    read_ct_series,
    select_series,
)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


# ----------------------------------------------------------------------------- helpers


def write_slice(
    path: Path,
    stored: np.ndarray,
    *,
    ipp=(0.0, 0.0, 0.0),
    iop=AXIAL,
    pixel_spacing=(0.5, 0.6),
    thickness=0.625,
    slope=1.0,
    intercept=-1024.0,
    instance=1,
    description="PLAIN THIN",
    kernel="STANDARD",
    series_uid="1.2.3.4",
    compress=None,
    contrast_agent=None,
) -> None:
    """Write one CT slice with ``stored`` (rows x cols) as the stored pixel values."""
    stored = np.asarray(stored)
    signed = stored.dtype.kind == "i"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = "1.2.3"
    ds.PatientName = "Doe^John"
    ds.PatientID = "SECRET-ID-123"
    ds.StudyDate = "19990101"
    ds.Modality = "CT"
    ds.SeriesDescription = description
    ds.ConvolutionKernel = kernel
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    if contrast_agent is not None:
        ds.ContrastBolusAgent = contrast_agent
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in ipp]
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = thickness
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    arr = stored.astype(np.int16 if signed else np.uint16)
    ds.PixelData = arr.tobytes()
    if compress is not None:
        ds.compress(compress, arr)
    ds.save_as(path, enforce_file_format=True)


def write_series(
    folder: Path,
    n: int,
    *,
    shape=(8, 10),
    dz=0.625,
    z0=-40.0,
    names=None,
    instances=None,
    values=None,
    **kw,
) -> list[np.ndarray]:
    """A series of ``n`` axial slices; slice k (ascending z) holds stored values ``values[k]``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"CT{k:06d}.dcm" for k in range(n)]
    instances = instances or list(range(1, n + 1))
    out = []
    for k in range(n):
        v = values[k] if values is not None else np.full(shape, 1024 + k, dtype=np.int16)
        write_slice(folder / names[k], v, ipp=(-10.0, -20.0, z0 + k * dz), instance=instances[k], **kw)
        out.append(v)
    return out


# ----------------------------------------------------------------------------- selection


def fake_table(rows):
    base = dict(
        image_type="ORIGINAL\\PRIMARY\\AXIAL",
        convolution_kernel="STANDARD",
        rows=512,
        columns=512,
        modality="CT",
        transfer_syntax="1.2.840.10008.1.2.4.90",
        number_of_frames=1,
        contrast_agent="",
        error="",
    )
    return pd.DataFrame([{**base, **r} for r in rows])


def test_select_series_fake_table():
    table = fake_table(
        [
            dict(series_dir="/s/CT PLAIN THIN", description="PLAIN THIN", n_files=240, slice_thickness_mm=0.625),
            dict(series_dir="/s/CT PLAIN THIN-2", description="PLAIN THIN", n_files=240, slice_thickness_mm=0.625),
            dict(
                series_dir="/s/CT BONE",
                description="BONE",
                n_files=240,
                slice_thickness_mm=0.625,
                convolution_kernel="BONE",
            ),
            dict(
                series_dir="/s/CT 0.625mm",
                description="0.625mm",
                n_files=256,
                slice_thickness_mm=0.625,
                convolution_kernel="BONEPLUS",
            ),
            dict(series_dir="/s/CT 5mm", description="5mm", n_files=36, slice_thickness_mm=5.0),
            dict(series_dir="/s/CT POST CONTRAST", description="POST CONTRAST", n_files=300, slice_thickness_mm=0.625),
            dict(series_dir="/s/CT Thin Plain", description="Thin Plain", n_files=240, slice_thickness_mm=0.5),
            dict(
                series_dir="/s/CT PRE CONTRAST THIN",
                description="PRE CONTRAST THIN",
                n_files=200,
                slice_thickness_mm=0.625,
            ),
            dict(series_dir="/s/CT short", description="short", n_files=30, slice_thickness_mm=0.625),
        ]
    )
    row, reasons = select_series(table)
    # 240 slices three times: thinner (0.5 mm) wins
    assert row["series_dir"] == "/s/CT Thin Plain"
    assert "bone" in reasons["/s/CT BONE"].lower()
    assert "BONEPLUS" in reasons["/s/CT 0.625mm"]  # kernel matched
    assert "5 mm > max 1.5" in reasons["/s/CT 5mm"]
    assert "36 slices < min 64" in reasons["/s/CT 5mm"]
    assert "post" in reasons["/s/CT POST CONTRAST"].lower()
    assert "30 slices < min 64" in reasons["/s/CT short"]
    # "PRE CONTRAST" is plain: a candidate (not chosen), not an exclusion
    assert reasons["/s/CT PRE CONTRAST THIN"].startswith("candidate, not chosen")
    assert row["series_dir"] not in reasons

    # ties on slices and thickness: name order
    row2, _ = select_series(table[table.series_dir != "/s/CT Thin Plain"])
    assert row2["series_dir"] == "/s/CT PLAIN THIN"

    # the contrast tag excludes too
    t3 = fake_table(
        [dict(series_dir="/s/a", description="HEAD", n_files=100, slice_thickness_mm=1.0, contrast_agent="OMNIPAQUE")]
    )
    with pytest.raises(IngestError, match="ContrastBolusAgent"):
        select_series(t3)
    row3, _ = select_series(t3, use_contrast_tag=False)
    assert row3["series_dir"] == "/s/a"


def test_select_series_none_qualifies_lists_reasons():
    table = fake_table(
        [
            dict(series_dir="/s/CT BONE", description="BONE", n_files=240, slice_thickness_mm=0.625),
            dict(series_dir="/s/CT 5mm", description="5mm", n_files=36, slice_thickness_mm=5.0),
        ]
    )
    with pytest.raises(IngestError) as err:
        select_series(table)
    msg = str(err.value)
    assert "/s/CT BONE" in msg and "/s/CT 5mm" in msg and "bone" in msg and "5 mm > max" in msg


def make_study(root: Path) -> Path:
    """A tiny CQ500-like study with the nested 'CQ500CT7 CQ500CT7' folder (spaces)."""
    study = root / "CQ500-CT-7"
    base = study / "CQ500CT7 CQ500CT7" / "Unknown Study"
    write_series(base / "CT PLAIN THIN", 12, description="PLAIN THIN")
    write_series(base / "CT PLAIN THIN-2", 12, description="PLAIN THIN")
    write_series(base / "CT BONE", 12, description="BONE", kernel="BONE")
    write_series(base / "CT 5mm", 3, dz=5.0, thickness=5.0, description="5mm")
    write_series(base / "CT POST CONTRAST", 14, description="POST CONTRAST")
    # extension-less DICOM files and a stray text file
    write_series(
        base / "CT Plain 3mm", 12, dz=3.0, thickness=3.0, description="Plain 3mm", names=[f"IM{k}" for k in range(12)]
    )
    (base / "CT PLAIN THIN" / "notes.txt").write_text("not dicom")
    return study


def test_list_series_real_tree(tmp_path):
    study = make_study(tmp_path)
    table = list_series(study)
    assert len(table) == 6
    by_name = {Path(p).name: r for p, r in zip(table.series_dir, table.to_dict("records"))}
    assert by_name["CT PLAIN THIN"]["n_files"] == 12  # notes.txt not counted
    assert by_name["CT Plain 3mm"]["n_files"] == 12  # extension-less files found
    assert by_name["CT 5mm"]["slice_thickness_mm"] == 5.0
    assert by_name["CT BONE"]["convolution_kernel"] == "BONE"
    assert by_name["CT PLAIN THIN"]["rows"] == 8 and by_name["CT PLAIN THIN"]["columns"] == 10
    assert by_name["CT PLAIN THIN"]["transfer_syntax"] == ExplicitVRLittleEndian
    for col in [
        "series_dir",
        "description",
        "n_files",
        "slice_thickness_mm",
        "image_type",
        "convolution_kernel",
        "rows",
        "columns",
        "transfer_syntax",
    ]:
        assert col in table.columns

    row, reasons = select_series(table, min_slices=10)
    assert Path(row["series_dir"]).name == "CT PLAIN THIN"
    names = {Path(k).name: v for k, v in reasons.items()}
    assert names["CT PLAIN THIN-2"].startswith("candidate, not chosen")
    assert "bone" in names["CT BONE"].lower()
    assert "5 mm > max" in names["CT 5mm"]
    assert "post" in names["CT POST CONTRAST"].lower()
    assert "3 mm > max" in names["CT Plain 3mm"]


def test_ingest_ct_study_info_is_clean_json(tmp_path):
    study = make_study(tmp_path)
    img, info = ingest_ct_study(
        study, {"max_slice_thickness_mm": 1.5, "min_slices": 10, "exclude_patterns": ["bone", "contrast", "post"]}
    )
    assert img.GetSize() == (10, 8, 12)
    assert info["series_description"] == "PLAIN THIN"
    assert info["series_folder"].endswith("CT PLAIN THIN")
    assert info["n_slices"] == 12
    assert info["spacing_mm"] == pytest.approx([0.6, 0.5, 0.625])
    assert info["transfer_syntax"] == ["Explicit VR Little Endian"]
    assert set(Path(k).name for k in info["rejected"]) == {
        "CT PLAIN THIN-2",
        "CT BONE",
        "CT 5mm",
        "CT POST CONTRAST",
        "CT Plain 3mm",
    }
    text = json.dumps(info)
    for secret in ("Doe", "SECRET-ID-123", "19990101", "1.2.3.4"):
        assert secret not in text
    with pytest.raises(IngestError, match="unknown keys"):
        ingest_ct_study(study, {"min_slice": 3})


def test_ingest_falls_back_when_best_series_is_broken(tmp_path):
    study = tmp_path / "s"
    write_series(study / "CT A", 13, description="A")
    (study / "CT A" / "CT000005.dcm").unlink()  # 12 files with a gap: ranks first, cannot be read
    write_series(study / "CT B", 11, description="B")
    img, info = ingest_ct_study(study, {"min_slices": 10})
    assert info["series_folder"] == "CT B"
    assert img.GetSize()[2] == 11
    assert "could not be read" in info["rejected"]["CT A"] and "not uniform" in info["rejected"]["CT A"]


# ----------------------------------------------------------------------------- geometry


def test_slice_order_from_positions_not_names_or_instance_numbers(tmp_path):
    n = 9
    names = [f"CT{k:06d}.dcm" for k in range(n)]
    random.Random(3).shuffle(names)
    values = [np.full((6, 7), 1000 + 10 * k, dtype=np.int16) for k in range(n)]
    for k in range(n):
        values[k][0, 0] = k  # marker
    # instance numbers reversed with respect to position
    write_series(tmp_path / "s", n, names=names, instances=list(range(n, 0, -1)), values=values, dz=1.25, z0=10.0)
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
        write_slice(
            folder / f"CT{k:06d}.dcm", np.full((4, 4), k, dtype=np.int16), ipp=(0, 0, 100.0 - 2.0 * k), intercept=0.0
        )
    img = read_ct_series(folder)
    arr = sitk.GetArrayFromImage(img)
    np.testing.assert_array_equal(arr[:, 0, 0], [4, 3, 2, 1, 0])
    assert img.GetOrigin() == pytest.approx((0, 0, 92.0))


@pytest.mark.parametrize("signed", [True, False])
def test_hu_rescale(tmp_path, signed):
    rng = np.random.default_rng(0)
    if signed:
        stored = [rng.integers(-600, 1500, size=(5, 6)).astype(np.int16) for _ in range(3)]
    else:
        stored = [rng.integers(0, 4000, size=(5, 6)).astype(np.uint16) for _ in range(3)]
    write_series(tmp_path / "s", 3, values=stored, slope=2.0, intercept=-1024.0)
    arr = sitk.GetArrayFromImage(read_ct_series(tmp_path / "s"))
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, np.stack(stored).astype(np.float64) * 2.0 - 1024.0)


@pytest.mark.parametrize("signed", [True, False])
def test_jpeg2000_lossless_decoding_exact(tmp_path, signed):
    rng = np.random.default_rng(1)
    if signed:
        stored = [rng.integers(-1024, 3000, size=(64, 48)).astype(np.int16) for _ in range(3)]
        intercept = 0.0
    else:
        stored = [rng.integers(0, 4095, size=(64, 48)).astype(np.uint16) for _ in range(3)]
        intercept = -1024.0
    write_series(tmp_path / "s", 3, values=stored, intercept=intercept, compress=JPEG2000Lossless)
    ds = pydicom.dcmread(next((tmp_path / "s").iterdir()))
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    table = list_series(tmp_path / "s")
    assert table.loc[0, "transfer_syntax"] == JPEG2000Lossless
    arr = sitk.GetArrayFromImage(read_ct_series(tmp_path / "s"))
    np.testing.assert_array_equal(arr, np.stack(stored).astype(np.float64) + intercept)


def test_missing_decoder_names_transfer_syntax_and_package(tmp_path, monkeypatch):
    stored = [np.full((64, 64), 100, dtype=np.int16) for _ in range(2)]
    write_series(tmp_path / "s", 2, values=stored, compress=JPEG2000Lossless)

    class NoDecoder:
        is_available = False
        missing_dependencies = ["pylibjpeg"]

    import pydicom.pixels

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: NoDecoder())
    with pytest.raises(IngestError) as err:
        read_ct_series(tmp_path / "s")
    msg = str(err.value)
    assert "JPEG 2000" in msg and "pylibjpeg-openjpeg" in msg and "pip install" in msg


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
        write_slice(folder / f"x{3 - k}.dcm", v, ipp=p0 + 1.5 * k * n, iop=iop, pixel_spacing=ps, intercept=0.0)
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
        write_slice(
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
    write_series(tmp_path / "s", 8)
    (tmp_path / "s" / "CT000004.dcm").unlink()
    with pytest.raises(IngestError, match="not uniform"):
        read_ct_series(tmp_path / "s")


def test_duplicate_positions_and_mixed_orientation_raise(tmp_path):
    # an exact copy of a slice is a documented fix (kept once); a different image at the same
    # position is refused
    write_series(tmp_path / "d", 4)
    shutil.copy(tmp_path / "d" / "CT000001.dcm", tmp_path / "d" / "copy.dcm")
    assert read_ct_series(tmp_path / "d").GetSize()[2] == 4
    write_slice(tmp_path / "d" / "other.dcm", np.full((8, 10), 7, np.int16), ipp=(-10.0, -20.0, -40.0 + 0.625))
    with pytest.raises(IngestError, match="share the position"):
        read_ct_series(tmp_path / "d")
    # one scout among the slices is dropped (documented fix); many odd orientations are refused
    write_series(tmp_path / "o", 4)
    write_slice(tmp_path / "o" / "scout.dcm", np.zeros((8, 10), np.int16), iop=(1, 0, 0, 0, 0, -1), ipp=(0, 0, 0))
    assert read_ct_series(tmp_path / "o").GetSize()[2] == 4
    for k in range(3):
        write_slice(
            tmp_path / "o" / f"cor{k}.dcm", np.zeros((8, 10), np.int16), iop=(1, 0, 0, 0, 0, -1), ipp=(0, float(k), 0)
        )
    with pytest.raises(IngestError, match="ImageOrientationPatient"):
        read_ct_series(tmp_path / "o")
    write_series(tmp_path / "m", 4)
    write_slice(tmp_path / "m" / "other.dcm", np.zeros((8, 10), np.int16), ipp=(-10, -20, 100), series_uid="9.9.9")
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
        write_slice(
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
        write_slice(
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
        write_slice(
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


def test_parallel_decode_matches_serial_and_reports_a_truncated_file(tmp_path):
    """A compressed series of PARALLEL_MIN_FILES or more is decoded by forked workers: same
    volume as the serial read, and a damaged file still fails the read, naming that file."""
    from medcyclegan.ingest import ct

    rng = np.random.default_rng(3)
    n = ct.PARALLEL_MIN_FILES + 4
    stored = [rng.integers(0, 4095, size=(64, 48)).astype(np.uint16) for _ in range(n)]
    write_series(tmp_path / "s", n, values=stored, compress=JPEG2000Lossless)
    serial, _ = ct._read_ct_series(tmp_path / "s", workers=1)
    parallel, _ = ct._read_ct_series(tmp_path / "s", workers=2)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(parallel), sitk.GetArrayFromImage(serial))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(parallel), np.stack(stored).astype(np.float32) - 1024.0)
    bad = tmp_path / "s" / "CT000017.dcm"
    bad.write_bytes(bad.read_bytes()[:-40])  # pixel data cut short
    for workers in (1, 2):
        with pytest.raises(IngestError, match="CT000017.dcm"):
            ct._read_ct_series(tmp_path / "s", workers=workers)


def test_canonical_ct_is_whole_hu_int16_within_half_a_hu_of_the_resampled_float(tmp_path):
    """The canonical CT on disk is int16 HU: the float resampling rounded, nothing else changed."""
    from medcyclegan.preprocessing.geometry import to_canonical
    from medcyclegan.testing.hostile_data import CT_RULES, write_ct
    from medcyclegan.workflow import jobs as pipeline

    study = tmp_path / "CQ500-CT-1"
    write_ct(study / "CT PLAIN", n=40, size=48, spacing=2.7, thickness=2.5)
    out = tmp_path / "out.nii.gz"
    spacing = [2.0, 2.0, 2.0]
    pipeline.ingest(
        "ct", str(study), "CQ500-CT-1", str(out), str(tmp_path / "out.json"), spacing_mm=spacing, ct_series=CT_RULES
    )
    assert json.loads((tmp_path / "out.json").read_text())["status"] == "ok"
    written = sitk.ReadImage(str(out))
    assert written.GetPixelID() == sitk.sitkInt16
    img, _ = ingest_ct_study(study, CT_RULES)
    expected = to_canonical(img, spacing, default_value=-1024.0)
    assert written.GetSize() == expected.GetSize() and written.GetOrigin() == pytest.approx(expected.GetOrigin())
    diff = sitk.GetArrayFromImage(written) - sitk.GetArrayFromImage(expected)
    assert np.abs(diff).max() <= 0.5 + 1e-3
    assert np.ptp(sitk.GetArrayFromImage(expected)) > 500  # a real HU range, not a blank volume
