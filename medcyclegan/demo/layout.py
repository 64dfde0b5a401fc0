"""Names, seeds and atomic folder writes shared by the demo writers.

Why: Snakemake builds its DAG from the folder names before anything is rendered, so ids must
come from cheap, deterministic functions of (n, seed) alone; and a killed job must never leave
a half-written study that the ingest would then read, so every write goes to a hidden
``.<name>.partial`` sibling that is swapped into place at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import zlib
from pathlib import Path

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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_dir(target: Path):
    """Yield a fresh hidden sibling folder; on success swap it into ``target`` (overwriting)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial"
    _remove(partial)
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    _remove(old)
    if target.exists() or target.is_symlink():
        os.replace(target, old)
    os.replace(partial, target)
    if old.exists() or old.is_symlink():
        _remove(old)


@contextlib.contextmanager
def atomic_file(target: Path):
    """Yield a hidden temporary path next to ``target``; on success ``os.replace`` it into place.

    The temporary name keeps the target's suffixes (``.nii.gz``) so writers pick the right format.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".partial-{os.getpid()}-{target.name}"
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.replace(tmp, target)
