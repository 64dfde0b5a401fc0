"""The translation tasks and each task's training settings.

A task trains both directions between one source modality and CT. Its settings are the common
``training`` values with ``training.tasks.<task>`` merged over them, defaults filled and validated
by the config schema, so that a typo in a per-task override fails with the key's full name.
"""

from __future__ import annotations

import copy
import math

from medcyclegan.config.coercion import command_line_hint
from medcyclegan.config.validation import deep_update, fill_and_validate, load_schema, section_schema

#: task -> source modality (each task trains both directions between the source and CT)
TASKS = {"mr2ct": "mr", "pet2ct": "pet"}

#: keys the training rule does not use (figure, evaluation, scheduler resources)
NON_TRAINING_KEYS = ("examples", "mem_mb", "runtime_min", "device", "tasks")


def training_schema() -> dict:
    """The ``training`` sub-schema of the packaged config schema."""
    return section_schema("training")


def default_config() -> dict:
    """The default ``training`` config (from the schema), without per-task overrides."""
    cfg: dict = {}
    fill_and_validate(cfg, training_schema())
    cfg.pop("tasks", None)
    return cfg


def task_config(training: dict, task: str) -> dict:
    """Merge ``training`` (common values) with ``training.tasks[task]`` and validate the result.

    Missing keys get the schema's defaults. Raises ``ValueError`` with the offending key when the
    merged config is invalid (e.g. a typo in a per-task override).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    schema = training_schema()
    base = copy.deepcopy(training or {})
    fill_and_validate(base, schema)  # defaults only: the merged config is what gets validated
    overrides = (base.pop("tasks", None) or {}).get(task) or {}
    known = set(schema["properties"]) - {"tasks"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"training.tasks.{task}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
    merged = deep_update(base, overrides)
    error = fill_and_validate(merged, schema)
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path)
        overridden = error.absolute_path and error.absolute_path[0] in overrides
        where = f"training.tasks.{task}.{key}" if overridden else f"training.{key}"
        hint = ""
        if overridden and isinstance(error.instance, str):
            path = ["training", "tasks", task, *error.absolute_path]
            hint = (
                f" (on the command line: {command_line_hint(path, load_schema(), ['training', *error.absolute_path])})"
            )
        raise ValueError(f"invalid training config for task {task}: {where}: {error.message}{hint}")
    merged.pop("tasks", None)  # filled back in by the validation
    check_cross_keys(merged)
    return merged


class TaskConfigs:
    """Each task's :func:`task_config`, merged on first use and kept: the workflow asks for it
    in several rules' resources and params, for every job."""

    def __init__(self, training: dict):
        self.training = training
        self._merged: dict[str, dict] = {}

    def __call__(self, task: str) -> dict:
        if task not in self._merged:
            self._merged[task] = task_config(self.training, task)
        return copy.deepcopy(self._merged[task])


def check_unet_geometry(image_size: int | None, depth: int) -> None:
    """Raise ``ValueError`` unless ``image_size`` is divisible by ``2**depth`` (depth <= log2(size)).

    ``image_size=None`` (a network for any size) checks the depth only.
    """
    if depth < 1:
        raise ValueError(f"U-Net depth must be >= 1, got {depth}")
    if image_size is not None and image_size % (2**depth) != 0:
        max_depth = int(math.log2(image_size & -image_size))  # largest power of two dividing the size
        raise ValueError(
            f"U-Net depth {depth} needs an image size divisible by 2**{depth} = {2**depth}; "
            f"image size {image_size} allows depth <= {max_depth}"
        )


def check_cross_keys(cfg: dict) -> None:
    """Checks across keys that the schema cannot express."""
    check_unet_geometry(cfg["image_size"], cfg["unet_depth"])
    if cfg["image_size"] % (2 ** cfg["disc_layers"]):
        raise ValueError(
            f"training.disc_layers = {cfg['disc_layers']} needs image_size divisible by {2 ** cfg['disc_layers']}"
        )
    if cfg["lr_decay_steps"] > cfg["steps"]:
        raise ValueError(f"training.lr_decay_steps ({cfg['lr_decay_steps']}) > training.steps ({cfg['steps']})")


def training_only(cfg: dict) -> dict:
    """The keys the training job uses (what the train rule receives through ``params``)."""
    return {k: v for k, v in cfg.items() if k not in NON_TRAINING_KEYS}
