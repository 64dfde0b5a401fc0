"""A CQ500 study read in place from its zip (``CQ500-CT-{n}.zip``): the same series, selection,
checks and voxels as its unzipped folder; members named inside the archive; damaged archives
refused; one member in memory at a time."""

from __future__ import annotations

import os
import shutil
import zipfile

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless, generate_uid

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.ct import ingest_ct_study
from medcyclegan.ingest.ct_series import list_series
from medcyclegan.ingest.ct_stack import read_ct_stack
from medcyclegan.ingest.volume import read_volume
from medcyclegan.ingest.zipped_study import ArchiveDamaged, ZipMember, close_archives, member_paths
from medcyclegan.testing.hostile_data import CT_RULES
from medcyclegan.testing.zipped import flip_byte, member_data_offset, write_cq500_zip, zip_folder

SERIES = "CQ500CT1 CQ500CT1/Unknown Study/CT PLAIN THIN"
TWO_SERIES = {
    "CT PLAIN THIN": {"n": 40, "size": 40, "spacing": 4.0, "thickness": 2.5},
    "CT BONE": {"n": 40, "size": 40, "spacing": 4.0, "thickness": 2.5, "kernel": "BONE", "description": "CT BONE"},
    "CT 5mm": {"n": 20, "size": 40, "spacing": 4.0, "thickness": 5.0, "description": "CT 5mm"},
}


@pytest.fixture(autouse=True)
def _close_archives():
    yield
    close_archives()


def _arrays_equal(a: sitk.Image, b: sitk.Image) -> None:
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert a.GetOrigin() == b.GetOrigin() and a.GetSpacing() == b.GetSpacing()
    assert a.GetDirection() == b.GetDirection()


def _table(study) -> list[dict]:
    table = list_series(study).drop(columns=["series_dir", "files"])
    return table.to_dict("records")


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_zip_reads_like_its_unzipped_folder_voxel_for_voxel(tmp_path, compression):
    archive, folder = write_cq500_zip(tmp_path, 1, compression=compression, **TWO_SERIES)
    assert _table(archive) == _table(folder)
    img_zip, info_zip = ingest_ct_study(archive, CT_RULES)
    img_dir, info_dir = ingest_ct_study(folder, CT_RULES)
    _arrays_equal(img_zip, img_dir)
    assert info_zip == info_dir
    assert info_zip["series_folder"] == SERIES
    assert set(info_zip["rejected"]) == {SERIES.replace("PLAIN THIN", "BONE"), SERIES.replace("PLAIN THIN", "5mm")}


def test_read_volume_dispatches_a_zip_and_a_link_without_suffix(tmp_path):
    """``read_volume("ct", "/x/CQ500-CT-3.zip")`` reads the zip; so does the job's link named by the
    volume id (no ``.zip`` suffix, :func:`medcyclegan.privacy.job_source`)."""
    archive, folder = write_cq500_zip(tmp_path, 3)
    img_dir, _ = read_volume("ct", folder, ct_series=CT_RULES)
    img_zip, info = read_volume("ct", str(archive), ct_series=CT_RULES)
    _arrays_equal(img_zip, img_dir)
    link = tmp_path / "links" / "CQ500-CT-3"
    link.parent.mkdir()
    os.symlink(archive, link)
    img_link, info_link = read_volume("ct", link, ct_series=CT_RULES)
    _arrays_equal(img_link, img_dir)
    assert info_link["series_folder"] == info["series_folder"] == "CQ500CT3 CQ500CT3/Unknown Study/CT PLAIN"


def test_real_pixel_data_from_pydicom_ct_small(tmp_path):
    """A series made of pydicom's CT_small.dcm (real scanner pixels, rescale), deflated in a zip."""
    folder = tmp_path / "CQ500-CT-5" / "CQ500CT5 CQ500CT5" / "Unknown Study" / "CT PLAIN THIN"
    folder.mkdir(parents=True)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    z0, uid = float(base.ImagePositionPatient[2]), generate_uid()
    for k in (3, 0, 4, 1, 2):  # written out of order
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], z0 + 5.0 * k]
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"CT{k:06d}.dcm")
    archive = zip_folder(tmp_path / "CQ500-CT-5", tmp_path / "CQ500-CT-5.zip")
    rules = {"min_slices": 5, "max_slice_thickness_mm": 6.0, "use_contrast_tag": False}
    img_zip, info_zip = ingest_ct_study(archive, rules)
    img_dir, info_dir = ingest_ct_study(tmp_path / "CQ500-CT-5", rules)
    _arrays_equal(img_zip, img_dir)
    assert info_zip == info_dir and img_zip.GetSize() == (128, 128, 5)
    expected = base.pixel_array * float(base.RescaleSlope) + float(base.RescaleIntercept)
    assert np.array_equal(sitk.GetArrayFromImage(img_zip)[0], np.maximum(expected, -1024).astype(np.float32))


