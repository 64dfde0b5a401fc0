"""Names and seeds shared by the demo writers.

Why: Snakemake builds its DAG from the folder names before anything is rendered, so ids must
come from cheap, deterministic functions of (n, seed) alone. (A killed job never leaves a
half-written study: the writers fill a hidden sibling folder that
:func:`medcyclegan.io.atomic.atomic_dir` swaps into place at the end.)
"""

from __future__ import annotations

import zlib

import numpy as np

TRACERS = ("PIB", "AV45")


def rng(seed: int, *keys) -> np.random.Generator:
    """Independent, reproducible random stream for (seed, *keys); keys may be str or int."""
    words = [int(seed) % (2**63)]
    for k in keys:
        words.append(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) % (2**63))
    return np.random.default_rng(np.random.SeedSequence(words))


def ct_study_ids(n: int) -> list[str]:
    """Folder names directly under ct_root: ``CQ500-CT-0`` .. ``CQ500-CT-{n-1}``."""
    return [f"CQ500-CT-{i}" for i in range(int(n))]


def subject_id(index: int) -> str:
    return f"OAS3{index + 1:04d}"


def _days(index: int, seed: int) -> tuple[int, int]:
    r = rng(seed, "oasis-days", index)
    mr_day = int(r.integers(0, 3000))
    pet_day = mr_day + int(r.integers(1, 400))
    return mr_day, pet_day


def tracer(index: int) -> str:
    return TRACERS[index % len(TRACERS)]


def mr_session_id(index: int, seed: int) -> str:
    return f"{subject_id(index)}_MR_d{_days(index, seed)[0]:04d}"


def pet_session_id(index: int, seed: int) -> str:
    return f"{subject_id(index)}_{tracer(index)}_d{_days(index, seed)[1]:04d}"


def mr_session_ids(n: int, seed: int) -> list[str]:
    """``OAS30001_MR_d0129``-style folder names under mr_root (no rendering)."""
    return [mr_session_id(i, seed) for i in range(int(n))]


def pet_session_ids(n: int, seed: int) -> list[str]:
    """``OAS30001_PIB_d0140``, ``OAS30002_AV45_d0311``, ... folder names under pet_root."""
    return [pet_session_id(i, seed) for i in range(int(n))]


def volume_ids(demo: dict, modality: str) -> list[str]:
    """The demo's volume ids of ``modality`` from the config's ``demo`` section (what the
    Snakefile and ``python -m medcyclegan locate`` both discover)."""
    if modality == "ct":
        return ct_study_ids(demo["n_ct_subjects"])
    if modality == "mr":
        return mr_session_ids(demo["n_mr_subjects"], demo["seed"])
    return pet_session_ids(demo["n_pet_subjects"], demo["seed"])
