"""Deterministic subject-level train / validation / test split.

Subjects are ranked by a keyed hash of (seed, subject id): the first ones go to test, the next
ones to validation, the rest to training. Unlike a seeded shuffle, the rank of a subject does not
depend on which other subjects exist: adding data moves at most the subjects at the two
boundaries, and MR and PET sessions of one OASIS participant land on the same side. One
subject's slices never straddle the split. Test subjects come first in the ranking, so adding a
validation split (or changing its size) never changes which subjects are tested.

Validation subjects are for every choice (budget, losses, settings); test subjects are scored only
by the final evaluation. Subjects pinned by the sample sheet (``pinned``: subject -> split) go
where they are pinned; the others are split among themselves, so pinning never moves another
subject.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from medcyclegan.ingest.discovery import subject_of

#: the split names, in the order subjects are drawn from the ranking
SPLITS = ("test", "validation", "train")


def subject_rank_key(subject: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{subject}".encode()).hexdigest()


def n_test_subjects(n_subjects: int, test_fraction: float) -> int:
    """round(n * fraction), but at least one test and one training subject when n >= 2."""
    if n_subjects < 2:
        return 0
    return min(max(1, round(n_subjects * test_fraction)), n_subjects - 1)


def n_validation_subjects(n_subjects: int, test_fraction: float, val_fraction: float) -> int:
    """round(n * val_fraction) (none for a small cohort), always leaving one training subject."""
    left = n_subjects - n_test_subjects(n_subjects, test_fraction)
    return max(0, min(round(n_subjects * val_fraction), left - 1))


def assign_split(
    volume_ids, *, seed: int, test_fraction: float, val_fraction: float = 0.0, pinned: dict | None = None
) -> pd.DataFrame:
    """Table ``volume, subject, split`` (test, validation or train); ``pinned``: subject -> split."""
    pinned = dict(pinned or {})
    volumes = sorted(set(volume_ids))
    free = sorted({subject_of(v) for v in volumes} - set(pinned), key=lambda s: subject_rank_key(s, seed))
    n_test = n_test_subjects(len(free), test_fraction)
    n_val = n_validation_subjects(len(free), test_fraction, val_fraction)
    split_of = {s: "test" for s in free[:n_test]}
    split_of.update({s: "validation" for s in free[n_test : n_test + n_val]})
    split_of.update(pinned)
    rows = [{"volume": v, "subject": subject_of(v), "split": split_of.get(subject_of(v), "train")} for v in volumes]
    return pd.DataFrame(rows, columns=["volume", "subject", "split"])


def volumes_in(
    volume_ids, split: str, *, seed: int, test_fraction: float, val_fraction: float = 0.0, pinned: dict | None = None
) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    table = assign_split(volume_ids, seed=seed, test_fraction=test_fraction, val_fraction=val_fraction, pinned=pinned)
    return table.loc[table.split == split, "volume"].tolist()
