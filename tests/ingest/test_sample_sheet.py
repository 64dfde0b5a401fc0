"""The sample sheet: validated with row and column in every message, pseudonymous ids whose
subject stays one unit of the split, combined with the data folders."""

import re

import pytest

from medcyclegan.config.validation import validate_config
from medcyclegan.ingest import discovery, sample_sheet
from medcyclegan.ingest.sample_sheet import SampleSheetError, read_sample_sheet
from medcyclegan.testing.fake_trees import write_sample_sheet

TRACERS = {"PIB", "AV45", "FDG"}


@pytest.fixture
def cohort(tmp_path):
    base = tmp_path / "cohort"
    (base / "mri").mkdir(parents=True)
    for name in ("t1.nii.gz", "t1_b.nii", "pet.nii.gz", "scan.dcm"):
        (base / "mri" / name).touch()
    for folder in ("DOE^JANE 1980/CT HEAD", "PET series", "OAS30001_MR_d0129"):
        (base / folder).mkdir(parents=True)
    return base


def read(path, **kw):
    return read_sample_sheet(path, tracers=TRACERS, **kw)


def test_rows_become_volumes_of_one_subject(cohort):
    rows = [
        {"subject": "MRN-0042", "modality": "mr", "path": "mri/t1.nii.gz", "session": "2020-01-03", "split": "test"},
        {"subject": "MRN-0042", "modality": "mr", "path": "mri/t1_b.nii", "session": "2"},
        {"subject": "MRN-0042", "modality": "ct", "path": "DOE^JANE 1980"},
        {"subject": "MRN-0042", "modality": "pet", "path": "PET series", "tracer": "pib"},
        {"subject": "OAS30001", "modality": "mr", "path": str(cohort / "OAS30001_MR_d0129"), "session": "d0129"},
    ]
    sheet = read(write_sample_sheet(cohort / "cohort.tsv", rows))
    subject = discovery.pseudonym("MRN-0042")
    vols = [r.volume for r in sheet.rows]
    assert vols[1:] == [f"{subject}_MR_2", subject, f"{subject}_PIB", "OAS30001_MR_d0129"]
    assert re.fullmatch(rf"{subject}_MR_s[0-9a-f]{{10}}", vols[0])  # a date is not kept
    assert all(discovery.VOLUME_ID.match(v) for v in vols)
    assert {discovery.subject_of(v) for v in vols[:4]} == {subject}
    assert sheet.pins == {subject: "test"}
    assert sheet.tracers == {f"{subject}_PIB": "PIB"}
    assert [r.source for r in sheet.rows] == [f"data.sample_sheet row {n}" for n in range(1, 6)]
    assert sheet.rows[4].entry == "OAS30001_MR_d0129" and sheet.rows[0].entry.startswith("sample_sheet/f-")
    assert sheet.rows[2].path == str(cohort / "DOE^JANE 1980")  # relative to the sheet's folder
    assert not [r for r in sheet.rows if "MRN" in str(r.public()) or "DOE" in str(r.public())]


def test_subject_ids_follow_the_privacy_mode(cohort):
    assert sample_sheet.public_subject("CQ500-CT-12") == "CQ500-CT-12"
    assert sample_sheet.public_subject("CQ500CT12 CQ500CT12") == "CQ500-CT-12"
    assert sample_sheet.public_subject("CQ500-CT-12", id_mode="hash") == discovery.pseudonym("CQ500-CT-12")
    assert sample_sheet.public_subject("OAS30001", id_mode="hash") == "OAS30001"
    assert sample_sheet.public_subject("P-0001", id_mode="folder") == discovery.pseudonym("P-0001")
    assert sample_sheet.public_subject("P-0001", id_key="k") != discovery.pseudonym("P-0001")


def test_usable_rows_and_reasoned_rows(cohort):
    rows = [
        {"subject": "A", "modality": "ct", "path": "mri/t1.nii.gz"},
        {"subject": "B", "modality": "mr", "path": "mri/scan.dcm"},
        {"subject": "C", "modality": "pet", "path": "mri/pet.nii.gz", "tracer": "XYZ"},
        {"subject": "D", "modality": "mr", "path": "mri/t1.nii.gz"},
    ]
    sheet = read(write_sample_sheet(cohort / "cohort.tsv", rows))
    reasons = [r.reason for r in sheet.rows]
    assert [r.status for r in sheet.rows] == ["not used", "not used", "not used", "used"]
    assert "DICOM study or series folder" in reasons[0] and "not NIfTI" in reasons[1] and "XYZ" in reasons[2]