def test_compressed_series_decoded_by_workers_from_the_zip(tmp_path):
    """Forked workers open the archive themselves (an inherited handle would share its offset)."""
    series = {"CT PLAIN": {"n": 36, "size": 24, "spacing": 6.0, "thickness": 2.5, "transfer_syntax": RLELossless}}
    archive, folder = write_cq500_zip(tmp_path, 2, **series)
    row = list_series(archive).iloc[0]
    img_zip, details = read_ct_stack(row["series_dir"], files=row["files"], workers=2)
    img_dir, _ = read_ct_stack(folder / "CQ500CT2 CQ500CT2" / "Unknown Study" / "CT PLAIN", workers=1)
    _arrays_equal(img_zip, img_dir)
    assert details["transfer_syntax"] == ["RLE Lossless"]


def test_zip_with_folder_entries_and_macos_junk_lists_the_same_series(tmp_path):
    archive, folder = write_cq500_zip(tmp_path, 4)
    other = zip_folder(folder, tmp_path / "with-dirs" / "CQ500-CT-4.zip", dir_entries=True)
    with zipfile.ZipFile(other, "a") as zf:
        zf.writestr("__MACOSX/CQ500CT4 CQ500CT4/Unknown Study/CT PLAIN/._CT000000.dcm", b"\0\5\0\0Mac")
        zf.writestr("CQ500CT4 CQ500CT4/readme.txt", "not dicom")
    assert _table(other) == _table(archive) == _table(folder)


def test_member_paths_list_what_a_folder_walk_lists(tmp_path):
    """For the privacy boundary: every folder and file of the archive, relative to it."""
    archive, folder = write_cq500_zip(tmp_path, 6)
    walked = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    assert member_paths(archive) == walked
    assert "CQ500CT6 CQ500CT6/Unknown Study/CT PLAIN/CT000017.dcm" in walked


def test_a_damaged_member_is_named_inside_the_archive(tmp_path):
    """A member cut short (truncated inside the zip, CRC intact) is refused as a truncated DICOM
    file, the message naming ``<zip>/<member>``."""
    archive, folder = write_cq500_zip(tmp_path, 1)
    member = folder / "CQ500CT1 CQ500CT1" / "Unknown Study" / "CT PLAIN" / "CT000017.dcm"
    member.write_bytes(member.read_bytes()[:-300])
    archive.unlink()
    zip_folder(folder, archive)
    with pytest.raises(IngestError) as err:
        ingest_ct_study(archive, CT_RULES)
    assert f"{archive}/CQ500CT1 CQ500CT1/Unknown Study/CT PLAIN/CT000017.dcm: " in str(err.value)
    assert "truncated" in str(err.value)


def test_a_gap_in_a_zipped_series_is_refused_as_in_a_folder(tmp_path):
    archive, folder = write_cq500_zip(tmp_path, 1)
    (folder / "CQ500CT1 CQ500CT1" / "Unknown Study" / "CT PLAIN" / "CT000020.dcm").unlink()
    archive.unlink()
    zip_folder(folder, archive)
    with pytest.raises(IngestError, match="not uniform") as err:
        ingest_ct_study(archive, CT_RULES)
    assert "CT000019.dcm" in str(err.value) and "CT000021.dcm" in str(err.value)
    assert str(archive.resolve()) + "/CQ500CT1 CQ500CT1/Unknown Study/CT PLAIN" in str(err.value)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_bad_crc_in_the_chosen_series_rejects_the_study(tmp_path, compression):
    """A damaged member of the series used rejects the study (no other series is tried: the
    archive is suspect), naming the member and the archive."""
    archive, _ = write_cq500_zip(tmp_path, 1, compression=compression, **TWO_SERIES)
    name = f"{SERIES}/CT000012.dcm"
    with zipfile.ZipFile(archive) as zf:
        size = zf.getinfo(name).compress_size
    flip_byte(archive, member_data_offset(archive, name) + size - 40)  # in the pixel data
    with pytest.raises(ArchiveDamaged) as err:
        ingest_ct_study(archive, {"max_slice_thickness_mm": 6.0, "min_slices": 10})  # CT 5mm would qualify
    text = str(err.value)
    assert text.startswith(f"{archive}/{name}: the member of the zip archive {archive} ")
    assert "damaged" in text and "Re-download" in text
    assert err.value.file == f"{archive}/{name}"


