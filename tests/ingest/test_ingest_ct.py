"""CQ500 CT ingest of a whole study: the chosen series, its info, falling back to the next series."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.ct import ingest_ct_study
from medcyclegan.testing.fake_trees import TEST_PHI, TEST_SERIES_UID, write_test_series, write_test_study


def test_ingest_ct_study_info_is_clean_json(tmp_path):
    study = write_test_study(tmp_path)
    img, info = ingest_ct_study(
        study, {"max_slice_thickness_mm": 1.5, "min_slices": 10, "exclude_patterns": ["bone", "contrast", "post"]}
    )
    assert img.GetSize() == (10, 8, 12)
    assert info["series_description"] == "PLAIN THIN"
    assert info["series_folder"].endswith("CT PLAIN THIN")
    assert info["n_slices"] == 12
    assert info["spacing_mm"] == pytest.approx([0.6, 0.5, 0.625])
    assert info["transfer_syntax"] == ["Explicit VR Little Endian"]
    assert set(Path(k).name for k in info["rejected"]) == {
        "CT PLAIN THIN-2",
        "CT BONE",
        "CT 5mm",
        "CT POST CONTRAST",
        "CT Plain 3mm",
    }
    text = json.dumps(info)
    for secret in ("Doe", *TEST_PHI.values(), TEST_SERIES_UID):
        assert secret not in text
    with pytest.raises(IngestError, match="unknown keys"):
        ingest_ct_study(study, {"min_slice": 3})


def test_ingest_falls_back_when_best_series_is_broken(tmp_path):
    study = tmp_path / "s"
    write_test_series(study / "CT A", 13, description="A")
    (study / "CT A" / "CT000005.dcm").unlink()  # 12 files with a gap: ranks first, cannot be read
    write_test_series(study / "CT B", 11, description="B")
    img, info = ingest_ct_study(study, {"min_slices": 10})
    assert info["series_folder"] == "CT B"
    assert img.GetSize()[2] == 11
    assert "could not be read" in info["rejected"]["CT A"] and "not uniform" in info["rejected"]["CT A"]


def test_canonical_ct_is_whole_hu_int16_within_half_a_hu_of_the_resampled_float(tmp_path):
    """The canonical CT on disk is int16 HU: the float resampling rounded, nothing else changed."""
    from medcyclegan.preprocessing.geometry import to_canonical
    from medcyclegan.testing.hostile_data import CT_RULES, write_ct
    from medcyclegan.workflow import jobs

    study = tmp_path / "CQ500-CT-1"
    write_ct(study / "CT PLAIN", n=40, size=48, spacing=2.7, thickness=2.5)
    out = tmp_path / "out.nii.gz"
    spacing = [2.0, 2.0, 2.0]
    jobs.ingest(
        "ct", str(study), "CQ500-CT-1", str(out), str(tmp_path / "out.json"), spacing_mm=spacing, ct_series=CT_RULES
    )
    assert json.loads((tmp_path / "out.json").read_text())["status"] == "ok"
    written = sitk.ReadImage(str(out))
    assert written.GetPixelID() == sitk.sitkInt16
    img, _ = ingest_ct_study(study, CT_RULES)
    expected = to_canonical(img, spacing, default_value=-1024.0)
    assert written.GetSize() == expected.GetSize() and written.GetOrigin() == pytest.approx(expected.GetOrigin())
    diff = sitk.GetArrayFromImage(written) - sitk.GetArrayFromImage(expected)
    assert np.abs(diff).max() <= 0.5 + 1e-3
    assert np.ptp(sitk.GetArrayFromImage(expected)) > 500  # a real HU range, not a blank volume
