"""Nothing vanishes: in the real workflow every entry of every data folder and every sample-sheet
row gets one line of results/qc/discovery.csv, no patient name reaches an output, a log or the
console, and the subjects the sample sheet pins stay on their side of the split.

The raw tree holds empty files (names only): planning must open none, and the run is limited to
the discovery table and the split rule (no ingest)."""

import csv
import os

import pytest

from medcyclegan.ingest import discovery
from medcyclegan.privacy import file_ref
from medcyclegan.testing.fake_trees import PATIENT_FOLDER, build_discovery_tree
from medcyclegan.testing.workflow import TINY_DEMO, scheduled_jobs, snakemake, write_config

#: free text of the raw tree and the sheet that must appear nowhere
SECRETS = (PATIENT_FOLDER, "DOE^JANE", "Smith", "MRN-0042", "MRN-0077", "2020-01-03", "t1_mprage", "fdg_static")
TARGETS = ["results/qc/discovery.csv"] + [f"results/splits/{m}.csv" for m in ("ct", "mr", "pet")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("discovery")
    data = build_discovery_tree(root / "raw")
    work = root / "work"
    write_config(work, {**TINY_DEMO, "data": data})
    # the whole workflow plans from names only; --quiet rules: Snakemake itself prints every job's
    # input paths (the ingest job's raw folder) when it lists the jobs, which no rule can prevent
    dry = snakemake(work, "-n", "--quiet", "rules")
    run = snakemake(work, "-j2", *TARGETS)
    return work, data, dry, run


def table(work, name):
    with (work / "results" / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def expected_entries(data):
    """(source, entry) of every entry directly under each data folder and every sheet row."""
    out = []
    for key in ("ct_dir", "mr_dir", "pet_dir"):
        for name in sorted(os.listdir(data[key])):
            out.append((f"data.{key}", name if discovery.is_dataset_name(name) else file_ref(key, name)))
    return (
        out
        + [("data.sample_sheet row 1", file_ref("sample_sheet", "mri/t1_mprage.nii.gz"))]
        + [
            ("data.sample_sheet row 2", file_ref("sample_sheet", "DOE^JANE 1980")),
            ("data.sample_sheet row 3", file_ref("sample_sheet", "pet/fdg_static.nii.gz")),
        ]
    )


def test_the_whole_workflow_plans(run):
    _, _, dry, _ = run
    jobs = scheduled_jobs(dry.stdout)
    assert jobs["ingest"] == 5 + 3 + 3 and jobs["discovery_table"] == 1, jobs


def test_every_entry_appears_once_with_its_volume_or_reason(run):
    work, data, _, _ = run
    rows = table(work, "qc/discovery.csv")
    assert list(rows[0]) == list(discovery.COLUMNS)
    keys = [(r["source"], r["entry"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert set(expected_entries(data)) <= set(keys)
    assert set(keys) - set(expected_entries(data)) == {
        ("data.ct_dir", "CQ500-CT-3"),  # the study and the folder inside 'batch 2'
        ("data.ct_dir", file_ref("ct_dir", "batch 2/notes")),
    }
    got = {k: r for k, r in zip(keys, rows)}
    patient = got[("data.ct_dir", file_ref("ct_dir", PATIENT_FOLDER))]
    assert patient["status"] == "used" and patient["volume"] == discovery.pseudonym(PATIENT_FOLDER)
    for r in rows:
        assert r["status"] in ("used", "not used") and r["reason"], r
        assert (r["status"] == "used") == bool(r["volume"]) or "holding" in r["reason"], r
    unused = sum(r["status"] == "not used" for r in rows)
    assert unused == 6  # stray file, hidden file, 'notes', PET in mr_dir, 'Smith export', tracer XYZ
    assert discovery.discovery_summary(work / "results/qc/discovery.csv").startswith(f"{unused} entries")


def test_every_used_volume_is_in_its_split_and_the_sheet_pins_hold(run):
    work, _, _, _ = run
    volumes = {
        m: {r["volume"] for r in table(work, "qc/discovery.csv") if r["modality"] == m and r["volume"]}
        for m in ("ct", "mr", "pet")
    }
    splits = {m: {r["volume"]: r for r in table(work, f"splits/{m}.csv")} for m in ("ct", "mr", "pet")}
    assert {m: set(s) for m, s in splits.items()} == volumes
    mrn42, mrn77 = discovery.pseudonym("MRN-0042"), discovery.pseudonym("MRN-0077")
    assert {r["split"] for r in splits["mr"].values() if r["subject"] == mrn42} == {"test"}
    assert splits["ct"][mrn77]["split"] == "train"
    # OAS30002 is pinned by its PET row: its MR session in mr_dir follows (one subject, one side)
    assert splits["mr"]["OAS30002_MR_d0031"]["split"] == "train"
    assert {r["split"] for r in splits["pet"].values() if r["subject"] == "OAS30002"} == {"train"}
    assert "OAS30002_FDG" in splits["pet"]


def test_no_patient_name_in_results_logs_or_console(run):
    work, _, dry, run_ = run
    files = [p for d in ("results", "logs") for p in (work / d).rglob("*") if p.is_file()]
    assert len(files) >= 5
    hits = [(str(p.relative_to(work)), s) for p in files for s in SECRETS if s.encode() in p.read_bytes()]
    hits += [(p, s) for p in ("results", "logs") for s in SECRETS if s in str(list((work / p).rglob("*")))]
    hits += [("console", s) for s in SECRETS for proc in (dry, run_) if s in proc.stdout + proc.stderr]
    assert hits == []
