"""The three-way subject split: disjoint, deterministic, stable when subjects are added."""

import pytest

from medcyclegan.preprocessing.split import SPLITS, assign_split, n_validation_subjects, volumes_in

VOLUMES = [f"OAS3{i:04d}_MR_d0{j}00" for i in range(1, 21) for j in (1, 2)] + [
    f"OAS3{i:04d}_AV45_d0300" for i in range(1, 21, 3)
]


def test_three_splits_are_disjoint_by_subject_and_cover_every_volume():
    table = assign_split(VOLUMES, seed=7, test_fraction=0.2, val_fraction=0.1)
    assert (table.groupby("subject").split.nunique() == 1).all()  # MR and PET sessions together
    subjects = {s: set(table.subject[table.split == s]) for s in SPLITS}
    assert not subjects["test"] & subjects["validation"]
    assert not subjects["test"] & subjects["train"]
    assert not subjects["validation"] & subjects["train"]
    assert [len(subjects[s]) for s in SPLITS] == [4, 2, 14]
    by_split = [volumes_in(VOLUMES, s, seed=7, test_fraction=0.2, val_fraction=0.1) for s in SPLITS]
    assert sorted(v for part in by_split for v in part) == sorted(set(VOLUMES))


def test_validation_never_changes_the_test_subjects():
    without = assign_split(VOLUMES, seed=7, test_fraction=0.2)
    with_val = assign_split(VOLUMES, seed=7, test_fraction=0.2, val_fraction=0.25)
    assert set(without.subject[without.split == "test"]) == set(with_val.subject[with_val.split == "test"])
    assert "validation" not in set(without.split)
    moved = set(with_val.subject[with_val.split == "validation"])
    assert moved and moved <= set(without.subject[without.split == "train"])


def test_adding_subjects_moves_only_boundary_subjects():
    before = assign_split(VOLUMES, seed=7, test_fraction=0.2, val_fraction=0.1)
    after = assign_split(
        VOLUMES + ["OAS39998_MR_d0100", "OAS39999_MR_d0100"], seed=7, test_fraction=0.2, val_fraction=0.1
    )
    merged = before.merge(after, on="volume")
    changed = set(merged.subject_x[merged.split_x != merged.split_y])
    assert len(changed) <= 2  # at most one subject per boundary
    assert assign_split(list(reversed(VOLUMES)), seed=7, test_fraction=0.2, val_fraction=0.1).equals(before)


def test_pinned_subjects_go_where_pinned_and_move_no_one_else():
    free = assign_split(VOLUMES, seed=7, test_fraction=0.2, val_fraction=0.1)
    pinned = {"OAS30001": "validation", "OAS30002": "test"}
    table = assign_split(VOLUMES, seed=7, test_fraction=0.2, val_fraction=0.1, pinned=pinned)
    assert set(table.split[table.subject == "OAS30001"]) == {"validation"}
    assert set(table.split[table.subject == "OAS30002"]) == {"test"}
    rest = ~table.subject.isin(pinned)
    assert (table.split[rest] != free.split[rest]).sum() <= 4  # two subjects' volumes at a boundary


@pytest.mark.parametrize(
    "n, val_fraction, expected",
    [(20, 0.1, 2), (20, 0.0, 0), (3, 0.1, 0), (3, 0.4, 1), (2, 0.5, 0), (5, 0.9, 3)],
)
def test_validation_size_leaves_a_training_subject(n, val_fraction, expected):
    assert n_validation_subjects(n, 0.2, val_fraction) == expected


def test_unknown_split_name_is_refused():
    with pytest.raises(ValueError, match="unknown split 'val'"):
        volumes_in(VOLUMES, "val", seed=7, test_fraction=0.2)