@pytest.mark.parametrize(
    "header, row, message",
    [
        (["subject", "modality"], ["A", "mr"], r"header \(line 2\): no column 'path'"),
        (["subject", "modality", "path", "tracr"], ["A", "mr", "mri/t1.nii.gz", ""], "unknown column 'tracr'"),
        (["subject", "modality", "path"], ["", "mr", "mri/t1.nii.gz"], r"row 1 \(line 4\), column subject: is empty"),
        (
            ["subject", "modality", "path"],
            ["A", "xray", "mri/t1.nii.gz"],
            "column modality: 'xray' is not one of ct, mr, pet",
        ),
        (["subject", "modality", "path"], ["A", "mr", "mri/none.nii.gz"], "column path: no such file or folder"),
        (
            ["subject", "modality", "path", "split"],
            ["A", "mr", "mri/t1.nii.gz", "tune"],
            "column split: 'tune' is not one of train, validation, test",
        ),
        (
            ["subject", "modality", "path", "tracer"],
            ["A", "mr", "mri/t1.nii.gz", "PIB"],
            "column tracer: a tracer is given for a mr row",
        ),
        (["subject", "modality", "path", "tracer"], ["A", "pet", "mri/pet.nii.gz", "P-IB"], "column tracer: 'P-IB'"),
        (
            ["subject", "modality", "path"],
            ["A", "mr", "mri/t1.nii.gz", "extra"],
            "row 1 .*: 4 cells, but the header names 3",
        ),
    ],
)
def test_a_malformed_sheet_names_row_and_column(cohort, header, row, message):
    sheet = cohort / "cohort.tsv"
    sheet.write_text("# a comment line\n" + "\t".join(header) + "\n\n" + "\t".join(row) + "\n")
    with pytest.raises(SampleSheetError, match=message) as err:
        read(sheet)
    assert "cohort.tsv" in str(err.value)
    assert "none.nii.gz" not in str(err.value)  # free text (a path, a subject) is never repeated


def test_one_subject_one_side_of_the_split(cohort):
    rows = [
        {"subject": "A", "modality": "mr", "path": "mri/t1.nii.gz", "split": "train"},
        {"subject": "A", "modality": "ct", "path": "DOE^JANE 1980", "split": "test"},
    ]
    with pytest.raises(
        SampleSheetError, match=r"row 2 \(line 3\), column split: 'test', but row 1 puts the same subject in 'train'"
    ):
        read(write_sample_sheet(cohort / "cohort.tsv", rows))


def test_csv_sheet_and_a_missing_sheet(cohort):
    rows = [{"subject": "A", "modality": "MR", "path": "mri/t1.nii.gz", "split": "Train"}]
    sheet = read(write_sample_sheet(cohort / "cohort.csv", rows, delimiter=","))
    assert sheet.rows[0].modality == "mr" and list(sheet.pins.values()) == ["train"]
    with pytest.raises(SampleSheetError, match="does not exist"):
        read(cohort / "nope.tsv")


def test_sheet_combines_with_folders_and_duplicates_get_a_row(cohort, tmp_path):
    mr = tmp_path / "mr"
    for s in ("OAS30001_MR_d0129", "OAS30002_MR_d0031"):
        (mr / s).mkdir(parents=True)
    rows = [
        {"subject": "OAS30001", "modality": "mr", "path": "OAS30001_MR_d0129", "session": "d0129"},
        {"subject": "H-7", "modality": "mr", "path": "mri/t1.nii.gz", "split": "test"},
    ]
    sheet = write_sample_sheet(cohort / "cohort.tsv", rows)
    cfg = validate_config({"data": {"mr_dir": str(mr), "sample_sheet": str(sheet)}})
    found = discovery.discover(cfg, "results/demo", demo_ids=lambda m: [f"{m}-a", f"{m}-b"])
    dup = [r for r in found.rows if r.status == "not used"]
    assert len(dup) == 1 and dup[0].source == "data.sample_sheet row 1" and "data.mr_dir" in dup[0].reason
    assert found.volumes["mr"]["OAS30001_MR_d0129"] == str(mr / "OAS30001_MR_d0129")  # the folder came first
    assert len(found.volumes["mr"]) == 3 and found.demo == {"ct", "pet"}
    assert found.pins == {discovery.pseudonym("H-7"): "test"}
