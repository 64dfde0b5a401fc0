"""Decoding a DICOM slice from real pixel data (pydicom's CT_small.dcm): scanner padding and
out-of-field values become air, pixel data of another length than the header's is refused before
decoding, and bare datasets (no preamble, no file meta) read as the normal file does."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.uid import ImplicitVRLittleEndian

from medcyclegan.ingest import IngestError
from medcyclegan.ingest import dicom_files as df
from medcyclegan.ingest.ct_stack import read_ct_stack
from medcyclegan.testing.fake_trees import write_test_series
from medcyclegan.testing.hostile_data import ct_small, write_bare_dataset


def write(ds, path, stored=None):
    if stored is not None:
        ds.PixelData = stored.astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def radius():
    rows, cols = np.indices((128, 128))
    return np.hypot(rows - 63.5, cols - 63.5)


# ----------------------------------------------------------------------------- padding


def test_padding_and_out_of_field_ring_become_air(tmp_path):
    ds = ct_small()
    raw = ds.pixel_array.astype(np.int32)
    r = radius()
    corners, ring = r > 63, (r > 56) & (r <= 63)
    stored = raw.copy()
    stored[corners] = -2500  # the scanner's padding value (HU -3524)
    stored[ring] = -2000  # -3024 HU: outside the reconstruction circle, not padding
    ds.PixelPaddingValue = -2500
    s = df.read_slice(write(ds, tmp_path / "padded.dcm", stored), set())
    inside = ~(corners | ring)
    assert np.all(s["hu"][corners | ring] == -1024.0)
    np.testing.assert_array_equal(s["hu"][inside], (raw - 1024)[inside].astype(np.float32))
    assert s["hu"].min() == -1024.0
    assert s["n_padding_pixels"] == corners.sum() and s["n_below_air_pixels"] == ring.sum()
    assert s["padding_rule"] == "PixelPaddingValue"
    (fix,) = df.slice_fixes([s, s])
    assert fix.startswith(f"{2 * (corners.sum() + ring.sum())} pixels set to -1024 HU (air)")
    assert f"{2 * corners.sum()} scanner padding (PixelPaddingValue)" in fix and "below -1024 HU" in fix


@pytest.mark.parametrize("value,limit", [(100, 110), (110, 100)])
def test_padding_range_is_inclusive_and_compared_on_stored_values(tmp_path, value, limit):
    """PixelPaddingValue to PixelPaddingRangeLimit, either order, on the stored values: with slope
    2, stored 100..110 (HU -824..-804) is padding, HU 100..110 (stored 562..567) is not."""
    ds = ct_small()
    ds.RescaleSlope = 2
    stored = ds.pixel_array.astype(np.int32)
    stored[:4, :] = np.arange(98, 113).repeat(40)[:512].reshape(4, 128)  # 98 .. 112 stored
    stored[4:6, :] = 565  # HU 106
    ds.PixelPaddingValue = value
    ds.add_new("PixelPaddingRangeLimit", "SS", limit)  # VR "US or SS": signed pixels
    s = df.read_slice(write(ds, tmp_path / "range.dcm", stored), set())
    pad = (stored >= 100) & (stored <= 110)
    assert s["n_padding_pixels"] == pad.sum() > 0
    assert np.all(s["hu"][pad] == -1024.0)
    np.testing.assert_array_equal(s["hu"][~pad], (stored * 2.0 - 1024.0)[~pad].astype(np.float32))
    assert s["padding_rule"] == "PixelPaddingValue to PixelPaddingRangeLimit"


def test_no_padding_no_fix_and_mr_values_untouched(tmp_path):
    ds = ct_small()  # PixelPaddingValue -2000, which no pixel holds
    s = df.read_slice(write(ds, tmp_path / "ct.dcm"), set())
    assert s["n_padding_pixels"] == 0 and s["n_below_air_pixels"] == 0 and df.slice_fixes([s]) == []
    stored = ds.pixel_array.astype(np.int32)
    stored[:10] = -2000
    ds.Modality = "MR"  # no air value in MR: nothing is replaced
    s = df.read_slice(write(ds, tmp_path / "mr.dcm", stored), set())
    np.testing.assert_array_equal(s["hu"], (stored - 1024).astype(np.float32))
    assert s["n_padding_pixels"] == 0 and df.slice_fixes([s]) == []


# ----------------------------------------------------------------------------- pixel data length


@pytest.mark.parametrize("change", [256, -256])
def test_pixel_data_of_another_length_refused_before_decoding(tmp_path, monkeypatch, change):
    ds = ct_small()
    ds.PixelData = ds.PixelData + b"\0" * change if change > 0 else ds.PixelData[:change]
    path = write(ds, tmp_path / "len.dcm")

    def no_decode(*args):
        raise AssertionError("decoded although the length is wrong")

    monkeypatch.setattr(df, "_decode_pixels", no_decode)
    with pytest.raises(IngestError) as err:
        df.read_slice(path, set())
    msg = str(err.value)
    assert str(path) in msg and f"holds {32768 + change} bytes" in msg and "announces 32768" in msg
    assert ("truncated" in msg) == (change < 0)
    assert "128 x 128 x 1 x 16/8" in msg


def test_odd_length_pixel_data_with_its_pad_byte_is_read(tmp_path):
    ds = ct_small()
    ds.Rows, ds.Columns = 3, 5
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    del ds.PixelPaddingValue
    values = np.arange(15, dtype=np.uint8).reshape(3, 5) + 100
    ds.PixelData = values.tobytes() + b"\0"  # 15 bytes + the pad byte to an even length
    s = df.read_slice(write(ds, tmp_path / "odd.dcm"), set())
    np.testing.assert_array_equal(s["hu"], values.astype(np.float32) - 1024.0)


# ----------------------------------------------------------------------------- bare datasets


def test_bare_dataset_is_listed_and_reads_to_the_same_hu(tmp_path):
    ds = ct_small()
    (tmp_path / "normal").mkdir()
    normal = write(ds, tmp_path / "normal" / "CT1.dcm")
    bare = write_bare_dataset(tmp_path / "archive" / "IM00001", ds)  # no extension, no magic
    assert bare.read_bytes()[:2] == b"\x08\x00" and bare.read_bytes()[128:132] != b"DICM"
    assert df.has_dicom_magic(bare) and df.dicom_files(tmp_path / "archive") == [bare]
    a, b = df.read_slice(normal, set()), df.read_slice(bare, set())
    np.testing.assert_array_equal(b["hu"], a["hu"])
    assert b["ts"] == ImplicitVRLittleEndian and b["ts_inferred"] and not a["ts_inferred"]
    assert df.slice_fixes([b]) == [
        "1 files without DICOM file meta (bare datasets): transfer syntax inferred (Implicit VR Little Endian)"
    ]


def test_bare_series_stacks_like_the_original(tmp_path):
    rng = np.random.default_rng(5)
    stored = [rng.integers(0, 3000, size=(8, 10)).astype(np.int16) for _ in range(4)]
    write_test_series(tmp_path / "s", 4, values=stored)
    for f in sorted((tmp_path / "s").iterdir()):
        write_bare_dataset(tmp_path / "bare" / f.stem, df.dcmread(f, headers_only=False))
    original, _ = read_ct_stack(tmp_path / "s")
    bare, details = read_ct_stack(tmp_path / "bare")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(bare), sitk.GetArrayFromImage(original))
    assert bare.GetOrigin() == original.GetOrigin() and details["n_slices"] == 4


def test_random_bytes_are_still_skipped_not_listed(tmp_path):
    junk = np.random.default_rng(7).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (tmp_path / "junk").write_bytes(junk)
    (tmp_path / "junk.dcm").write_bytes(junk)
    assert not df.has_dicom_magic(tmp_path / "junk")
    assert df.dicom_files(tmp_path) == [tmp_path / "junk.dcm"]  # by its extension only
    s = df.read_slice(tmp_path / "junk.dcm", set())
    assert s["skip"] and s["reason"].startswith("not a DICOM file")


def test_bare_dataset_heuristic():
    assert df.starts_like_bare_dataset(b"\x08\x00\x05\x00\x0a\x00\x00\x00ISO_IR 100")  # implicit VR
    assert df.starts_like_bare_dataset(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100")  # explicit VR
    assert not df.starts_like_bare_dataset(b"exported by the viewer")
    assert not df.starts_like_bare_dataset(b"\x08\x00\x05\x00\x0b\x00\x00\x00")  # odd length
    assert not df.starts_like_bare_dataset(b"\x08\x00")


def test_padded_study_ingests_with_air_outside_the_field_and_one_fix_line(tmp_path):
    """The whole ingest job: out-of-field -3024 HU and PixelPaddingValue pixels become -1024 HU in
    the canonical volume, and the volume's fixes (fixes.csv) say how many."""
    from medcyclegan.testing.fake_trees import ball_head_hu
    from medcyclegan.testing.hostile_data import cq500_study, run_volume

    def scanner_hu(lps):
        hu = ball_head_hu(lps)
        hu[np.hypot(lps[..., 0], lps[..., 1]) > 90] = -3024.0  # outside the reconstruction circle
        return hu

    study = cq500_study(tmp_path / "raw", 21, **{"CT PLAIN": {"hu_fn": scanner_hu, "signed": True}})
    rows, info = run_volume(tmp_path, "ct", study, "CQ500-CT-21")
    assert rows.empty and info["status"] == "ok"
    (fix,) = [f for f in info["ingest"]["fixes"] if "-1024 HU" in f]
    assert "below -1024 HU" in fix
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "results/volumes/ct/CQ500-CT-21.nii.gz")))
    assert volume.min() == -1024
