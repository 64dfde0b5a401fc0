"""Pseudonymous ids for study folders whose names may identify a patient, and atomic writers:
a writer killed mid-write leaves no file at the output path (and its leftovers are cleaned)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from medcyclegan.testing.hostile_data import run_volume, write_ct
from medcyclegan.testing.workflow import ROOT


def test_pseudonymous_ct_ids_are_stable_keyed_and_layout_independent(tmp_path):
    from medcyclegan.ingest.discovery import find_ct_studies, is_pseudonym, pseudonym

    generic = tmp_path / "generic"
    for name in ("DOE_JOHN_19230417", "Roe, Jane"):
        (generic / name / "CT").mkdir(parents=True)
    ids = find_ct_studies(generic)  # auto: non-CQ500 folder names are hashed
    assert all(is_pseudonym(v) for v in ids) and len(ids) == 2
    assert not any("DOE" in v or "Roe" in v for v in ids)
    assert ids == find_ct_studies(generic)  # stable across runs
    assert set(find_ct_studies(generic, id_key="site-secret")) != set(ids)  # keyed
    assert find_ct_studies(generic, id_mode="folder") == {"DOE_JOHN_19230417": str(generic / "DOE_JOHN_19230417")}
    # CQ500: kept in auto mode; in hash mode one id for both download layouts
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "CQ500-CT-7" / "CQ500CT7 CQ500CT7").mkdir(parents=True)
    (b / "CQ500CT7 CQ500CT7").mkdir(parents=True)
    assert list(find_ct_studies(a)) == ["CQ500-CT-7"]
    assert (
        list(find_ct_studies(a, id_mode="hash"))
        == list(find_ct_studies(b, id_mode="hash"))
        == [pseudonym("CQ500-CT-7")]
    )


def test_identifying_folder_name_never_reaches_outputs_or_logs(tmp_path, caplog):
    from medcyclegan.ingest.discovery import find_ct_studies

    raw = tmp_path / "raw"
    name = "ZQXFOLDER_DOE_JOHN"
    good = raw / name / f"{name} CT" / "CT PLAIN"
    write_ct(good)
    bad_root = tmp_path / "raw_bad"
    write_ct(bad_root / name / f"{name} CT" / "CT PLAIN")
    f = bad_root / name / f"{name} CT" / "CT PLAIN" / "CT000007.dcm"
    f.write_bytes(f.read_bytes()[:5000])
    ((vid, source),) = find_ct_studies(raw).items()
    ((bad_vid, bad_source),) = find_ct_studies(bad_root).items()
    assert vid == bad_vid and name not in vid
    caplog.set_level(logging.INFO)
    rows, info = run_volume(tmp_path / "ok", "ct", Path(source), vid)
    assert rows.empty and info["status"] == "ok"
    rows, info = run_volume(tmp_path / "bad", "ct", Path(bad_source), bad_vid)
    row = rows.iloc[0]
    # the file is named by its pseudonymous reference (python -m medcyclegan locate finds it)
    assert "truncated" in row.reason and row.file.startswith(f"{vid}/f-") and "CT000007" not in row.reason
    texts = [caplog.text] + [
        p.read_text(errors="replace")
        for d in ("ok", "bad")
        for p in (tmp_path / d).rglob("*")
        if p.is_file() and p.suffix in (".json", ".csv")
    ]
    assert not [t for t in texts if "ZQXFOLDER" in t]


def test_rejection_row_splits_file_reason_and_action():
    from medcyclegan.errors import BadInput
    from medcyclegan.workflow.rejection import row_from_error

    exc = BadInput(
        "/data/cq500/CQ500CT3 CQ500CT3/Unknown Study/CT A/CT000001.dcm: the file is truncated. Re-download it."
    )
    row = row_from_error(exc, modality="ct", volume="CQ500-CT-3", rule="ingest", source="/data/cq500/CQ500CT3 CQ500CT3")
    assert row["file"] == "/data/cq500/CQ500CT3 CQ500CT3/Unknown Study/CT A/CT000001.dcm"
    assert row["reason"] == "the file is truncated." and row["action"] == "Re-download it."


def test_unexpected_error_is_not_rejected_but_fails(tmp_path, monkeypatch):
    """Bugs must fail loudly: only BadInput becomes a rejection row; the failure's text passes the
    privacy boundary (the folder name in the bug's message is replaced)."""
    from medcyclegan.ingest import volume as raw_volume
    from medcyclegan.privacy import RedactedError
    from medcyclegan.workflow import jobs

    def boom(*a, **k):
        raise KeyError(f"a bug in {tmp_path}/DOE^JOHN")

    (tmp_path / "DOE^JOHN").mkdir()
    monkeypatch.setattr(raw_volume, "read_volume", boom)
    with pytest.raises(RedactedError, match="KeyError: .a bug in CQ500-CT-1/f-") as failure:
        jobs.ingest(
            "ct",
            str(tmp_path),
            "CQ500-CT-1",
            str(tmp_path / "v.nii.gz"),
            str(tmp_path / "v.json"),
            spacing_mm=[2, 2, 2],
            ct_series={},
        )
    assert "DOE" not in str(failure.value)
    assert not (tmp_path / "v.nii.gz").exists() and not (tmp_path / "v.json").exists()


@pytest.mark.parametrize("writer", ["npz", "nifti"])
def test_writer_killed_mid_write_leaves_no_output(tmp_path, writer):
    target = tmp_path / ("big.npz" if writer == "npz" else "big.nii.gz")
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from medcyclegan.io import atomic as io
        rng = np.random.default_rng(0)
        data = rng.normal(size=(160, 256, 256)).astype("float32")  # ~40 MB, seconds to compress
        if {writer!r} == "npz":
            io.write_npz({str(target)!r}, images=np.concatenate([data] * 3))
        else:
            import SimpleITK as sitk
            io.write_image({str(target)!r}, sitk.GetImageFromArray(np.concatenate([data] * 3)))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.time() + 120
        partial = []
        while time.time() < deadline and proc.poll() is None:
            partial = [p for p in tmp_path.glob(".partial-*") if p.stat().st_size > 1_000_000]
            if partial:
                break
            time.sleep(0.05)
        assert partial, "the writer finished or never started writing"
        assert not target.exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not target.exists()  # no file at the output path for a rerun to take as complete
    # the rerun writes it completely and removes the dead writer's leftover
    from medcyclegan.io import atomic as io

    io.write_npz(tmp_path / "big.npz", images=np.zeros((2, 3), np.float32)) if writer == "npz" else None
    if writer == "nifti":
        import SimpleITK as sitk

        io.write_image(target, sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32)))
    assert target.exists() and not list(tmp_path.glob(".partial-*"))
    json.dumps({})


