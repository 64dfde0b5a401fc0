"""Hostile OASIS-3 NIfTI (MR and PET) and modality-independent checks: each case is fixed by a
documented rule (noted in the volume's ``fixes``) or rejected with a row in rejected.csv."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from medcyclegan.privacy import file_ref
from medcyclegan.testing.hostile_data import cq500_study, kept_slices, mr_session, pet_session, run_volume


def only_row(rows, rule="ingest"):
    assert len(rows) == 1, rows
    row = rows.iloc[0]
    assert row.rule == rule and row.file and row.reason and row.action
    return row


# ----------------------------------------------------------------------------- MR NIfTI


def test_good_mr_passes(tmp_path):
    session, _ = mr_session(tmp_path / "raw", "OAS30001")
    rows, info = run_volume(tmp_path, "mr", session, "OAS30001_MR_d0100")
    assert rows.empty and info["ingest"]["fixes"] == []
    assert kept_slices(tmp_path, "mr", "OAS30001_MR_d0100") > 20


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_unreadable_or_truncated_nifti_rejected(tmp_path, damage):
    session, nii = mr_session(tmp_path / "raw", "OAS30002")
    data = nii.read_bytes()
    if damage == "truncated":
        nii.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        nii.write_bytes(gzip.compress(b"this is not a NIfTI file" * 50))
    else:
        nii.write_bytes(b"")
    row = only_row(run_volume(tmp_path, "mr", session, "OAS30002_MR_d0100")[0])
    assert row.file == file_ref("OAS30002_MR_d0100", nii.relative_to(session).as_posix())  # medcyclegan.privacy
    assert "truncated" in row.reason or "cannot read" in row.reason
    assert kept_slices(tmp_path, "mr", "OAS30002_MR_d0100") == 0


def test_truncated_pet_rejected(tmp_path):
    session = pet_session(tmp_path / "raw", "OAS30003")
    nii = next(session.rglob("*_pet.nii.gz"))
    nii.write_bytes(nii.read_bytes()[: 3 * len(nii.read_bytes()) // 4])
    row = only_row(run_volume(tmp_path, "pet", session, "OAS30003_PIB_d0200")[0])
    assert "truncated or corrupt" in row.reason
    assert row.file == file_ref("OAS30003_PIB_d0200", nii.relative_to(session).as_posix())


def test_nifti2_session_passes_like_nifti1(tmp_path):
    """A NIfTI-2 T1w (SimpleITK's reader does not open NIfTI-2; nibabel reads it) ingests and
    preprocesses as the same image in NIfTI-1 does."""
    session, nii = mr_session(tmp_path / "raw", "OAS30015")
    src = nib.load(str(nii))
    nib.save(nib.Nifti2Image(np.asarray(src.dataobj), src.affine), str(nii))
    assert nib.load(str(nii)).header["sizeof_hdr"] == 540
    rows, info = run_volume(tmp_path, "mr", session, "OAS30015_MR_d0100")
    assert rows.empty and info["ingest"]["fixes"] == []
    assert kept_slices(tmp_path, "mr", "OAS30015_MR_d0100") > 20


@pytest.mark.parametrize("kind", ["zero", "singular"])
def test_zero_or_non_invertible_affine_rejected(tmp_path, kind):
    session, nii = mr_session(tmp_path / "raw", "OAS30004")
    src = nib.load(str(nii))
    hdr = src.header.copy()
    aff = np.zeros((4, 4)) if kind == "zero" else np.array([[3.0, 3, 0, 0], [3, 3, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]])
    hdr.set_qform(None, code=0)
    hdr["sform_code"] = 1
    for i, name in enumerate(("srow_x", "srow_y", "srow_z")):
        hdr[name] = aff[i]
    nib.save(nib.Nifti1Image(np.asarray(src.dataobj), None, hdr), str(nii))
    assert nib.load(str(nii)).header["sform_code"] == 1
    row = only_row(run_volume(tmp_path, "mr", session, "OAS30004_MR_d0100")[0])
    assert ("zero voxel size" in row.reason) if kind == "zero" else ("not invertible" in row.reason)


def test_4d_mr_rejected(tmp_path):
    session, _ = mr_session(tmp_path / "raw", "OAS30005", frames=3)
    row = only_row(run_volume(tmp_path, "mr", session, "OAS30005_MR_d0100")[0])
    assert "4D" in row.reason and "(60, 60, 50, 3)" in row.reason


def test_all_zero_volume_rejected(tmp_path):
    session, _ = mr_session(tmp_path / "raw", "OAS30006", value=0.0)
    row = only_row(run_volume(tmp_path, "mr", session, "OAS30006_MR_d0100")[0])
    assert "every voxel of the image is 0" in row.reason


def test_float64_cast_and_logged_rgb_rejected(tmp_path):
    session, _ = mr_session(tmp_path / "raw", "OAS30007", dtype=np.float64)
    rows, info = run_volume(tmp_path / "a", "mr", session, "OAS30007_MR_d0100")
    assert rows.empty and any("float64 cast to float32" in f for f in info["ingest"]["fixes"])
    # RGB: one colour triple per voxel
    session, nii = mr_session(tmp_path / "raw2", "OAS30008")
    src = nib.load(str(nii))
    grey = np.clip(np.asarray(src.dataobj), 0, 255).astype(np.uint8)
    rgb = np.zeros(grey.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = rgb["G"] = rgb["B"] = grey
    img = nib.Nifti1Image(rgb, src.affine)
    img.header.set_data_dtype(nib.nifti1.data_type_codes.dtype["RGB"])
    nib.save(img, str(nii))
    row = only_row(run_volume(tmp_path / "b", "mr", session, "OAS30008_MR_d0100")[0])
    assert "RGB" in row.reason


# ----------------------------------------------------------------------------- PET timing


def test_pet_without_timing_uses_fallback_frames_and_logs_it(tmp_path):
    session = pet_session(tmp_path / "raw", "OAS30009", timing=None)
    rows, info = run_volume(tmp_path, "pet", session, "OAS30009_PIB_d0200")
    assert rows.empty
    ing = info["ingest"]
    assert ing["rule_used"] == "fallback" and [f["index"] for f in ing["frames_used"]] == [3, 4, 5, 6]
    assert any("no frame timing" in f for f in ing["fixes"])


def test_pet_fewer_frames_than_window_rejected(tmp_path):
    # a 30-min dynamic scan from injection: nothing of the PIB 30-60 min window
    session = pet_session(tmp_path / "raw", "OAS30010", starts=[0, 600, 1200])
    row = only_row(run_volume(tmp_path, "pet", session, "OAS30010_PIB_d0200")[0])
    assert "30-60 min" in row.reason and "cover 0.00" in row.reason
    assert "pet.windows_min" in row.action


def test_pet_old_frametimes_layout_is_read(tmp_path):
    session = pet_session(tmp_path / "raw", "OAS30011", timing="old")
    rows, info = run_volume(tmp_path, "pet", session, "OAS30011_PIB_d0200")
    assert rows.empty
    ing = info["ingest"]
    assert ing["timing_source"].startswith("FrameTimes") and [f["index"] for f in ing["frames_used"]] == [3, 4, 5]


# ----------------------------------------------------------------------------- any modality


def test_implausibly_small_head_mask_rejected_in_preprocess(tmp_path):
    # a 2 cm 'head' in a normal field of view: the mask is far below min_head_volume_ml
    session, nii = mr_session(tmp_path / "raw", "OAS30012")
    src = nib.load(str(nii))
    ijk = np.indices(src.shape).transpose(1, 2, 3, 0)
    data = np.where(np.linalg.norm((ijk - np.array(src.shape) / 2) * 3.0, axis=-1) < 10, 300.0, 0.0)
    data += np.random.default_rng(0).normal(0, 1, data.shape) ** 2
    nib.save(nib.Nifti1Image(data.astype(np.float32), src.affine), str(nii))
    rows, info = run_volume(tmp_path, "mr", session, "OAS30012_MR_d0100")
    assert info["status"] == "ok"  # ingest was fine; the mask says it is no head
    row = only_row(rows, rule="preprocess_volume")
    assert "head mask holds" in row.reason and "min_head_volume_ml" in row.reason
    assert "masking.mr" in row.action


def test_empty_head_mask_rejected(tmp_path):
    study = cq500_study(
        tmp_path / "raw", 20, **{"CT PLAIN": {"hu_fn": lambda lps: np.where(lps[..., 0] > 0, -1000.0, -990.0)}}
    )
    row = only_row(run_volume(tmp_path, "ct", study, "CQ500-CT-20")[0], rule="preprocess_volume")
    assert "holds 0 ml" in row.reason and "empty" in row.reason


@pytest.mark.parametrize("modality", ["ct", "mr"])
def test_volume_far_too_small_for_a_head_rejected(tmp_path, modality):
    if modality == "ct":
        source = cq500_study(
            tmp_path / "raw", 21, **{"CT PLAIN": {"size": 16, "spacing": 1.0, "n": 40, "thickness": 1.0}}
        )
        vid = "CQ500-CT-21"
    else:
        source, _ = mr_session(tmp_path / "raw", "OAS30013", shape=(20, 20, 20), spacing=1.0)
        vid = "OAS30013_MR_d0100"
    row = only_row(run_volume(tmp_path, modality, source, vid)[0])
    assert "far too small to contain a head" in row.reason and "min_extent_mm" in row.reason


def test_rejection_row_is_one_line_and_json_marks_status(tmp_path):
    session, _ = mr_session(tmp_path / "raw", "OAS30014", value=0.0)
    rows, info = run_volume(tmp_path, "mr", session, "OAS30014_MR_d0100")
    assert info["status"] == "rejected" and info["rejection"]["reason"] == rows.iloc[0].reason
    text = (tmp_path / "results/qc/rejected.csv").read_text()
    assert text.splitlines()[0] == "modality,volume,rule,file,reason,action" and len(text.splitlines()) == 2
    from medcyclegan.io.placeholders import read_rejection

    assert read_rejection(tmp_path / "results/volumes/mr/OAS30014_MR_d0100.nii.gz")["volume"] == "OAS30014_MR_d0100"
    assert read_rejection(tmp_path / "results/masks/mr/OAS30014_MR_d0100.nii.gz")["rule"] == "ingest"
    json.dumps(info)
