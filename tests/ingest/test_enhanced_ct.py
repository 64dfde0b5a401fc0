"""Multi-frame Enhanced CT: one file whose frames are placed by functional groups, read as a series
(each frame one slice, the stack's ordering, spacing fit and checks unchanged)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.ct import ingest_ct_study
from medcyclegan.ingest.ct_series import list_series, select_series
from medcyclegan.ingest.ct_stack import read_ct_stack
from medcyclegan.ingest.zipped_study import close_archives
from medcyclegan.testing.enhanced import enhanced_ct_from_series
from medcyclegan.testing.hostile_data import CT_RULES, write_ct
from medcyclegan.testing.zipped import zip_folder

N = 36


@pytest.fixture
def series(tmp_path):
    """A single-frame series (the reference) outside the study folder."""
    return write_ct(tmp_path / "single" / "CT PLAIN", n=N, size=32, spacing=5.0, thickness=2.5)


def _same(a: sitk.Image, b: sitk.Image) -> None:
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert a.GetOrigin() == pytest.approx(b.GetOrigin()) and a.GetSpacing() == pytest.approx(b.GetSpacing())
    assert a.GetDirection() == b.GetDirection()


@pytest.mark.parametrize("per_frame", [False, True], ids=["shared groups", "per-frame groups"])
def test_enhanced_ct_reads_as_its_single_frame_series(tmp_path, series, per_frame):
    enhanced = enhanced_ct_from_series(series, tmp_path / "enh" / "CT PLAIN" / "CT000000.dcm", per_frame=per_frame)
    img, details = read_ct_stack(enhanced.parent)
    reference, ref_details = read_ct_stack(series)
    _same(img, reference)
    assert details["n_slices"] == N and details["rescale"] == ref_details["rescale"]


def test_frames_out_of_order_are_sorted_by_position(tmp_path, series):
    order = np.random.default_rng(3).permutation(N)
    enhanced = enhanced_ct_from_series(series, tmp_path / "enh" / "CT PLAIN" / "CT.dcm", order=order)
    _same(read_ct_stack(enhanced.parent)[0], read_ct_stack(series)[0])


def test_study_with_an_enhanced_ct_selects_it_counting_frames(tmp_path, series):
    """The series row counts frames for ``min_slices``; thickness comes from the functional groups."""
    study = tmp_path / "CQ500-CT-8"
    enhanced_ct_from_series(series, study / "CQ500CT8 CQ500CT8" / "Unknown Study" / "CT PLAIN" / "CT000000.dcm")
    table = list_series(study)
    row = table.iloc[0]
    assert (row["n_files"], row["number_of_frames"], row["frames"]) == (N, N, "slices")
    assert row["slice_thickness_mm"] == pytest.approx(2.5)
    img, info = ingest_ct_study(study, CT_RULES)
    _same(img, read_ct_stack(series)[0])
    assert info["n_slices"] == N and info["series"][0]["n_files"] == N


def test_enhanced_ct_in_a_study_zip(tmp_path, series):
    study = tmp_path / "CQ500-CT-8"
    enhanced_ct_from_series(series, study / "CQ500CT8 CQ500CT8" / "Unknown Study" / "CT PLAIN" / "CT000000.dcm")
    archive = zip_folder(study, tmp_path / "CQ500-CT-8.zip")
    try:
        _same(ingest_ct_study(archive, CT_RULES)[0], read_ct_stack(series)[0])
    finally:
        close_archives()


def test_a_frame_without_position_is_refused_naming_it(tmp_path, series):
    enhanced = enhanced_ct_from_series(series, tmp_path / "s" / "CT PLAIN" / "CT000000.dcm", drop_position=7)
    with pytest.raises(IngestError, match="frame 8 of 36: DICOM element ImagePositionPatient is missing") as err:
        read_ct_stack(enhanced.parent)
    assert str(enhanced) in str(err.value)
    _, reasons = select_series_reasons(tmp_path / "s")
    assert "frame 8 of 36 has no ImagePositionPatient in its functional groups" in reasons
    assert "multi-frame DICOM (36 frames in one file) is not supported" in reasons


def select_series_reasons(study):
    table = list_series(study)
    with pytest.raises(IngestError, match="no series qualifies") as err:
        select_series(table, **CT_RULES)
    return table, str(err.value)


def test_a_missing_frame_is_a_gap(tmp_path, series):
    enhanced = enhanced_ct_from_series(series, tmp_path / "s" / "CT PLAIN" / "CT.dcm", drop=(20,))
    with pytest.raises(IngestError, match="not uniform") as err:
        read_ct_stack(enhanced.parent)
    assert "between CT.dcm frame 20 (" in str(err.value) and "and CT.dcm frame 21 (" in str(err.value)


def test_a_duplicated_frame_position_is_refused(tmp_path, series):
    order = list(range(N)) + [5]  # frame 37 repeats slice 5's position, with its pixels: kept once
    enhanced = enhanced_ct_from_series(series, tmp_path / "s" / "CT PLAIN" / "CT.dcm", order=order)
    img, details = read_ct_stack(enhanced.parent)
    _same(img, read_ct_stack(series)[0])
    assert any("dropped CT.dcm frame 37: exact duplicate of CT.dcm frame 6" in f for f in details["fixes"])


def test_a_multi_frame_object_without_functional_groups_is_still_refused(tmp_path, series):
    enhanced = enhanced_ct_from_series(series, tmp_path / "s" / "CT PLAIN" / "CT.dcm", functional_groups=False)
    with pytest.raises(IngestError, match=r"multi-frame DICOM \(36 frames\) is not supported for CT"):
        read_ct_stack(enhanced.parent)
    _, reasons = select_series_reasons(tmp_path / "s")
    assert "multi-frame DICOM (36 frames in one file) is not supported" in reasons
    assert "not an Enhanced CT object with per-frame positions" in reasons


def test_pydicom_enhanced_ct_test_file_reads_or_is_refused_with_a_reason(tmp_path):
    """pydicom's real Enhanced CT example, when this pydicom has it locally (it is never downloaded)."""
    path = get_testdata_file("eCT_Supplemental.dcm", download=False)
    if path is None:
        pytest.skip("pydicom's eCT_Supplemental.dcm is not installed here (download-only test file)")
    folder = tmp_path / "s" / "CT"
    folder.mkdir(parents=True)
    (folder / "eCT.dcm").write_bytes(open(path, "rb").read())
    try:
        img, details = read_ct_stack(folder)
        assert img.GetSize()[2] == details["n_slices"] > 1
    except IngestError as exc:
        assert "eCT.dcm" in str(exc)
