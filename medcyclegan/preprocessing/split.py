"""Deterministic subject-level train/test split.

Subjects are ranked by a keyed hash of (seed, subject id) and the first ones go to test.
Unlike a seeded shuffle, the rank of a subject does not depend on which other subjects
exist: adding data moves at most the boundary subject, and MR and PET sessions of one
OASIS participant land on the same side. One subject's slices never straddle the split.
Subjects pinned by the sample sheet (``pinned``: subject -> train/test) go where they are
pinned; the others are split among themselves as before, so pinning never moves another subject.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from medcyclegan.ingest.discovery import subject_of


def subject_rank_key(subject: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{subject}".encode()).hexdigest()


def n_test_subjects(n_subjects: int, test_fraction: float) -> int:
    """round(n * fraction), but at least one test and one training subject when n >= 2."""
    if n_subjects < 2:
        return 0
    return min(max(1, round(n_subjects * test_fraction)), n_subjects - 1)


def assign_split(volume_ids, *, seed: int, test_fraction: float, pinned: dict | None = None) -> pd.DataFrame:
    """Table ``volume, subject, split`` for the given volume ids; ``pinned``: subject -> split."""
    pinned = dict(pinned or {})
    volumes = sorted(set(volume_ids))
    free = sorted({subject_of(v) for v in volumes} - set(pinned), key=lambda s: subject_rank_key(s, seed))
    test = set(free[: n_test_subjects(len(free), test_fraction)]) | {
        s for s, split in pinned.items() if split == "test"
    }
    rows = [
        {"volume": v, "subject": subject_of(v), "split": "test" if subject_of(v) in test else "train"} for v in volumes
    ]
    return pd.DataFrame(rows, columns=["volume", "subject", "split"])


def volumes_in(volume_ids, split: str, *, seed: int, test_fraction: float, pinned: dict | None = None) -> list[str]:
    table = assign_split(volume_ids, seed=seed, test_fraction=test_fraction, pinned=pinned)
    return table.loc[table.split == split, "volume"].tolist()
