"""Load and validate the workflow configuration against its JSON schema.

Validation fills defaults, so code can index any documented key, and turns the first
violation into one readable line (``masking.ct.threshold: ...``) instead of a traceback.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from medcyclegan.config.coercion import coerce_config, command_line_hint

SCHEMA_RESOURCE = "config/config.schema.yaml"


class ConfigError(ValueError):
    """The configuration does not match the schema."""


def schema_path() -> Path:
    return Path(str(resources.files("medcyclegan").joinpath(SCHEMA_RESOURCE)))


def load_schema() -> dict:
    """The config schema (a copy: callers may change it)."""
    return copy.deepcopy(_parsed_schema())


@functools.lru_cache(maxsize=1)
def _parsed_schema() -> dict:
    return yaml.safe_load(schema_path().read_text())


def _with_defaults(validator_class):
    """Extend a jsonschema validator so that ``properties`` defaults are filled in place."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate ``config`` in place (typing command-line strings, filling defaults) and return it.

    Raises ConfigError with one line per problem, the first being the most specific.
    """
    schema = load_schema()
    coerce_config(config, schema)
    best = fill_and_validate(config, schema)
    if best is not None:
        path = list(best.absolute_path)
        where = ".".join(str(p) for p in path) or "(top level)"
        hint = ""
        if path and isinstance(best.instance, str):  # typically a value typed on the command line
            hint = f" (on the command line: {command_line_hint(path, schema)})"
        raise ConfigError(f"invalid {source}: {where}: {best.message}{hint}")
    return config


@functools.lru_cache(maxsize=1)
def _default_config() -> dict:
    return validate_config({}, source="the schema's defaults")


def default_config() -> dict:
    """The whole config of the schema's defaults (a copy)."""
    return copy.deepcopy(_default_config())


def schema_defaults(section: str) -> dict:
    """The schema's default settings of one top-level section (a copy): what a library function
    uses when its caller gives no settings, so that no default is written twice."""
    return copy.deepcopy(_default_config()[section])


def section_schema(name: str) -> dict:
    """The sub-schema of one top-level section (e.g. ``training``)."""
    return load_schema()["properties"][name]


def fill_and_validate(instance: dict, schema: dict) -> jsonschema.ValidationError | None:
    """Fill ``schema``'s defaults into ``instance`` in place; return its most specific violation, or None.

    ``schema`` is the whole config schema or one section of it (:func:`section_schema`).
    """
    validator = _with_defaults(jsonschema.validators.validator_for(schema))(schema)
    # two passes: defaults of objects created by the first pass get filled by the second
    for _ in range(2):
        errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.path), str(e.path)))
        if errors:
            break
    if errors:
        return jsonschema.exceptions.best_match(errors)
    sort_keys_in_place(instance)
    return None


def sort_keys_in_place(mapping: dict) -> None:
    """Reorder every nested dict of ``mapping`` by key, in place.

    Snakemake compares a rule's params by their ``repr``, so a settings dict must not depend on
    where a value came from (config.yaml, ``--config``, a schema default): otherwise the same
    values in another order rerun the rule.
    """
    items = sorted(mapping.items(), key=lambda kv: str(kv[0]))
    mapping.clear()
    for key, value in items:
        if isinstance(value, dict):
            sort_keys_in_place(value)
        mapping[key] = value


def load_config(path: str | Path, overrides: dict | None = None) -> dict[str, Any]:
    """Read a YAML config file, apply nested overrides, validate and fill defaults."""
    cfg = yaml.safe_load(Path(path).read_text()) or {}
    if overrides:
        deep_update(cfg, overrides)
    return validate_config(cfg, source=str(path))


def deep_update(base: dict, new: dict) -> dict:
    """Recursively merge ``new`` into ``base`` (dicts merge, everything else replaces)."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
