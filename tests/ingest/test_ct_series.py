"""CT series table from headers, and the series selection policy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.ct_series import list_series, select_series
from medcyclegan.testing.fake_trees import write_test_study


def fake_table(rows):
    base = dict(
        image_type="ORIGINAL\\PRIMARY\\AXIAL",
        convolution_kernel="STANDARD",
        rows=512,
        columns=512,
        modality="CT",
        transfer_syntax="1.2.840.10008.1.2.4.90",
        number_of_frames=1,
        contrast_agent="",
        error="",
    )
    return pd.DataFrame([{**base, **r} for r in rows])


def series(description, n_files, thickness, **kw):
    """A series-table row of the folder ``/s/CT <description>``."""
    return dict(
        series_dir=f"/s/CT {description}", description=description, n_files=n_files, slice_thickness_mm=thickness, **kw
    )


def test_select_series_fake_table():
    table = fake_table(
        [
            series("PLAIN THIN", 240, 0.625),
            {**series("PLAIN THIN", 240, 0.625), "series_dir": "/s/CT PLAIN THIN-2"},
            series("BONE", 240, 0.625, convolution_kernel="BONE"),
            series("0.625mm", 256, 0.625, convolution_kernel="BONEPLUS"),
            series("5mm", 36, 5.0),
            series("POST CONTRAST", 300, 0.625),
            series("Thin Plain", 240, 0.5),
            series("PRE CONTRAST THIN", 200, 0.625),
            series("short", 30, 0.625),
        ]
    )
    row, reasons = select_series(table)
    # 240 slices three times: thinner (0.5 mm) wins
    assert row["series_dir"] == "/s/CT Thin Plain"
    assert "bone" in reasons["/s/CT BONE"].lower()
    assert "BONEPLUS" in reasons["/s/CT 0.625mm"]  # kernel matched
    assert "5 mm > max 1.5" in reasons["/s/CT 5mm"]
    assert "36 slices < min 64" in reasons["/s/CT 5mm"]
    assert "post" in reasons["/s/CT POST CONTRAST"].lower()
    assert "30 slices < min 64" in reasons["/s/CT short"]
    # "PRE CONTRAST" is plain: a candidate (not chosen), not an exclusion
    assert reasons["/s/CT PRE CONTRAST THIN"].startswith("candidate, not chosen")
    assert row["series_dir"] not in reasons

    # ties on slices and thickness: name order
    row2, _ = select_series(table[table.series_dir != "/s/CT Thin Plain"])
    assert row2["series_dir"] == "/s/CT PLAIN THIN"

    # the contrast tag excludes too
    t3 = fake_table([{**series("HEAD", 100, 1.0, contrast_agent="OMNIPAQUE"), "series_dir": "/s/a"}])
    with pytest.raises(IngestError, match="ContrastBolusAgent"):
        select_series(t3)
    row3, _ = select_series(t3, use_contrast_tag=False)
    assert row3["series_dir"] == "/s/a"


def test_select_series_none_qualifies_lists_reasons():
    table = fake_table([series("BONE", 240, 0.625), series("5mm", 36, 5.0)])
    with pytest.raises(IngestError) as err:
        select_series(table)
    msg = str(err.value)
    assert "/s/CT BONE" in msg and "/s/CT 5mm" in msg and "bone" in msg and "5 mm > max" in msg


def test_list_series_real_tree(tmp_path):
    study = write_test_study(tmp_path)
    table = list_series(study)
    assert len(table) == 6
    by_name = {Path(p).name: r for p, r in zip(table.series_dir, table.to_dict("records"))}
    assert by_name["CT PLAIN THIN"]["n_files"] == 12  # notes.txt not counted
    assert by_name["CT Plain 3mm"]["n_files"] == 12  # extension-less files found
    assert by_name["CT 5mm"]["slice_thickness_mm"] == 5.0
    assert by_name["CT BONE"]["convolution_kernel"] == "BONE"
    assert by_name["CT PLAIN THIN"]["rows"] == 8 and by_name["CT PLAIN THIN"]["columns"] == 10
    assert by_name["CT PLAIN THIN"]["transfer_syntax"] == ExplicitVRLittleEndian
    for col in [
        "series_dir",
        "description",
        "n_files",
        "slice_thickness_mm",
        "image_type",
        "convolution_kernel",
        "rows",
        "columns",
        "transfer_syntax",
    ]:
        assert col in table.columns

    row, reasons = select_series(table, min_slices=10)
    assert Path(row["series_dir"]).name == "CT PLAIN THIN"
    names = {Path(k).name: v for k, v in reasons.items()}
    assert names["CT PLAIN THIN-2"].startswith("candidate, not chosen")
    assert "bone" in names["CT BONE"].lower()
    assert "5 mm > max" in names["CT 5mm"]
    assert "post" in names["CT POST CONTRAST"].lower()
    assert "3 mm > max" in names["CT Plain 3mm"]
