"""Hostile CQ500-style DICOM: each case is either fixed by a documented rule (and logged in the
volume's info ``fixes``) or rejected with a row in rejected.csv; nothing crashes, nothing is
silently wrong."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import SimpleITK as sitk
from pydicom.uid import JPEG2000Lossless

from medcyclegan.privacy import file_ref as ref
from medcyclegan.privacy import text_ref
from medcyclegan.testing.hostile_data import cq500_study, kept_slices, run_volume, write_ct
from medcyclegan.testing.workflow import ROOT


def only_row(rows):
    assert len(rows) == 1, rows
    row = rows.iloc[0]
    assert row.file and row.reason and row.action and row.rule
    return row


def test_good_study_passes(tmp_path):
    rows, info = run_volume(tmp_path, "ct", cq500_study(tmp_path / "raw", 1), "CQ500-CT-1")
    assert rows.empty and info["status"] == "ok" and info["ingest"]["fixes"] == []
    assert kept_slices(tmp_path, "ct", "CQ500-CT-1") > 20


def test_truncated_file_rejects_series(tmp_path):
    study = cq500_study(tmp_path / "raw", 2)
    f = study / "Unknown Study/CT PLAIN/CT000020.dcm"
    f.write_bytes(f.read_bytes()[:4000])  # cut inside the pixel data
    g = study / "Unknown Study/CT PLAIN/CT000030.dcm"
    g.write_bytes(g.read_bytes()[:600])  # cut inside the header
    row = only_row(run_volume(tmp_path, "ct", study, "CQ500-CT-2")[0])
    assert row.rule == "ingest"
    # files are named by their pseudonymous references (medcyclegan.privacy)
    assert ref("CQ500-CT-2", "Unknown Study/CT PLAIN/CT000020.dcm") in row.reason or "CT000030.dcm" in row.reason
    assert "truncated" in row.reason
    assert kept_slices(tmp_path, "ct", "CQ500-CT-2") == 0


def test_truncated_file_falls_back_to_next_series(tmp_path):
    study = cq500_study(tmp_path / "raw", 3, **{"CT PLAIN": {}, "CT PLAIN 2": {"n": 40}})
    f = study / "Unknown Study/CT PLAIN/CT000010.dcm"
    f.write_bytes(f.read_bytes()[:3000])
    rows, info = run_volume(tmp_path, "ct", study, "CQ500-CT-3")
    assert rows.empty
    assert info["ingest"]["series_folder"] == ref("CQ500-CT-3", "Unknown Study/CT PLAIN 2")
    assert "truncated" in info["ingest"]["rejected"][ref("CQ500-CT-3", "Unknown Study/CT PLAIN")]


def test_non_dicom_file_in_series_folder_is_skipped_and_logged(tmp_path):
    study = cq500_study(tmp_path / "raw", 4)
    series = study / "Unknown Study/CT PLAIN"
    (series / "notes.dcm").write_text("exported by the viewer; not an image\n" * 20)
    (series / "DICOMDIR").write_bytes(b"\0" * 200)
    (series / "Thumbs.db").write_bytes(b"\x01\x02" * 300)
    rows, info = run_volume(tmp_path, "ct", study, "CQ500-CT-4")
    assert rows.empty
    assert info["ingest"]["n_slices"] == 50
    notes = ref("CQ500-CT-4", "notes.dcm")
    assert any(notes in f and "not a DICOM file" in f for f in info["ingest"]["fixes"])
    import pandas as pd

    fixes = pd.read_csv(tmp_path / "results/qc/fixes.csv")
    assert list(fixes.columns) == ["modality", "volume", "rule", "fix"]
    assert fixes.fix.str.contains(notes).any() and set(fixes.volume) == {"CQ500-CT-4"}


def test_two_series_in_one_folder_are_split_and_selected(tmp_path):
    study = tmp_path / "raw/CQ500CT5 CQ500CT5"
    folder = study / "Unknown Study/CT MIXED"
    write_ct(folder, description="BONE 1mm", kernel="BONE", prefix="A", n=50)
    write_ct(folder, description="PLAIN", prefix="B", n=44)
    rows, info = run_volume(tmp_path, "ct", study, "CQ500-CT-5")
    assert rows.empty
    ing = info["ingest"]
    assert ing["series_description"].startswith(text_ref("PLAIN")) and ing["n_slices"] == 44
    assert any("several series" in f for f in ing["fixes"])
    assert any("bone" in v.lower() for v in ing["rejected"].values())


def test_localizer_inside_series_is_dropped_and_logged(tmp_path):
    study = cq500_study(tmp_path / "raw", 6)
    series = study / "Unknown Study/CT PLAIN"
    import pydicom

    ds = pydicom.dcmread(series / "CT000000.dcm")
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # coronal scout
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImagePositionPatient = [-90.0, 0.0, 80.0]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(series / "SCOUT.dcm", enforce_file_format=True)
    rows, info = run_volume(tmp_path, "ct", study, "CQ500-CT-6")
    assert rows.empty and info["ingest"]["n_slices"] == 50
    assert any(ref("CQ500-CT-6", "SCOUT.dcm") in f and "localizer" in f for f in info["ingest"]["fixes"])


def test_missing_slice_rejected(tmp_path):
    study = cq500_study(tmp_path / "raw", 7)
    (study / "Unknown Study/CT PLAIN/CT000025.dcm").unlink()
    row = only_row(run_volume(tmp_path, "ct", study, "CQ500-CT-7")[0])
    assert "not uniform" in row.reason and "CT000024.dcm" in row.reason and "CT000026.dcm" in row.reason
    assert row.file == ref("CQ500-CT-7", "Unknown Study/CT PLAIN")  # the series to fix, not just the study


def test_duplicate_positions_exact_copy_fixed_different_rejected(tmp_path):
    study = cq500_study(tmp_path / "raw", 8)
    series = study / "Unknown Study/CT PLAIN"
    shutil.copy(series / "CT000010.dcm", series / "COPY.dcm")
    rows, info = run_volume(tmp_path / "a", "ct", study, "CQ500-CT-8")
    assert rows.empty and info["ingest"]["n_slices"] == 50
    assert any(ref("CQ500-CT-8", "COPY.dcm") in f and "duplicate" in f for f in info["ingest"]["fixes"])
    # a different image at an existing position: two acquisitions mixed, refused
    import pydicom

    ds = pydicom.dcmread(series / "CT000011.dcm")
    ds.ImagePositionPatient = pydicom.dcmread(series / "CT000012.dcm").ImagePositionPatient
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(series / "OTHER.dcm", enforce_file_format=True)
    row = only_row(run_volume(tmp_path / "b", "ct", study, "CQ500-CT-8")[0])
    assert "share the position" in row.reason


def test_gantry_tilt_resampled_onto_orthogonal_grid(tmp_path):
    # every slice's field of view moves 1 mm posterior per 3 mm step (about 18 deg)
    study = cq500_study(tmp_path / "raw", 9, **{"CT PLAIN": {"tilt_y_per_slice": 1.0}})
    rows, info = run_volume(tmp_path, "ct", study, "CQ500-CT-9")
    assert rows.empty
    assert info["ingest"]["gantry_tilt_corrected"] and 17 < info["ingest"]["gantry_tilt_deg"] < 20
    assert any("gantry tilt" in f for f in info["ingest"]["fixes"])
    # the head matches the same head scanned without tilt (a sheared stack would not: the
    # positions drift 49 mm over the series)
    run_volume(tmp_path / "ref", "ct", cq500_study(tmp_path / "raw_ref", 90), "CQ500-CT-90")
    ref = sitk.ReadImage(str(tmp_path / "ref/results/volumes/ct/CQ500-CT-90.nii.gz"))
    img = sitk.Resample(
        sitk.ReadImage(str(tmp_path / "results/volumes/ct/CQ500-CT-9.nii.gz")),
        ref,
        sitk.Transform(),
        sitk.sitkLinear,
        -1024.0,
    )
    a, b = sitk.GetArrayFromImage(img) > 500, sitk.GetArrayFromImage(ref) > 500
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice > 0.85, dice


def test_missing_decoder_names_the_package(tmp_path):
    study = cq500_study(
        tmp_path / "raw",
        10,
        **{"CT PLAIN": {"n": 35, "transfer_syntax": JPEG2000Lossless, "signed": True, "rescale": (1.0, 0.0)}},
    )
    script = textwrap.dedent(f"""
        import sys
        from pydicom.pixels.decoders import JPEG2000LosslessDecoder
        for plugin in JPEG2000LosslessDecoder.available_plugins:  # as if none were installed
            JPEG2000LosslessDecoder.remove_plugin(plugin)
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
        from pathlib import Path
        from medcyclegan.testing.hostile_data import run_volume
        rows, info = run_volume(Path({str(tmp_path)!r}), "ct", Path({str(study)!r}), "CQ500-CT-10")
        print("ROW", rows.iloc[0].to_dict() if len(rows) else None)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("ROW"))
    assert "no decoder is installed" in line and "pip install pylibjpeg pylibjpeg-openjpeg" in line
    # with the decoder installed the same study is read
    rows, info = run_volume(tmp_path / "ok", "ct", study, "CQ500-CT-10")
    assert rows.empty and "JPEG 2000" in " ".join(info["ingest"]["transfer_syntax"])


