"""Workflow test on a mixed good/bad raw dataset (real CQ500 / OASIS-3 layouts), run WITHOUT
--keep-going: the bad volumes become rows of results/qc/rejected.csv, the good ones reach their
TFRecords in the same run, no DICOM identifying value reaches any byte under results/ or logs/,
and a job killed while writing its TFRecord leaves nothing that a rerun takes as complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import pandas as pd
import pydicom
import pytest

from medcyclegan.privacy import file_ref
from medcyclegan.testing.free_text import decoded_views
from medcyclegan.testing.hostile_data import cq500_study, mr_session, pet_session
from medcyclegan.testing.workflow import snakemake, snakemake_command, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.timeout(1500)]

OVERRIDES = {
    "ct_series": {"max_slice_thickness_mm": 3.5, "min_slices": 30},
    "geometry": {"spacing_mm": [2.0, 2.0, 2.0]},
    "slicing": {"min_head_area_mm2": 3000, "size": 128, "max_depth_below_vertex_mm": None},
    "split": {"test_fraction": 0.34},
    "qc": {"preview_subjects": 2, "preview_slices": 2},
}

# every identifying DICOM attribute, each with a value found nowhere else
PHI_TAGS = {
    "PatientName": "Zqxmarker^Patientname",
    "PatientID": "ZQX-PID-4711",
    "OtherPatientIDs": "ZQX-OTHERID-0815",
    "PatientBirthDate": "19230417",
    "PatientAddress": "Zqxmarker Street 12, Zqxtown",
    "PatientTelephoneNumbers": "+99-555-0199",
    "PatientAge": "097Y",
    "StudyDate": "19310802",
    "SeriesDate": "19410911",
    "AcquisitionDate": "19520306",
    "ContentDate": "19610713",
    "StudyTime": "031415.926535",
    "SeriesTime": "041516.271828",
    "AcquisitionTime": "051617.141421",
    "ContentTime": "061718.173205",
    "InstitutionName": "Zqxmarker Institution",
    "InstitutionAddress": "Zqx Hospital Road 9",
    "InstitutionalDepartmentName": "Zqxmarker Department",
    "ReferringPhysicianName": "Zqxmarker^Referrer",
    "PerformingPhysicianName": "Zqxmarker^Performer",
    "NameOfPhysiciansReadingStudy": "Zqxmarker^Reader",
    "OperatorsName": "Zqxmarker^Operator",
    "AccessionNumber": "ZQXACC99001",
    "StudyID": "ZQXSTUDY77",
    "StationName": "ZQXSTATION5",
    "DeviceSerialNumber": "ZQXSERIAL31337",
    "StudyInstanceUID": "1.2.826.0.1.3680043.10.999.424242",
    "FrameOfReferenceUID": "1.2.826.0.1.3680043.10.999.434343",
}
SIDECAR_PHI = {
    "PatientName": "Zqxsidecar^Name",
    "PatientBirthDate": "1927-05-05",
    "AcquisitionDateTime": "1999-12-31T23:59:58.123456",
    "InstitutionName": "Zqxsidecar Institute",
    "DeviceSerialNumber": "ZQXSIDECARSERIAL",
}
NIFTI_PHI = {
    "descrip": b"ZQXDESCRIP Time=123456.789",
    "aux_file": b"ZQXAUX",
    "intent_name": b"ZQXINTENT",
    "db_name": b"ZQXDBNAME",
}

GOOD = {"ct": {"CQ500-CT-1"}, "mr": {"OAS30001_MR_d0100"}, "pet": {"OAS30002_AV45_d0300"}}
BAD = {
    ("ct", "CQ500-CT-3"): "truncated",
    ("ct", "CQ500-CT-4"): "no series qualifies",
    ("mr", "OAS30003_MR_d0100"): "truncated",
    ("mr", "OAS30004_MR_d0100"): "4D",
    ("pet", "OAS30005_PIB_d0200"): "30-60 min",
}


# the TFRecords, the reject table and one of each QC output (the other QC jobs are the same
# code; leaving them out keeps this test's CPU time down)
TARGETS = [
    f"results/tfrecords/{m}/{s}.tfrecord" for m in ("ct", "mr", "pet") for s in ("train", "validation", "test")
] + [
    "results/qc/rejected.csv",
    "results/qc/ct_preview.png",
    "results/qc/mr_slices.csv",
]


def _mark_nifti(nii: Path) -> None:
    img = nib.load(str(nii))
    hdr = img.header.copy()
    for key, value in NIFTI_PHI.items():
        hdr[key] = value
    nib.save(nib.Nifti1Image(img.get_fdata(dtype="float32"), img.affine, hdr), str(nii))


def _mark_sidecar(session: Path) -> None:
    for side in session.rglob("*.json"):
        side.write_text(json.dumps({**json.loads(side.read_text()), **SIDECAR_PHI}))


def build_mixed_tree(root: Path) -> dict:
    ct, mr, pet = root / "cq500", root / "mr", root / "pet"
    good = cq500_study(ct, 1, **{"CT PLAIN": {"extra_tags": PHI_TAGS, "series_uid": "1.2.826.0.1.3680043.10.999.1001"}})
    (good / "Unknown Study/CT PLAIN/viewer-notes.dcm").write_text("not an image\n" * 30)  # fixed: skipped
    bad = cq500_study(ct, 3, **{"CT PLAIN": {"extra_tags": PHI_TAGS}})
    f = bad / "Unknown Study/CT PLAIN/CT000017.dcm"
    f.write_bytes(f.read_bytes()[:5000])
    cq500_study(ct, 4, **{"CT BONE": {"kernel": "BONE", "description": "BONE", "extra_tags": PHI_TAGS}})
    session, nii = mr_session(mr, "OAS30001")
    _mark_nifti(nii)
    _mark_sidecar(session)
    _, nii = mr_session(mr, "OAS30003")
    nii.write_bytes(nii.read_bytes()[: len(nii.read_bytes()) // 2])
    mr_session(mr, "OAS30004", frames=2)
    _mark_sidecar(pet_session(pet, "OAS30002", tracer="AV45", day="d0300", timing="old"))
    pet_session(pet, "OAS30005", starts=[0, 600, 1200])
    return {"ct_dir": str(ct), "mr_dir": str(mr), "pet_dir": str(pet)}


def phi_markers(ct_dir: str) -> set[str]:
    """The marker values plus every UID actually present in the test DICOMs (per-file SOP UIDs)."""
    markers = {str(v) for v in PHI_TAGS.values()} | {str(v) for v in SIDECAR_PHI.values()}
    markers |= {v.decode().split(" ")[0] for v in NIFTI_PHI.values()}
    markers |= {"Zqxmarker", "ZQX", "Zqxsidecar"}  # any fragment of a name
    for f in Path(ct_dir).rglob("*.dcm"):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # the truncated file
            continue
        for elem in ds.iterall():
            if elem.VR == "UI" and elem.keyword not in ("SOPClassUID", "TransferSyntaxUID", "MediaStorageSOPClassUID"):
                markers.add(str(elem.value))
        markers.add(str(ds.file_meta.MediaStorageSOPInstanceUID))
    return markers


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    data = build_mixed_tree(root / "raw")
    work = root / "work"
    write_config(work, {**OVERRIDES, "data": data})
    proc = snakemake(work, "-j2", *TARGETS)  # no --keep-going
    return work, data, proc


def records(path):
    from medcyclegan.io.tfrecords import read_dataset

    return [{k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in ex.items()} for ex in read_dataset(str(path))]


def test_bad_volumes_rejected_with_reasons_good_ones_reach_tfrecords(run):
    work, _, proc = run
    table = pd.read_csv(work / "results/qc/rejected.csv", keep_default_na=False)
    assert list(table.columns) == ["modality", "volume", "rule", "file", "reason", "action"]
    got = {(r.modality, r.volume): r for r in table.itertuples()}
    assert set(got) == set(BAD), table
    for key, word in BAD.items():
        row = got[key]
        assert word in row.reason and row.rule == "ingest" and row.file and row.action, row
    for modality, good in GOOD.items():
        volumes = set()
        for split in ("train", "validation", "test"):
            volumes |= {
                ex["volume"].decode() for ex in records(work / f"results/tfrecords/{modality}/{split}.tfrecord")
            }
        assert volumes == good, (modality, volumes)
    out = proc.stdout + proc.stderr
    assert "5 input volume(s) were rejected" in out and "results/qc/rejected.csv" in out
    fixes = pd.read_csv(work / "results/qc/fixes.csv")
    notes = file_ref("CQ500-CT-1", "viewer-notes.dcm")  # file names are references (medcyclegan.privacy)
    assert len(fixes) == 1 and fixes.volume[0] == "CQ500-CT-1" and notes in fixes.fix[0]
    assert "1 documented fix(es) were applied" in out


def test_no_identifying_value_in_any_output_byte(run):
    work, data, proc = run
    markers = phi_markers(data["ct_dir"])
    assert len(markers) > 40
    files = [p for d in ("results", "logs") for p in (work / d).rglob("*") if p.is_file()]
    assert len(files) > 40
    kinds = {p.name.split(".", 1)[-1] for p in files}
    assert {"nii.gz", "npz", "tfrecord", "csv", "json", "png", "log"} <= kinds, kinds
    hits = []
    for p in files:
        for view in decoded_views(p):
            for m in markers:
                if m.encode() in view:
                    hits.append((str(p.relative_to(work)), m))
    for m in markers:  # and the console output of the run
        if m in proc.stdout or m in proc.stderr:
            hits.append(("snakemake output", m))
    assert hits == []


def test_killed_tfrecord_write_leaves_no_complete_looking_file(run, tmp_path):
    work, _, _ = run
    target = work / "results/tfrecords/mr/train.tfrecord"
    expected = len(records(target))
    target.unlink()
    hold = tmp_path / "hold"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    # test-only hook: the TFRecord job stops just before it would commit its output
    (hooks / "sitecustomize.py").write_text(
        "import os, time\n"
        "_replace = os.replace\n"
        "def _held(src, dst, *a, **k):\n"
        "    if str(dst).endswith('.tfrecord') and os.environ.get('HOLD_FILE'):\n"
        "        open(os.environ['HOLD_FILE'], 'w').write(str(src))\n"
        "        time.sleep(600)\n"
        "    return _replace(src, dst, *a, **k)\n"
        "os.replace = _held\n"
    )
    env = {**os.environ, "PYTHONPATH": str(hooks), "HOLD_FILE": str(hold)}
    cmd = snakemake_command(work, "-j1", *TARGETS)
    proc = subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 300
        while not hold.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert hold.exists(), "the TFRecord job never reached its write"
        partial = work / hold.read_text()  # relative to the job's working directory
        assert partial.exists() and partial.stat().st_size > 0 and not target.exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run, as a power cut or OOM kill would
        proc.wait()
    assert not target.exists()  # nothing a later run could take as complete
    snakemake(work, "--unlock")
    out = snakemake(work, "-j2", *TARGETS)
    assert len(records(target)) == expected
    assert not partial.exists()
    assert "train.tfrecord" in out.stdout + out.stderr
