"""Turn command-line strings into the types the config schema asks for.

Snakemake parses a nested ``--config`` value with YAML's base loader, so in
``--config "masking={mr: {threshold_scale: 0.45}}"`` the 0.45 arrives as the string ``'0.45'``.
A string where the schema wants a number, integer, boolean or null is read as YAML would read it,
and kept only if the result is valid there; anything else is left for validation to refuse,
with a hint showing the form that works (:func:`command_line_hint`).
"""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml

_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


def _resolve(schema: dict, root: dict) -> dict:
    """Follow a local ``$ref`` (``#/$defs/name``), keeping the referring schema's own keys."""
    while isinstance(schema, dict) and "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _readings(text: str) -> list[Any]:
    """What a non-string value written as ``text`` could have meant, most specific first."""
    stripped = text.strip()
    readings: list[Any] = []
    try:
        readings.append(int(stripped))
    except ValueError:
        pass
    try:
        readings.append(float(stripped))
    except ValueError:
        pass
    if stripped.lower() in _BOOLEANS:
        readings.append(_BOOLEANS[stripped.lower()])
    if stripped.lower() in ("null", "~", "none", ""):
        readings.append(None)
    return readings


def _valid(value: Any, schema: dict, root: dict) -> bool:
    validator_class = jsonschema.validators.validator_for(root)
    return validator_class({**schema, "$defs": root.get("$defs", {})}).is_valid(value)


def _child_schema(schema: dict, key: str) -> dict | None:
    if key in schema.get("properties", {}):
        return schema["properties"][key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def coerce(value: Any, schema: dict, root: dict) -> Any:
    """``value`` with every string that the schema does not accept replaced by its typed reading.

    Dicts and lists are changed in place (so a caller's config object sees the typed values).
    """
    schema = _resolve(schema, root)
    if isinstance(value, str):
        if _valid(value, schema, root):
            return value
        readings = _readings(value)
        typed = [r for r in readings if "type" in schema and _valid(r, {"type": schema["type"]}, root)]
        # a reading of the right type that breaks a bound (1.5 for a fraction) is kept, so that
        # validation names the bound rather than the type
        return next((r for r in readings if _valid(r, schema, root)), typed[0] if typed else value)
    if isinstance(value, dict):
        for key, item in value.items():
            child = _child_schema(schema, key)
            if child is not None:
                value[key] = coerce(item, child, root)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            value[i] = coerce(item, schema["items"], root)
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        if not isinstance(value, (dict, list)):
            break
        coerce(value, branch, root)
    return value


def coerce_config(config: dict, root: dict) -> dict:
    """Coerce a whole config in place; ``training.tasks.<task>`` follows the ``training`` schema."""
    coerce(config, root, root)
    training_schema = root["properties"]["training"]
    tasks = (config.get("training") or {}).get("tasks") or {}
    if isinstance(tasks, dict):
        for task, overrides in tasks.items():
            if isinstance(overrides, dict):
                tasks[task] = coerce(overrides, training_schema, root)
    return config


def schema_at(root: dict, path: list) -> dict:
    """The (resolved) sub-schema of the config key at ``path``; ``{}`` where the schema has none."""
    schema = _resolve(root, root)
    for key in path:
        child = _child_schema(schema, key) if isinstance(key, str) else schema.get("items")
        if not isinstance(child, dict):
            return {}
        schema = _resolve(child, root)
    return schema


def _keys(path: list) -> list[str]:
    """The dict keys of a config path, up to its first list index."""
    keys = []
    for key in path:
        if not isinstance(key, str):
            break
        keys.append(key)
    return keys


def command_line_hint(path: list, root: dict, schema_path: list | None = None) -> str:
    """``--config "masking={mr: {threshold_scale: 0.5}}"``: the override form of the key at ``path``
    (a list element's path stops at its list), with the default (or an example) as the value.
    ``schema_path`` locates the key in the schema when it differs (a per-task training override)."""
    keys = _keys(path)
    schema = schema_at(root, _keys(schema_path) if schema_path is not None else keys)
    nested = yaml.safe_dump(schema.get("default", _example(schema, root)), default_flow_style=True)
    nested = nested.strip().removesuffix("...").strip()
    for key in reversed(keys[1:]):
        nested = f"{{{key}: {nested}}}"
    return f'--config "{keys[0]}={nested}"'


def _example(schema: dict, root: dict) -> Any:
    schema = _resolve(schema, root)
    kinds = schema.get("type") or [b.get("type") for b in schema.get("oneOf", []) + schema.get("anyOf", [])]
    kinds = [kinds] if isinstance(kinds, str) else kinds
    for kind, example in (("number", 0.5), ("integer", 1), ("boolean", True), ("array", ["a", "b"])):
        if kind in kinds:
            return example
    return "value"
