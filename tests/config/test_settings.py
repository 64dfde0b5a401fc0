"""The settings of one modality (medcyclegan.config.settings): only that modality's values, the
stages' keyword arguments, defaults from the schema."""

import copy
import inspect
import json

import pytest

from medcyclegan.config.settings import (
    MODALITIES,
    ingest_settings,
    modality_settings,
    preprocess_settings,
    with_defaults,
)
from medcyclegan.config.validation import load_config, load_schema, validate_config
from medcyclegan.testing.workflow import ROOT


@pytest.fixture()
def config():
    return load_config(ROOT / "config.yaml")


def test_each_modality_has_its_own_values_only(config):
    ct, mr, pet = (modality_settings(config, m) for m in MODALITIES)
    assert ct["modality"] == "ct" and ct["ct_series"] == config["ct_series"] and "pet" not in ct
    assert pet["pet"] == config["pet"] and "ct_series" not in pet
    assert "ct_series" not in mr and "pet" not in mr
    assert ct["intensity"] == {"ct_window_hu": config["intensity"]["ct_window_hu"]}
    assert mr["intensity"] == {"mr_percentiles": config["intensity"]["mr_percentiles"]}
    assert mr["masking"] == config["masking"]["mr"] and pet["masking"] == config["masking"]["pet"]
    assert mr["spacing_mm"] == config["geometry"]["spacing_mm"] and mr["reject"] == config["reject"]
    assert json.loads(json.dumps(pet)) == pet  # JSON-ready: the model's preprocessing.json


def test_changing_mr_settings_leaves_ct_and_pet_unchanged(config):
    before = {m: modality_settings(config, m) for m in ("ct", "pet")}
    changed = copy.deepcopy(config)
    changed["masking"]["mr"]["threshold_scale"] = 0.45
    changed["intensity"]["mr_percentiles"] = [1.0, 99.0]
    assert {m: modality_settings(changed, m) for m in ("ct", "pet")} == before
    assert modality_settings(changed, "mr") != modality_settings(config, "mr")


def test_stage_settings_are_the_job_arguments(config):
    """What rules/preprocess.smk passes as params is exactly what the jobs take."""
    from medcyclegan.workflow import jobs

    for modality in MODALITIES:
        settings = modality_settings(config, modality)
        for stage, job in ((ingest_settings, jobs.ingest), (preprocess_settings, jobs.preprocess)):
            kwargs = stage(settings)
            params = inspect.signature(job).parameters
            assert set(kwargs) <= {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}, (modality, job)
    ingest = ingest_settings(modality_settings(config, "mr"))
    reject = {key: config["reject"][key] for key in ("min_extent_mm", "max_nonfinite_fraction")}
    assert ingest == {"spacing_mm": [1.0, 1.0, 1.0], "reject_cfg": reject}
    assert preprocess_settings(modality_settings(config, "ct"))["reject_cfg"] == {
        "min_head_volume_ml": config["reject"]["min_head_volume_ml"]
    }


def test_values_come_from_the_schema_defaults():
    """An empty config gives the schema's defaults: nothing is restated in code."""
    props = load_schema()["properties"]
    pet = modality_settings(validate_config({}), "pet")
    assert pet["spacing_mm"] == props["geometry"]["properties"]["spacing_mm"]["default"]
    assert pet["pet"]["fallback_frames"] == props["pet"]["properties"]["fallback_frames"]["default"]
    assert pet["reject"]["min_extent_mm"] == props["reject"]["properties"]["min_extent_mm"]["default"]


def test_record_is_a_copy_and_unknown_modality_fails(config):
    settings = modality_settings(config, "mr")
    settings["masking"]["threshold_scale"] = 9.0
    assert config["masking"]["mr"]["threshold_scale"] != 9.0
    with pytest.raises(ValueError, match="unknown modality"):
        modality_settings(config, "us")


def test_with_defaults_fills_missing_sections_only(config):
    record = modality_settings(config, "mr")
    record["masking"]["threshold_scale"] = 0.3
    del record["reject"]
    full = with_defaults(record)
    assert full["reject"] == validate_config({})["reject"] and full["masking"]["threshold_scale"] == 0.3


def test_library_functions_called_without_settings_use_the_schema_defaults():
    """No default is written twice: the ingest functions' own defaults are read from the schema."""
    from medcyclegan.ingest.ct_series import selection_rules
    from medcyclegan.ingest.pet import select_frames

    props = load_schema()["properties"]
    ct_defaults = {key: sub["default"] for key, sub in props["ct_series"]["properties"].items()}
    rules = selection_rules()
    assert {key: rules[key] for key in ct_defaults} == ct_defaults
    assert selection_rules(min_slices=7)["min_slices"] == 7

    fallback = props["pet"]["properties"]["fallback_frames"]["default"]
    frames, _ = select_frames(None, 12, None)
    assert frames == list(range(12))[slice(*fallback)]


def test_a_stored_record_missing_keys_gets_them_from_the_schema():
    """A record with a partial section (e.g. ``pet`` with its windows only) keeps its own values
    and takes every missing key from the schema, section by section."""
    record = {"modality": "pet", "pet": {"windows_min": {"PIB": [40, 60]}}}
    full = with_defaults(record)
    props = load_schema()["properties"]["pet"]["properties"]
    assert full["pet"]["windows_min"] == {"PIB": [40, 60]}
    assert full["pet"]["fallback_frames"] == props["fallback_frames"]["default"]
    assert (
        full["reject"]["min_head_volume_ml"]
        == load_schema()["properties"]["reject"]["properties"]["min_head_volume_ml"]["default"]
    )


def test_settings_do_not_depend_on_where_a_value_was_given():
    # Snakemake compares params by repr: a default spelled out on the command line (inserted
    # before the schema fills the rest) must give the same dicts, or the rule reruns
    from medcyclegan.config.tasks import task_config, training_only

    implicit = load_config(ROOT / "config.yaml")
    explicit = load_config(ROOT / "config.yaml", overrides={"training": {"seed": implicit["training"]["seed"]}})
    spelled_first = validate_config({"training": {"seed": implicit["training"]["seed"]}})
    implicit_defaults = validate_config({})
    assert repr(explicit) == repr(implicit)
    assert repr(spelled_first) == repr(implicit_defaults)
    for task in ("mr2ct", "pet2ct"):
        merged = [training_only(task_config(cfg["training"], task)) for cfg in (implicit, explicit)]
        assert repr(merged[0]) == repr(merged[1])
    for modality in MODALITIES:
        assert repr(modality_settings(explicit, modality)) == repr(modality_settings(implicit, modality))
