"""DICOM slice reading: HU rescale, compressed pixel data, missing decoders, parallel decode."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import JPEG2000Lossless

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.ct import read_ct_series
from medcyclegan.ingest.ct_series import list_series
from medcyclegan.ingest.ct_stack import read_ct_stack
from medcyclegan.ingest.dicom_files import PARALLEL_MIN_FILES
from medcyclegan.testing.fake_trees import write_test_series


@pytest.mark.parametrize("signed", [True, False])
def test_hu_rescale(tmp_path, signed):
    rng = np.random.default_rng(0)
    # signed: negative stored values, at or above air (-1024 HU) once rescaled (below air is a fix)
    intercept = 0.0 if signed else -1024.0
    if signed:
        stored = [rng.integers(-512, 1500, size=(5, 6)).astype(np.int16) for _ in range(3)]
    else:
        stored = [rng.integers(0, 4000, size=(5, 6)).astype(np.uint16) for _ in range(3)]
    write_test_series(tmp_path / "s", 3, values=stored, slope=2.0, intercept=intercept)
    arr = sitk.GetArrayFromImage(read_ct_series(tmp_path / "s"))
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, np.stack(stored).astype(np.float64) * 2.0 + intercept)


@pytest.mark.parametrize("signed", [True, False])
def test_jpeg2000_lossless_decoding_exact(tmp_path, signed):
    rng = np.random.default_rng(1)
    if signed:
        stored = [rng.integers(-1024, 3000, size=(64, 48)).astype(np.int16) for _ in range(3)]
        intercept = 0.0
    else:
        stored = [rng.integers(0, 4095, size=(64, 48)).astype(np.uint16) for _ in range(3)]
        intercept = -1024.0
    write_test_series(tmp_path / "s", 3, values=stored, intercept=intercept, compress=JPEG2000Lossless)
    ds = pydicom.dcmread(next((tmp_path / "s").iterdir()))
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    table = list_series(tmp_path / "s")
    assert table.loc[0, "transfer_syntax"] == JPEG2000Lossless
    arr = sitk.GetArrayFromImage(read_ct_series(tmp_path / "s"))
    np.testing.assert_array_equal(arr, np.stack(stored).astype(np.float64) + intercept)


def test_missing_decoder_names_transfer_syntax_and_package(tmp_path, monkeypatch):
    stored = [np.full((64, 64), 100, dtype=np.int16) for _ in range(2)]
    write_test_series(tmp_path / "s", 2, values=stored, compress=JPEG2000Lossless)

    class NoDecoder:
        is_available = False
        missing_dependencies = ["pylibjpeg"]

    import pydicom.pixels

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: NoDecoder())
    with pytest.raises(IngestError) as err:
        read_ct_series(tmp_path / "s")
    msg = str(err.value)
    assert "JPEG 2000" in msg and "pylibjpeg-openjpeg" in msg and "pip install" in msg


def test_parallel_decode_matches_serial_and_reports_a_truncated_file(tmp_path):
    """A compressed series of PARALLEL_MIN_FILES or more is decoded by forked workers: same
    volume as the serial read, and a damaged file still fails the read, naming that file."""
    rng = np.random.default_rng(3)
    n = PARALLEL_MIN_FILES + 4
    stored = [rng.integers(0, 4095, size=(64, 48)).astype(np.uint16) for _ in range(n)]
    write_test_series(tmp_path / "s", n, values=stored, compress=JPEG2000Lossless)
    serial, _ = read_ct_stack(tmp_path / "s", workers=1)
    parallel, _ = read_ct_stack(tmp_path / "s", workers=2)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(parallel), sitk.GetArrayFromImage(serial))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(parallel), np.stack(stored).astype(np.float32) - 1024.0)
    bad = tmp_path / "s" / "CT000017.dcm"
    bad.write_bytes(bad.read_bytes()[:-40])  # pixel data cut short
    for workers in (1, 2):
        with pytest.raises(IngestError, match="CT000017.dcm"):
            read_ct_stack(tmp_path / "s", workers=workers)
