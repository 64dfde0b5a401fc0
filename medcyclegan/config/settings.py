"""The settings of one modality, read from the validated config in one place.

:func:`modality_settings` is the record of everything that turns a raw volume of one modality into
training slices. The workflow's ``ingest`` and ``preprocess_volume`` rules pass its two stages
(:func:`ingest_settings`, :func:`preprocess_settings`) as their params, the benchmarks run the
same stages with it, and training keeps it next to the exported model (``preprocessing.json``),
so that ``medcyclegan predict`` preprocesses a new volume as the training volumes were.

The record holds only that modality's own values: changing the MR settings changes neither the
CT record nor the params of a CT job, so Snakemake reruns no CT job. Every value comes from the
config, whose defaults the schema fills; none is restated here.
"""

from __future__ import annotations

import copy

from medcyclegan.config.validation import default_config

MODALITIES = ("ct", "mr", "pet")


def modality_settings(config: dict, modality: str) -> dict:
    """JSON-ready settings of ``modality`` from a validated config (a copy: callers may keep it).

    Keys: ``modality``; ``ct_series`` (CT) or ``pet`` (PET), how the raw study is read;
    ``spacing_mm`` of the canonical grid; ``masking``, ``slicing`` and ``intensity`` (only the
    modality's own window); ``reject``, the plausibility limits.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r} (expected one of {', '.join(MODALITIES)})")
    window = "ct_window_hu" if modality == "ct" else f"{modality}_percentiles"
    settings = {
        "modality": modality,
        "spacing_mm": config["geometry"]["spacing_mm"],
        "masking": config["masking"][modality],
        "slicing": config["slicing"],
        "intensity": {window: config["intensity"][window]},
        "reject": config["reject"],
    }
    if modality == "ct":
        settings["ct_series"] = config["ct_series"]
    if modality == "pet":
        settings["pet"] = config["pet"]
    return copy.deepcopy(settings)


def ingest_settings(settings: dict) -> dict:
    """Keyword arguments of the ingest stage (read, plausibility check, canonical grid)."""
    kwargs = {
        "spacing_mm": settings["spacing_mm"],
        "reject_cfg": {k: settings["reject"][k] for k in ("min_extent_mm", "max_nonfinite_fraction")},
    }
    for key in ("ct_series", "pet"):
        if key in settings:
            kwargs[key] = settings[key]
    return kwargs


def preprocess_settings(settings: dict) -> dict:
    """Keyword arguments of the preprocessing stage (head mask, useful slices, window, scaling)."""
    return {
        "mask_cfg": settings["masking"],
        "slicing_cfg": settings["slicing"],
        "intensity_cfg": settings["intensity"],
        "reject_cfg": {"min_head_volume_ml": settings["reject"]["min_head_volume_ml"]},
    }


def with_defaults(record: dict) -> dict:
    """A stored record completed with the schema's defaults for whatever it lacks (a record
    written before a section or key existed, e.g. without ``reject``); the record's values win."""
    full = modality_settings(default_config(), record["modality"])
    for key, value in record.items():
        # key by key inside a section, as the schema fills a config (a stored mapping such as
        # pet.windows_min is kept whole, never merged with the default one)
        full[key] = {**full[key], **value} if isinstance(value, dict) and isinstance(full.get(key), dict) else value
    return full
