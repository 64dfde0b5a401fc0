"""The discovery report: every entry of every data folder accounted for, from names only."""

import csv

import pytest

from medcyclegan.config.validation import validate_config
from medcyclegan.ingest import discovery
from medcyclegan.privacy import file_ref
from medcyclegan.testing.fake_trees import PATIENT_FOLDER, build_discovery_tree


def rows_by_entry(rows):
    return {(r.source, r.entry): r for r in rows}


def demo_ids(modality):
    return [f"demo-{modality}-{i}" for i in range(2)]


@pytest.fixture
def tree(tmp_path):
    return tmp_path, build_discovery_tree(tmp_path / "raw")


def test_every_ct_entry_gets_one_row_and_other_study_folders_their_anon_id(tree):
    _, data = tree
    rows = discovery.scan_ct_dir(data["ct_dir"])
    got = rows_by_entry(rows)
    assert len(got) == len(rows) == 8  # 6 entries under ct_dir + the study and the folder inside 'batch 2'
    patient = got[("data.ct_dir", file_ref("ct_dir", PATIENT_FOLDER))]
    assert patient.status == "used" and patient.volume == discovery.pseudonym(PATIENT_FOLDER)
    assert got[("data.ct_dir", "CQ500-CT-1")].volume == "CQ500-CT-1"
    assert got[("data.ct_dir", "CQ500CT2 CQ500CT2")].volume == "CQ500-CT-2"
    assert got[("data.ct_dir", "CQ500-CT-3")].volume == "CQ500-CT-3"  # inside the folder 'batch 2'
    wrapper = got[("data.ct_dir", file_ref("ct_dir", "batch 2"))]
    assert wrapper.status == "used" and not wrapper.volume and "CQ500" in wrapper.reason
    notes = got[("data.ct_dir", file_ref("ct_dir", "batch 2/notes"))]
    assert notes.status == "not used" and "holds none" in notes.reason
    assert "a file" in got[("data.ct_dir", file_ref("ct_dir", "reads.csv"))].reason
    assert "hidden" in got[("data.ct_dir", file_ref("ct_dir", ".DS_Store"))].reason
    assert not [r for r in rows if "DOE" in str(r.public())]
    assert discovery.find_ct_studies(data["ct_dir"]) == {r.volume: r.path for r in rows if r.volume}


def test_ct_id_modes_and_duplicates(tmp_path):
    ct = tmp_path / "ct"
    (ct / "CQ500-CT-7" / "CQ500CT7 CQ500CT7").mkdir(parents=True)
    (ct / "CQ500CT7 CQ500CT7" / "Unknown Study").mkdir(parents=True)  # the same study, twice
    (ct / "Roe, Jane" / "CT").mkdir(parents=True)
    (ct / "P-0001" / "CT").mkdir(parents=True)
    rows = discovery.dedupe(discovery.scan_ct_dir(ct))
    dup = [r for r in rows if r.status == "not used"]
    assert len(dup) == 1 and dup[0].entry == "CQ500CT7 CQ500CT7" and "duplicate: volume CQ500-CT-7" in dup[0].reason
    folder = rows_by_entry(discovery.scan_ct_dir(ct, id_mode="folder"))
    assert folder[("data.ct_dir", "P-0001")].volume == "P-0001"
    bad = folder[("data.ct_dir", file_ref("ct_dir", "Roe, Jane"))]
    assert bad.status == "not used" and "no valid volume id" in bad.reason
    hashed = discovery.find_ct_studies(ct, id_mode="hash")
    assert set(hashed) == {discovery.pseudonym(n) for n in ("CQ500-CT-7", "Roe, Jane", "P-0001")}
    with pytest.raises(ValueError, match="ct_study_ids"):
        discovery.scan_ct_dir(ct, id_mode="names")
    with pytest.raises(FileNotFoundError, match=r"data\.ct_dir"):
        discovery.scan_ct_dir(tmp_path / "nowhere")


def test_oasis_rows_give_the_reason_for_each_session(tree):
    _, data = tree
    tracers = {"PIB", "AV45", "FDG"}
    mr = rows_by_entry(discovery.scan_oasis_dir(data["mr_dir"], "mr", tracers))
    assert mr[("data.mr_dir", "OAS30001_MR_d0129")].volume == "OAS30001_MR_d0129"
    assert "data.pet_dir" in mr[("data.mr_dir", "OAS30003_PIB_d0140")].reason
    unknown = mr[("data.mr_dir", file_ref("mr_dir", "Smith export"))]
    assert unknown.status == "not used" and "unknown layout" in unknown.reason and "sample_sheet" in unknown.reason
    pet = rows_by_entry(discovery.scan_oasis_dir(data["pet_dir"], "pet", tracers))
    assert [r.volume for r in pet.values() if r.volume] == ["OAS30001_PIB_d0140", "OAS30002_AV45_d0311"]
    assert "pet.windows_min" in pet[("data.pet_dir", "OAS30003_XYZ_d0001")].reason
    mr_in_pet = discovery.scan_oasis_dir(data["mr_dir"], "pet", tracers)
    assert "data.mr_dir" in rows_by_entry(mr_in_pet)[("data.pet_dir", "OAS30001_MR_d0129")].reason