def test_bad_crc_in_an_unused_series_does_not_matter(tmp_path):
    """Only the chosen series' members are read whole (CRC checked): the volume is verified data."""
    archive, folder = write_cq500_zip(tmp_path, 1, compression=zipfile.ZIP_STORED, **TWO_SERIES)
    name = f"{SERIES.replace('PLAIN THIN', 'BONE')}/CT000012.dcm"
    with zipfile.ZipFile(archive) as zf:
        size = zf.getinfo(name).compress_size
    flip_byte(archive, member_data_offset(archive, name) + size - 40)
    img, info = ingest_ct_study(archive, CT_RULES)
    _arrays_equal(img, ingest_ct_study(folder, CT_RULES)[0])


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("truncated", "is truncated or damaged: its central directory"),
        ("not_a_zip", "is not a zip archive"),
        ("empty", "is empty (0 bytes)"),
        ("missing", "cannot be opened"),
    ],
)
def test_a_damaged_archive_is_refused_naming_it(tmp_path, damage, reason):
    archive, _ = write_cq500_zip(tmp_path, 1)
    data = archive.read_bytes()
    if damage == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "not_a_zip":
        archive.write_bytes(b"<html>403 Forbidden</html>" * 10)
    elif damage == "empty":
        archive.write_bytes(b"")
    else:
        archive.unlink()
    with pytest.raises(ArchiveDamaged) as err:
        read_volume("ct", archive, ct_series=CT_RULES)
    assert str(err.value).startswith(f"{archive}: ") and reason in str(err.value)
    assert err.value.file == str(archive)


def test_an_archive_without_files_is_refused(tmp_path):
    archive = tmp_path / "CQ500-CT-9.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("CQ500CT9 CQ500CT9/", b"")
    with pytest.raises(ArchiveDamaged, match="holds no files"):
        ingest_ct_study(archive, CT_RULES)


def test_one_member_in_memory_at_a_time(tmp_path, monkeypatch):
    """The series listing streams headers (no member is read whole); the stack reads one member
    whole at a time, only those of the chosen series; the archive is never read whole."""
    archive, _ = write_cq500_zip(tmp_path, 1, **TWO_SERIES)
    reads: list[str] = []
    real_read = zipfile.ZipFile.read

    def read(self, name, pwd=None):
        reads.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_read(self, name, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "read", read)
    table = list_series(archive)
    assert reads == [] and len(table) == 3
    ingest_ct_study(archive, CT_RULES)
    assert len(reads) == 40 and all(r.startswith(SERIES + "/") for r in reads)


def test_zip_member_behaves_as_the_series_code_needs():
    m = ZipMember("/x/CQ500-CT-3.zip", f"{SERIES}/CT000017.dcm")
    assert str(m) == f"/x/CQ500-CT-3.zip/{SERIES}/CT000017.dcm"
    assert (m.name, m.suffix, str(m.parent)) == ("CT000017.dcm", ".dcm", f"/x/CQ500-CT-3.zip/{SERIES}")
    assert sorted([m, m.parent]) == [m.parent, m] and m == ZipMember("/x/CQ500-CT-3.zip", f"{SERIES}/CT000017.dcm")
    import pickle

    assert pickle.loads(pickle.dumps(m)) == m


def test_a_folder_study_is_unchanged(tmp_path):
    """The folder path still refuses what it refused (a missing folder; a file that is no zip)."""
    with pytest.raises(IngestError, match="does not exist or is not a folder"):
        list_series(tmp_path / "nope")
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "CT_small.dcm")
    with pytest.raises(ArchiveDamaged, match="is not a zip archive"):
        list_series(tmp_path / "CT_small.dcm")