def test_missing_rescale_fixed_when_values_are_hu_rejected_otherwise(tmp_path):
    # stored values are HU already (signed, air -1000): documented fix, identity rescale
    study = cq500_study(tmp_path / "raw", 11, **{"CT PLAIN": {"signed": True, "rescale": None}})
    rows, info = run_volume(tmp_path / "a", "ct", study, "CQ500-CT-11")
    assert rows.empty
    assert any("absent" in f for f in info["ingest"]["fixes"])
    # stored = HU + 1024 (unsigned) and no intercept: would be shifted by 1024 HU -> rejected
    study = cq500_study(tmp_path / "raw2", 12, **{"CT PLAIN": {"signed": False, "rescale": None}})
    row = only_row(run_volume(tmp_path / "b", "ct", study, "CQ500-CT-12")[0])
    assert "not Hounsfield units" in row.reason and "RescaleSlope/RescaleIntercept are missing" in row.reason
    assert "RescaleIntercept" in row.action


def test_signed_and_unsigned_pixels_give_the_same_hu_mislabelled_rejected(tmp_path):
    a = cq500_study(tmp_path / "raw", 13, **{"CT PLAIN": {"signed": True, "rescale": (1.0, 0.0)}})
    b = cq500_study(tmp_path / "raw", 14, **{"CT PLAIN": {"signed": False, "rescale": (1.0, -1024.0)}})
    for study, vid in ((a, "CQ500-CT-13"), (b, "CQ500-CT-14")):
        rows, _ = run_volume(tmp_path / vid, "ct", study, vid)
        assert rows.empty
    va = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "CQ500-CT-13/results/volumes/ct/CQ500-CT-13.nii.gz")))
    vb = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "CQ500-CT-14/results/volumes/ct/CQ500-CT-14.nii.gz")))
    np.testing.assert_allclose(va, vb, atol=1e-3)
    assert va.min() <= -999 and va.max() > 900  # air and bone in HU
    # signed values written with PixelRepresentation 0: air wraps to ~64500 -> rejected
    c = cq500_study(
        tmp_path / "raw", 15, **{"CT PLAIN": {"signed": True, "rescale": (1.0, 0.0), "mislabel_unsigned": True}}
    )
    row = only_row(run_volume(tmp_path / "c", "ct", c, "CQ500-CT-15")[0])
    assert "not Hounsfield units" in row.reason and "PixelRepresentation" in row.reason


def test_study_with_no_usable_series_rejected_with_listing(tmp_path):
    study = cq500_study(
        tmp_path / "raw",
        16,
        **{"CT BONE": {"kernel": "BONE", "description": "BONE"}, "CT 5mm": {"thickness": 5.0, "n": 30}},
    )
    row = only_row(run_volume(tmp_path, "ct", study, "CQ500-CT-16")[0])
    assert "no series qualifies" in row.reason
    bone, thick = (ref("CQ500-CT-16", f"Unknown Study/{name}") for name in ("CT BONE", "CT 5mm"))
    assert bone in row.reason and thick in row.reason and "5 mm > max" in row.reason
    assert "ct_series" in row.action
