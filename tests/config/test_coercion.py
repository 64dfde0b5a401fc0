"""Command-line config values (strings from Snakemake's YAML base loader) get the schema's types."""

import pytest
import yaml

from medcyclegan.config.coercion import command_line_hint, schema_at
from medcyclegan.config.tasks import task_config
from medcyclegan.config.validation import ConfigError, load_schema, validate_config


def base_loaded(text: str):
    """A nested --config value the way Snakemake parses it: every scalar a string."""
    return yaml.load(text, Loader=yaml.loader.BaseLoader)


def test_nested_number_boolean_list_and_null_are_typed():
    cfg = {
        "masking": base_loaded("{mr: {threshold: otsu, threshold_scale: 0.45}, ct: {threshold: -300}}"),
        "evaluation": base_loaded("{flip_average: false}"),
        "intensity": base_loaded("{mr_percentiles: [1, 99.5]}"),
        "slicing": base_loaded("{max_depth_below_vertex_mm: null, size: 128}"),
        "training": base_loaded("{steps: 300, learning_rate: 1e-4, mixed_precision: bfloat16}"),
    }
    validate_config(cfg)
    assert cfg["masking"]["mr"]["threshold_scale"] == 0.45
    assert cfg["masking"]["mr"]["threshold"] == "otsu"  # a string the schema accepts stays a string
    assert cfg["masking"]["ct"]["threshold"] == -300  # oneOf number | 'otsu'
    assert cfg["evaluation"]["flip_average"] is False
    assert cfg["intensity"]["mr_percentiles"] == [1, 99.5]
    assert cfg["slicing"]["max_depth_below_vertex_mm"] is None
    assert cfg["slicing"]["size"] == 128 and isinstance(cfg["slicing"]["size"], int)
    assert cfg["training"]["steps"] == 300 and cfg["training"]["learning_rate"] == 1e-4
    assert cfg["training"]["mixed_precision"] == "bfloat16"


def test_string_keys_keep_number_like_text():
    cfg = validate_config({"data": base_loaded("{ct_dir: '2024'}"), "privacy": base_loaded("{id_key: '123'}")})
    assert cfg["data"]["ct_dir"] == "2024" and cfg["privacy"]["id_key"] == "123"


def test_per_task_override_typed_against_the_training_schema():
    cfg = validate_config({"training": base_loaded("{steps: 10, lr_decay_steps: 5, tasks: {pet2ct: {steps: 12}}}")})
    assert task_config(cfg["training"], "pet2ct")["steps"] == 12


@pytest.mark.parametrize(
    "cfg, message",
    [
        (
            {"masking": base_loaded("{mr: {threshold: otsu, threshold_scale: abc}}")},
            "invalid config: masking.mr.threshold_scale: 'abc' is not of type 'number' "
            '(on the command line: --config "masking={mr: {threshold_scale: 1.0}}")',
        ),
        (
            {"evaluation": base_loaded("{flip_average: maybe}")},
            "evaluation.flip_average: 'maybe' is not of type 'boolean' "
            '(on the command line: --config "evaluation={flip_average: true}")',
        ),
        (
            {"intensity": base_loaded("{mr_percentiles: [low, 99]}")},
            '--config "intensity={mr_percentiles: [0.5, 99.5]}"',
        ),
        (  # the right type out of bounds: the bound is named, not the type
            {"split": base_loaded("{test_fraction: 1.5}")},
            "split.test_fraction: 1.5 is greater than or equal to the maximum of 1",
        ),
    ],
)
def test_refusal_names_the_key_and_shows_the_form_that_works(cfg, message):
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert message in str(err.value)


def test_per_task_refusal_shows_the_per_task_form():
    cfg = validate_config({"training": base_loaded("{tasks: {pet2ct: {steps: many}}}")})
    with pytest.raises(ValueError, match=r'--config "training=\{tasks: \{pet2ct: \{steps: 2500\}\}\}"'):
        task_config(cfg["training"], "pet2ct")


def test_schema_at_follows_refs_and_lists():
    root = load_schema()
    assert schema_at(root, ["masking", "pet", "threshold_scale"])["type"] == "number"
    assert schema_at(root, ["intensity", "ct_window_hu"])["type"] == "array"
    assert schema_at(root, ["no", "such"]) == {}
    assert command_line_hint(["predict", "mr2ct", 0], root) == '--config "predict={mr2ct: []}"'
