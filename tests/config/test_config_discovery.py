import pytest

from medcyclegan.config.validation import ConfigError, load_config, validate_config
from medcyclegan.ingest import discovery
from medcyclegan.testing.workflow import ROOT


def test_shipped_config_is_valid():
    cfg = load_config(ROOT / "config.yaml")
    assert cfg["geometry"]["spacing_mm"] == [1.0, 1.0, 1.0]
    assert cfg["data"]["ct_dir"] == ""


def test_defaults_filled_and_one_clear_error():
    cfg = validate_config({})
    assert cfg["masking"]["mr"]["threshold"] == "otsu"
    with pytest.raises(ConfigError, match=r"split\.test_fraction"):
        validate_config({"split": {"test_fraction": 1.5}})
    with pytest.raises(ConfigError, match=r"masking\.ct"):
        validate_config({"masking": {"ct": {"threshold": "median"}}})
    with pytest.raises(ConfigError, match="unexpected|Additional properties"):
        validate_config({"slicng": {}})


def test_ct_discovery_both_cq500_layouts_and_names_only(tmp_path):
    (tmp_path / "CQ500CT7 CQ500CT7" / "Unknown Study" / "CT PLAIN THIN").mkdir(parents=True)
    (tmp_path / "CQ500-CT-43" / "CQ500CT43 CQ500CT43" / "Unknown Study" / "CT 5mm").mkdir(parents=True)
    (tmp_path / "CQ500-CT-43" / "CQ500CT43 CQ500CT43" / "Unknown Study" / "CT 5mm" / "CT000000.dcm").write_bytes(
        b"not even dicom"
    )
    (tmp_path / "reads.csv").write_text("name\n")
    found = discovery.find_ct_studies(tmp_path)
    assert found == {"CQ500-CT-43": str(tmp_path / "CQ500-CT-43"), "CQ500-CT-7": str(tmp_path / "CQ500CT7 CQ500CT7")}


def test_oasis_discovery(tmp_path):
    for name in ["OAS30001_MR_d0129", "OAS30001_PIB_d0364", "OAS30002_AV45_d2430", "OAS30003_FDG_d0001", "notes"]:
        (tmp_path / "batch1" / name).mkdir(parents=True)
    assert list(discovery.find_oasis_sessions(tmp_path, {"MR"})) == ["OAS30001_MR_d0129"]
    assert list(discovery.find_oasis_sessions(tmp_path, {"PIB", "AV45"})) == [
        "OAS30001_PIB_d0364",
        "OAS30002_AV45_d2430",
    ]
    assert discovery.subject_of("OAS30001_PIB_d0364") == "OAS30001"
    assert discovery.subject_of("CQ500-CT-4") == "CQ500-CT-4"


def test_data_section_has_the_sample_sheet_and_mixed_ct_folders_all_get_ids(tmp_path):
    assert validate_config({})["data"]["sample_sheet"] == ""
    with pytest.raises(ConfigError, match=r"data\.sample_sheet"):
        validate_config({"data": {"sample_sheet": 3}})
    (tmp_path / "CQ500-CT-43" / "CQ500CT43 CQ500CT43").mkdir(parents=True)
    (tmp_path / "Roe, Jane" / "CT").mkdir(parents=True)  # another study beside the CQ500 ones
    found = discovery.find_ct_studies(tmp_path)
    assert found == {
        "CQ500-CT-43": str(tmp_path / "CQ500-CT-43"),
        discovery.pseudonym("Roe, Jane"): str(tmp_path / "Roe, Jane"),
    }