def test_npz_writer_round_trips_every_array_kind_through_np_load(tmp_path):
    """The level-1 zip writer must stay a valid .npz: numbers, strings, scalars, empty arrays."""
    from medcyclegan.io import atomic as io

    arrays = {
        "images": np.random.default_rng(0).normal(size=(3, 8, 8)).astype(np.float32),
        "slice": np.arange(3),
        "z_mm": np.array([0.5, 1.5, 2.5]),
        "volume": np.array("CQ500-CT-7"),
        "value_lo": np.array(-1024.0),
        "empty": np.zeros((0, 4), np.int16),
        "rejected": np.array(True),
    }
    io.write_npz(tmp_path / "x.npz", **arrays)
    with np.load(tmp_path / "x.npz") as loaded:
        assert sorted(loaded.files) == sorted(arrays)
        for name, value in arrays.items():
            assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
            np.testing.assert_array_equal(loaded[name], value)


def test_text_and_figure_writers_leave_only_complete_files(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medcyclegan.io import atomic as io

    io.write_text(tmp_path / "a.json", '{"x": 1}')
    fig = plt.figure(figsize=(1, 1))
    io.write_figure(tmp_path / "f.png", fig, dpi=20)
    plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "f.png"]
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "b.json") as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "f.png"]


def test_rejection_placeholders_carry_their_row_to_every_reader(tmp_path):
    from medcyclegan.io import atomic as io
    from medcyclegan.io import placeholders
    from medcyclegan.io.slices import read_stack

    row = {c: f"the {c}" for c in placeholders.COLUMNS}
    io.write_npz(tmp_path / "v.npz", **placeholders.rejected_npz_arrays(row, subject="S1", size=4))
    arrays, rejection = read_stack(tmp_path / "v.npz")
    assert rejection == row and arrays["images"].shape == (0, 4, 4) and str(arrays["subject"]) == "S1"
    assert placeholders.read_rejection(tmp_path / "v.npz") == row
    placeholders.write_rejected_nifti(tmp_path / "v.nii.gz", row)
    assert placeholders.read_rejection(tmp_path / "v.nii.gz") == row
    io.write_npz(tmp_path / "ok.npz", images=np.zeros((1, 4, 4), np.float32), volume=np.array("V2"))
    assert read_stack(tmp_path / "ok.npz")[1] is None and placeholders.read_rejection(tmp_path / "ok.npz") is None
