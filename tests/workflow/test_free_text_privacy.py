"""Free text of the input never reaches an output, a log or the console.

CT, MR and PET inputs carry unique markers in every free-text DICOM attribute (Latin-1 and UTF-8
character sets), sidecar text, NIfTI header text, folder names and file names, next to a
patient-named study and a broken one. The workflow preprocesses them, trains a tiny model and
evaluates it on SynthRAD2023-style pairs; then every byte under results/, logs/ and .snakemake/
(decompressed) and the console output are searched for any form of any marker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from medcyclegan.testing import free_text
from medcyclegan.testing.synthrad_trees import phantom_task1
from medcyclegan.testing.workflow import TINY_TRAINING, snakemake, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow, pytest.mark.timeout(1800)]

OVERRIDES = {
    "ct_series": {"max_slice_thickness_mm": 3.5, "min_slices": 30},
    "geometry": {"spacing_mm": [2.0, 2.0, 2.0]},
    "slicing": {"min_head_area_mm2": 3000, "size": 128, "max_depth_below_vertex_mm": None},
    "split": {"test_fraction": 0.34},
    "qc": {"preview_subjects": 3, "preview_slices": 2},
    "privacy": {"id_key": "test-site-key"},
    **TINY_TRAINING,
}
TARGETS = [
    "results/qc/discovery.csv",
    "results/qc/fixes.csv",
    "results/tfrecords/ct/train.tfrecord",
    "results/tfrecords/ct/validation.tfrecord",
    "results/tfrecords/ct/test.tfrecord",
    "results/mr2ct/metrics.json",
    "results/tfrecords/mr/validation.tfrecord",
    "results/mr2ct/evaluation.png",
    "results/mr2ct/examples.png",
    "results/qc/rejected.csv",
    "results/qc/ct_preview.png",
    "results/qc/mr_preview.png",
    "results/qc/pet_preview.png",
    "results/qc/pet_slices.csv",
    "results/tfrecords/pet/train.tfrecord",
    "results/tfrecords/pet/validation.tfrecord",
    "results/tfrecords/pet/test.tfrecord",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("free_text")
    raw = root / "raw"
    mark = free_text.Markers()
    free_text.build_ct(raw / "ct", mark)
    free_text.build_zipped_ct(raw / "ct", mark)
    sheet = free_text.build_sample_sheet(raw / "cohort", mark)
    free_text.build_mr(raw / "mr", mark)
    free_text.build_pet(raw / "pet", mark)
    brain = phantom_task1(raw / "synthrad")
    for patient in brain.iterdir():
        (patient / f"{mark('synthrad')}.txt").write_text("scanned by Zqf\n")
    data = {
        "ct_dir": str(raw / "ct"),
        "mr_dir": str(raw / "mr"),
        "pet_dir": str(raw / "pet"),
        "sample_sheet": str(sheet),
    }
    work = root / "work"
    write_config(work, {**OVERRIDES, "data": {**data, "synthrad_dir": str(brain)}})
    dry = snakemake(work, "-n", *TARGETS)
    proc = snakemake(work, "-j2", *TARGETS)
    return work, raw, mark, {"dry run": dry.stdout + dry.stderr, "console": proc.stdout + proc.stderr}


def test_the_markers_are_in_the_input(run):
    _, raw, mark, _ = run
    assert len(mark.issued) > 60
    found = free_text.leaks([raw], {}, mark.issued)
    assert len(found) > 50, "the search must find the markers where they are"


def test_no_marker_in_any_output_log_or_console(run):
    work, _, mark, console = run
    found = free_text.leaks([work / "results", work / "logs", work / ".snakemake"], console, mark.issued)
    assert not found, "free text of the input leaked:\n" + "\n".join(found[:40])


def test_every_entry_is_in_the_discovery_report_and_every_volume_somewhere(run):
    """Each entry of the data folders and the sheet has one discovery row; each volume it became
    reached its TFRecords or has its reason in rejected.csv (fixes in fixes.csv)."""
    from medcyclegan.io.tfrecords import read_dataset

    work, raw, _, _ = run
    report = pd.read_csv(work / "results/qc/discovery.csv", keep_default_na=False)
    entries = [e for key in ("ct", "mr", "pet") for e in (raw / key).iterdir()]
    assert len(report[report.source.str.startswith(("data.ct_dir", "data.mr_dir", "data.pet_dir"))]) == len(entries)
    assert len(report[report.source.str.startswith("data.sample_sheet")]) == 2
    assert set(report.status) == {"used"}, report
    used = {(r.modality, r.volume) for r in report.itertuples() if r.volume}
    rejected = pd.read_csv(work / "results/qc/rejected.csv", keep_default_na=False)
    in_records = {
        (m, ex["volume"].numpy().decode())
        for m in ("ct", "mr", "pet")
        for s in ("train", "validation", "test")
        for ex in read_dataset(str(work / f"results/tfrecords/{m}/{s}.tfrecord"))
    }
    missing = used - in_records - {(r.modality, r.volume) for r in rejected.itertuples()}
    assert not missing, missing
    assert ("ct", "CQ500-CT-3") in in_records  # the zipped study
    fixes = pd.read_csv(work / "results/qc/fixes.csv", keep_default_na=False)
    assert (fixes.volume == "CQ500-CT-3").any() and fixes.fix.str.contains("not a DICOM file").any()
    sheet = report[report.source.str.startswith("data.sample_sheet")]
    assert all(v.startswith("anon-") for v in sheet.volume)


def test_every_input_is_accounted_for_by_reference(run):
    work, _, _, _ = run
    rejected = pd.read_csv(work / "results/qc/rejected.csv", keep_default_na=False)
    (row,) = rejected.itertuples()
    assert row.modality == "ct" and row.volume.startswith("anon-") and "truncated" in row.reason
    assert row.file.startswith(f"{row.volume}/f-")
    fixes = pd.read_csv(work / "results/qc/fixes.csv", keep_default_na=False)
    assert set(pd.read_csv(work / "results/splits/ct.csv").volume) >= {"CQ500-CT-1", "CQ500-CT-2"}
    info = json.loads((work / "results/volumes/ct/CQ500-CT-1.json").read_text())["ingest"]
    assert info["series_folder"].startswith("CQ500-CT-1/f-") and info["series_description"].startswith("t-")
    assert fixes.fix.str.contains("/f-").all()
    metrics = json.loads((work / "results/mr2ct/metrics.json").read_text())
    assert metrics["subjects"] and all(s["volume"].startswith("1B") for s in metrics["subjects"])


def test_locate_maps_every_reference_back_to_its_file(run):
    work, raw, _, _ = run
    proc = subprocess.run(
        [sys.executable, "-m", "medcyclegan", "locate", "--configfile", "config.yaml", "results/qc/rejected.csv"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rejected = pd.read_csv(work / "results/qc/rejected.csv", keep_default_na=False)
    lines = dict(line.split("\t") for line in proc.stdout.splitlines())
    (bad_study,) = [p for p in (raw / "ct").iterdir() if p.name.startswith("ROE^JANE")]
    assert Path(lines[rejected.file[0]]) == bad_study / "CT"  # the series to fix
    nothing = subprocess.run(
        [sys.executable, "-m", "medcyclegan", "locate", "CQ500-CT-1/f-0000000000"], cwd=work, capture_output=True
    )
    assert nothing.returncode == 1 and b"not found" in nothing.stdout