def test_oasis_sessions_inside_batch_folders(tmp_path):
    for name in ["OAS30001_MR_d0129", "OAS30002_MR_d0031", "readme"]:
        (tmp_path / "batch1" / name).mkdir(parents=True)
    rows = discovery.scan_oasis_dir(tmp_path, "mr", {"PIB"})
    assert [(r.entry, r.status) for r in rows] == [
        (file_ref("mr_dir", "batch1"), "used"),
        ("OAS30001_MR_d0129", "used"),
        ("OAS30002_MR_d0031", "used"),
        (file_ref("mr_dir", "batch1/readme"), "not used"),
    ]


def test_discover_combines_every_source_and_names_only(tree, monkeypatch):
    _, data = tree
    cfg = validate_config({"data": {k: v for k, v in data.items() if k != "sample_sheet"}})
    opened = []

    def no_open(*args, **kwargs):
        opened.append(args[0])
        raise OSError("planning must open no file")

    with monkeypatch.context() as m:
        for target in ("builtins.open", "io.open", "os.open"):
            m.setattr(target, no_open)
        found = discovery.discover(cfg, "results/demo", demo_ids=demo_ids)
    assert opened == []  # planning opens no file (the sample sheet, read as text, has its own tests)
    assert found.demo == frozenset()
    assert len(found.volumes["ct"]) == 4 and len(found.volumes["mr"]) == 2 and len(found.volumes["pet"]) == 2
    assert {r["status"] for r in found.public_rows()} == {"used", "not used"}
    assert found.refs()[file_ref("ct_dir", PATIENT_FOLDER)].endswith(PATIENT_FOLDER)


def test_demo_only_for_modalities_no_source_gives(tmp_path):
    for session in ("OAS30001_MR_d0129", "OAS30002_MR_d0031", "OAS30003_MR_d1200"):
        (tmp_path / "mr" / session).mkdir(parents=True)
    cfg = validate_config({"data": {"mr_dir": str(tmp_path / "mr")}})
    found = discovery.discover(cfg, "results/demo", demo_ids=demo_ids)
    assert found.demo == {"ct", "pet"}
    assert found.volumes["ct"] == {v: f"results/demo/raw/ct/{v}" for v in demo_ids("ct")}
    assert list(found.volumes["mr"]) == ["OAS30001_MR_d0129", "OAS30002_MR_d0031", "OAS30003_MR_d1200"]
    assert discovery.discover_volumes(cfg, "results/demo", demo_ids=demo_ids) == found.volumes
    with pytest.raises(ValueError, match="demo_ids"):
        discovery.discover(cfg, "results/demo")


def test_synthrad_rows(tmp_path):
    brain = tmp_path / "Task1" / "brain"
    for pid, files in (("1BA001", ("mr", "ct")), ("1BA002", ("mr", "ct")), ("1BA003", ("mr",))):
        (brain / pid).mkdir(parents=True)
        for f in files:
            (brain / pid / f"{f}.nii.gz").touch()
    (brain / "overview.xlsx").touch()
    cfg = validate_config({"data": {"synthrad_dir": str(tmp_path)}})
    found = discovery.discover(cfg, "results/demo", demo_ids=demo_ids)
    assert found.volumes["mr"] == found.volumes["ct"] == found.synthrad and list(found.synthrad) == ["1BA001", "1BA002"]
    reasons = {r.entry: r.reason for r in found.rows if r.status == "not used"}
    assert "without both" in reasons["1BA003"]
    assert "not a SynthRAD2023" in reasons[file_ref("synthrad_dir", "Task1/brain/overview.xlsx")]
    assert found.demo == {"pet"}


def test_table_and_summary(tree, tmp_path):
    _, data = tree
    cfg = validate_config({"data": data})
    found = discovery.discover(cfg, "results/demo")
    out = tmp_path / "qc" / "discovery.csv"
    discovery.write_discovery_table(found.public_rows(), out)
    with out.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == list(discovery.COLUMNS) and len(table) == len(found.rows)
    n = sum(r["status"] == "not used" for r in table)
    assert (
        discovery.discovery_summary(out)
        == f"{n} entries of the data folders and sample sheet were not used; see {out} (entry, reason)."
    )
    discovery.write_discovery_table([r for r in found.public_rows() if r["status"] == "used"], out)
    assert discovery.discovery_summary(out) == ""
    assert discovery.discovery_summary(tmp_path / "missing.csv") == ""
    text = out.read_text()
    assert "DOE" not in text and "Smith" not in text and "MRN" not in text


@pytest.mark.parametrize(
    "volume, subject",
    [
        ("OAS30001_MR_d0129", "OAS30001"),
        ("OAS30001_PIB_d0140", "OAS30001"),
        ("CQ500-CT-4", "CQ500-CT-4"),
        ("anon-0123456789ab", "anon-0123456789ab"),
        ("1BA001", "1BA001"),
        ("DOE_JOHN_19230417", "DOE_JOHN_19230417"),  # privacy.ct_study_ids: folder
        ("P_01", "P_01"),
        ("anon-0123456789ab_MR_d0129", "anon-0123456789ab"),
        ("anon-0123456789ab_PIB", "anon-0123456789ab"),
        ("anon-0123456789ab_CT_s0123456789", "anon-0123456789ab"),
        ("OAS30001_MR", "OAS30001"),
        ("CQ500-CT-4_MR", "CQ500-CT-4"),
    ],
)
def test_subject_of_existing_ids_unchanged_and_sheet_ids_to_their_subject(volume, subject):
    assert discovery.VOLUME_ID.match(volume)
    assert discovery.subject_of(volume) == subject
