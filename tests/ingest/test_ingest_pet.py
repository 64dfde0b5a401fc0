"""OASIS-3 PET ingest: frame timing layouts, tracer, frame window, summed image and geometry."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.pet import ingest_pet_session, select_frames, sum_pet, tracer_of
from medcyclegan.ingest.pet_timing import frame_timing

WINDOWS = {"PIB": [30, 60], "AV45": [50, 70], "FDG": [30, 60]}


def pib_60min_durations():
    """PIB 60-min dynamic: 24x5 s, 9x20 s, 10x1 min, 9x5 min (52 frames)."""
    return [5.0] * 24 + [20.0] * 9 + [60.0] * 10 + [300.0] * 9


def starts_of(durations, t0=0.0):
    return list(np.concatenate([[t0], t0 + np.cumsum(durations)[:-1]]))


# Hand-chosen answers: the 5-min frames are 43..51 and start at 15, 20, ..., 55 min, so the frames
# inside 30-60 min are 46..51.
PIB_30_60 = [46, 47, 48, 49, 50, 51]


# ----------------------------------------------------------------------------- timing layouts


def test_frame_timing_bids():
    d = pib_60min_durations()
    t = frame_timing({"FrameTimesStart": starts_of(d), "FrameDuration": d})
    assert list(t.columns) == ["start_s", "duration_s", "end_s"]
    assert len(t) == 52
    assert t.end_s.iloc[-1] == pytest.approx(3600.0)
    assert t.start_s.iloc[46] == pytest.approx(1800.0)


def test_frame_timing_absent_and_broken():
    assert frame_timing(None) is None
    assert frame_timing({"Modality": "PT"}) is None
    with pytest.raises(IngestError, match="FrameDuration"):
        frame_timing({"FrameTimesStart": [0, 10]})
    with pytest.raises(IngestError, match="2 entries"):
        frame_timing({"FrameTimesStart": [0, 10], "FrameDuration": [10, 10, 10]})
    with pytest.raises(IngestError, match="overlapping"):  # durations in ms by mistake
        frame_timing({"FrameTimesStart": [0, 10, 20], "FrameDuration": [10000, 10000, 10000]})


def test_frame_timing_old_layout_with_and_without_labels():
    d = pib_60min_durations()
    s = starts_of(d)
    rows = [[a, a + b, b] for a, b in zip(s, d)]
    t1 = frame_timing({"FrameTimes": {"Values": rows}})  # [start, end, duration]
    # labels in another order, end column only, in minutes
    rows2 = [[(a + b) / 60, a / 60] for a, b in zip(s, d)]
    t2 = frame_timing({"FrameTimes": {"Labels": ["frameEnd", "frameStart"], "Units": ["min", "min"], "Values": rows2}})
    # nested under "Time", rows [start, duration]
    t3 = frame_timing({"Time": {"FrameTimes": {"Values": [[a, b] for a, b in zip(s, d)]}}})
    for t in (t1, t2, t3):
        np.testing.assert_allclose(t.start_s, s, atol=1e-6)
        np.testing.assert_allclose(t.duration_s, d, atol=1e-6)
        np.testing.assert_allclose(t.end_s, np.add(s, d), atol=1e-6)
    with pytest.raises(IngestError, match="start .* duration"):
        frame_timing({"FrameTimes": {"Values": [[0, 60, 30], [60, 120, 60]]}})


# ----------------------------------------------------------------------------- selection


def test_select_pib_30_60_bids_and_old_layout():
    d = pib_60min_durations()
    s = starts_of(d)
    for sidecar in (
        {"FrameTimesStart": s, "FrameDuration": d},
        {
            "FrameTimes": {
                "Labels": ["frameStart", "frameEnd", "frameDuration"],
                "Values": [[a, a + b, b] for a, b in zip(s, d)],
            }
        },
    ):
        idx, reason = select_frames(frame_timing(sidecar), 52, WINDOWS["PIB"], (-4, None), 0.5)
        assert idx == PIB_30_60
        assert "30-60 min" in reason and "100%" in reason and "30.00-35.00" in reason


def test_select_pib_30min_scan_from_30min():
    d = [300.0] * 6
    t = frame_timing({"FrameTimesStart": starts_of(d, 1800.0), "FrameDuration": d})
    assert select_frames(t, 6, WINDOWS["PIB"], (-4, None), 0.5)[0] == [0, 1, 2, 3, 4, 5]
    # BIDS times relative to a TimeZero 120 s before injection
    t2 = frame_timing({"FrameTimesStart": starts_of(d, 1920.0), "FrameDuration": d, "InjectionStart": 120})
    assert select_frames(t2, 6, WINDOWS["PIB"], (-4, None), 0.5)[0] == [0, 1, 2, 3, 4, 5]


def test_select_av45_50_70():
    # 70-min dynamic: 4x15 s, 8x30 s, 9x1 min, 2x3 min, 10x5 min  -> 5-min frames start at 20..65 min
    d = [15.0] * 4 + [30.0] * 8 + [60.0] * 9 + [180.0] * 2 + [300.0] * 10
    s = starts_of(d)
    assert s[23] == pytest.approx(1200.0)
    t = frame_timing({"FrameTimesStart": s, "FrameDuration": d})
    assert select_frames(t, 33, WINDOWS["AV45"], (-4, None), 0.5)[0] == [29, 30, 31, 32]
    # 20 min from 50 min, old layout without labels [start, end, duration]
    rows = [[3000 + 300 * k, 3300 + 300 * k, 300] for k in range(4)]
    t2 = frame_timing({"FrameTimes": {"Values": rows}})
    assert select_frames(t2, 4, WINDOWS["AV45"], (-4, None), 0.5)[0] == [0, 1, 2, 3]
    # small timing jitter (0.5 s) is tolerated
    t3 = frame_timing({"FrameTimesStart": [2999.5, 3300, 3600, 3900], "FrameDuration": [300.5, 300, 300, 300.4]})
    assert select_frames(t3, 4, WINDOWS["AV45"], (-4, None), 0.5)[0] == [0, 1, 2, 3]


def test_fallback_without_timing():
    idx, reason = select_frames(None, 52, WINDOWS["PIB"], (-4, None), 0.5)
    assert idx == [48, 49, 50, 51]
    assert "fallback" in reason and "no frame timing" in reason
    assert select_frames(None, 6, None, [2, 5], 0.5)[0] == [2, 3, 4]
    with pytest.raises(IngestError, match="selects no frame"):
        select_frames(None, 3, None, (5, None), 0.5)


def test_too_few_frames_or_low_coverage():
    # a 40-min PIB scan: only 30-40 min inside 30-60 -> 33 % < 50 %
    d = [300.0] * 8
    t = frame_timing({"FrameTimesStart": starts_of(d), "FrameDuration": d})
    with pytest.raises(IngestError, match="33%"):
        select_frames(t, 8, WINDOWS["PIB"], (-4, None), 0.5)
    assert select_frames(t, 8, WINDOWS["PIB"], (-4, None), 0.3)[0] == [6, 7]
    # 30-min scan with times relative to the scan start: nothing inside, hint printed
    d6 = [300.0] * 6
    t6 = frame_timing({"FrameTimesStart": starts_of(d6), "FrameDuration": d6})
    with pytest.raises(IngestError, match="relative to the scan start"):
        select_frames(t6, 6, WINDOWS["PIB"], (-4, None), 0.5)
    # timing for another number of frames
    with pytest.raises(IngestError, match="lists 8 frames but the image has 9"):
        select_frames(t, 9, WINDOWS["PIB"], (-4, None), 0.5)


# ----------------------------------------------------------------------------- tracer


def test_tracer_of():
    assert tracer_of("OAS31463_PIB_d0364", None) == "PIB"
    assert tracer_of("/x/OAS30001_AV45_d2430", {"TracerName": "Florbetapir"}) == "AV45"
    assert tracer_of("session", {"TracerName": "[11C]PIB"}) == "PIB"
    assert tracer_of("session", {}, filename="sub-OAS1_ses-d1_acq-FDG_pet.nii.gz") == "FDG"
    assert tracer_of("sub-OAS31463_ses-d0364_acq-PIB_pet", None) == "PIB"
    with pytest.raises(IngestError, match="disagree"):
        tracer_of("OAS31463_PIB_d0364", {"TracerName": "AV-45"})
    with pytest.raises(IngestError, match="cannot tell the PET tracer"):
        tracer_of("session", {})


# ----------------------------------------------------------------------------- summation


def oblique_affine():
    a = np.zeros((4, 4))
    a[:3, 0] = [-2.0, 0.0, 0.0]  # i: towards patient right
    a[:3, 1] = [0.0, 0.0, 2.5]  # j: superior
    a[:3, 2] = [0.0, -3.0, 0.0]  # k: posterior
    a[:3, 3] = [100.0, 80.0, -60.0]
    a[3, 3] = 1.0
    return a


def write_4d(path: Path, data, affine, slope=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    nib.save(img, str(path))
    return path


def test_sum_pet_equals_hand_sum_and_geometry(tmp_path):
    rng = np.random.default_rng(7)
    d = pib_60min_durations()
    data = rng.integers(0, 1000, size=(6, 5, 4, 52)).astype(np.int16)
    aff = oblique_affine()
    path = write_4d(tmp_path / "pet.nii.gz", data, aff, slope=0.5)
    sidecar = {"FrameTimesStart": starts_of(d), "FrameDuration": d, "TracerName": "PIB"}
    img, info = sum_pet(path, sidecar, "PIB", WINDOWS, (-4, None), 0.5)
    expected = data[..., PIB_30_60].astype(np.float64).sum(axis=-1) * 0.5
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), expected.transpose(2, 1, 0), rtol=1e-6)
    assert img.GetDimension() == 3 and img.GetSize() == (6, 5, 4)
    assert img.GetPixelID() == sitk.sitkFloat32
    # geometry = 3D part of the 4D affine, RAS -> LPS
    for ijk in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        ras = aff @ np.array([*ijk, 1.0])
        assert img.TransformIndexToPhysicalPoint(ijk) == pytest.approx((-ras[0], -ras[1], ras[2]))
    # and the same as SimpleITK's own reading of the 4D file, first three axes
    ref = sitk.ReadImage(str(path))
    ref3 = sitk.Extract(ref, list(ref.GetSize()[:3]) + [0], [0, 0, 0, 0])
    assert img.GetOrigin() == pytest.approx(ref3.GetOrigin())
    assert img.GetSpacing() == pytest.approx(ref3.GetSpacing())
    assert img.GetDirection() == pytest.approx(ref3.GetDirection())
    assert info["tracer"] == "PIB" and info["static"] is False and info["rule_used"] == "window"
    assert [f["index"] for f in info["frames_used"]] == PIB_30_60
    assert info["frames_used"][0]["start_s"] == 1800.0 and info["frames_used"][-1]["end_s"] == 3600.0
    assert info["n_frames_in_file"] == 52 and info["window_min"] == [30.0, 60.0]
    json.dumps(info)

    # without timing: fallback frames, plain sum
    img2, info2 = sum_pet(path, None, "PIB", WINDOWS, (-4, None), 0.5)
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(img2), (data[..., 48:].astype(np.float64).sum(-1) * 0.5).transpose(2, 1, 0), rtol=1e-6
    )
    assert info2["rule_used"] == "fallback" and info2["frames_used"][0]["start_s"] is None
    # timing present but no window for this tracer
    with pytest.raises(IngestError, match="no summation window"):
        sum_pet(path, sidecar, "FBB", WINDOWS, (-4, None), 0.5)


def test_sum_pet_static_3d(tmp_path):
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    path = write_4d(tmp_path / "static.nii.gz", data, oblique_affine())
    img, info = sum_pet(path, None, "AV45", WINDOWS, (-4, None), 0.5)
    assert info["static"] is True and "as is" in info["rule"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), data.transpose(2, 1, 0))


def test_ingest_pet_session(tmp_path):
    s = tmp_path / "OAS30001_AV45_d2430"
    (s / "CT1").mkdir(parents=True)
    write_4d(s / "CT1" / "sub-OAS30001_ses-d2430_ct.nii.gz", np.zeros((4, 4, 4), np.int16), np.eye(4))
    data = np.random.default_rng(3).random((5, 5, 3, 4)).astype(np.float32)
    write_4d(s / "pet1" / "NIFTI" / "sub-OAS30001_ses-d2430_acq-AV45_pet.nii.gz", data, oblique_affine())
    side = s / "pet1" / "BIDS" / "sub-OAS30001_ses-d2430_acq-AV45_pet.json"
    side.parent.mkdir(parents=True)
    side.write_text(
        json.dumps(
            {
                "Modality": "PT",
                "FrameTimesStart": [3000, 3300, 3600, 3900],
                "FrameDuration": [300, 300, 300, 300],
                "AcquisitionDateTime": "2011-02-03T10:00:00",
            }
        )
    )
    img, info = ingest_pet_session(s, WINDOWS, (-4, None), 0.5)
    assert info["tracer"] == "AV45" and info["subject"] == "OAS30001" and info["day"] == 2430
    assert info["file"].endswith("acq-AV45_pet.nii.gz") and info["sidecar"].startswith("pet1/BIDS/")
    assert [f["index"] for f in info["frames_used"]] == [0, 1, 2, 3]
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), data.sum(-1).transpose(2, 1, 0), rtol=1e-6)
    assert "2011" not in json.dumps(info)


def test_sum_pet_rejects_disagreeing_qform_sform(tmp_path):
    img = nib.Nifti1Image(np.zeros((4, 5, 6, 3), np.float32), None)
    img.set_qform(np.diag([2.0, 3.0, 4.0, 1.0]), code=1)
    img.set_sform(oblique_affine(), code=2)
    nib.save(img, str(tmp_path / "bad.nii.gz"))
    with pytest.raises(IngestError, match="disagree"):
        sum_pet(tmp_path / "bad.nii.gz", None, "PIB", WINDOWS, (-4, None), 0.5)
