"""z spacing and origin of a CT stack from a least-squares line through every slice position:
rounded and jittered positions give the true geometry; gaps and two spacings are still refused."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medcyclegan.ingest import IngestError
from medcyclegan.ingest.ct_stack import POSITION_ROUNDING_MM, _stack_hu, read_ct_stack
from medcyclegan.testing.fake_trees import write_test_slice


def write_positions(folder, zs, shape=(6, 5)):
    """One axial slice per z (mm, as written in ImagePositionPatient); slice k holds 1024 + k."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, z in enumerate(zs):
        write_test_slice(folder / f"CT{k:06d}.dcm", np.full(shape, 1024 + k, np.int16), ipp=(-10.0, -20.0, float(z)))
    return folder


def rounded(zs):
    """Positions as a writer that keeps one decimal stores them (1.25 -> '1.2', 3.75 -> '3.8')."""
    return [float(f"{z:.1f}") for z in zs]


@pytest.mark.parametrize("dz", [1.25, 0.625])
def test_positions_with_one_decimal_give_the_true_spacing_and_extent(tmp_path, dz):
    n, z0 = 120, -30.0
    zs = rounded(z0 + dz * np.arange(n))
    if dz == 1.25:
        assert zs[:6] == [-30.0, -28.8, -27.5, -26.2, -25.0, -23.8]  # steps 1.2 / 1.3, never 1.25
    img, details = read_ct_stack(write_positions(tmp_path / "s", zs))
    assert img.GetSpacing()[2] == pytest.approx(dz, abs=0.01)  # the median step was 1.2 or 1.3 (4 % off)
    extent = img.GetSize()[2] * img.GetSpacing()[2]
    assert extent == pytest.approx(n * dz, rel=0.005)
    assert img.GetOrigin()[2] == pytest.approx(z0, abs=0.05)  # the fitted first position
    assert "least-squares" in details["z_spacing_source"]
    assert 0.02 < details["z_fit_max_residual_mm"] < 0.06  # the rounding, plus the line's own error
    assert details["z_fit_tolerance_mm"] == pytest.approx(max(POSITION_ROUNDING_MM, 0.1 * dz))
    # voxel values follow the position order
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(img)[:, 0, 0], np.arange(n))


def test_jittered_positions_give_the_true_spacing(tmp_path):
    rng = np.random.default_rng(7)
    n, dz, z0 = 200, 0.625, 12.0
    zs = z0 + dz * np.arange(n) + rng.uniform(-0.05, 0.05, n)
    img, details = read_ct_stack(write_positions(tmp_path / "s", zs))
    assert img.GetSpacing()[2] == pytest.approx(dz, abs=0.01)
    assert img.GetOrigin()[2] == pytest.approx(z0, abs=0.05)
    assert 0.03 < details["z_fit_max_residual_mm"] < 0.06


def test_exact_positions_fit_without_residual(tmp_path):
    img, details = read_ct_stack(write_positions(tmp_path / "s", 5.0 + 2.5 * np.arange(7)))
    assert img.GetSpacing()[2] == pytest.approx(2.5, abs=1e-9)
    assert img.GetOrigin()[2] == pytest.approx(5.0, abs=1e-9)
    assert details["z_fit_max_residual_mm"] < 1e-6
    assert details["z_fit_tolerance_mm"] == pytest.approx(0.25)  # 10 % of the spacing above 1 mm


@pytest.mark.parametrize("n, missing", [(60, 31), (60, 58), (4, 2)])
def test_a_missing_slice_is_refused_naming_the_files_around_it(tmp_path, n, missing):
    zs = rounded(1.25 * np.arange(n))
    folder = write_positions(tmp_path / "s", zs)
    (folder / f"CT{missing:06d}.dcm").unlink()
    with pytest.raises(IngestError, match="not uniform") as err:
        read_ct_stack(folder)
    assert f"CT{missing - 1:06d}.dcm" in str(err.value) and f"CT{missing + 1:06d}.dcm" in str(err.value)
    assert str(folder) in str(err.value)


def test_two_spacings_in_one_series_are_refused(tmp_path):
    zs = list(np.arange(20) * 1.0) + list(19.0 + 1.5 * np.arange(1, 21))
    with pytest.raises(IngestError, match="not uniform"):
        read_ct_stack(write_positions(tmp_path / "a", zs))
    # each step within the rounding tolerance of the fitted spacing, but the positions drift off
    # a uniform grid: 0.625 mm then 0.7 mm
    zs = list(0.625 * np.arange(60)) + list(0.625 * 59 + 0.7 * np.arange(1, 61))
    with pytest.raises(IngestError, match="off the grid"):
        read_ct_stack(write_positions(tmp_path / "b", zs))


def test_stacking_releases_each_slice_and_keeps_the_values():
    slices = [{"hu": np.full((3, 4), k, np.float32), "shape": (3, 4)} for k in range(5)]
    expected = np.stack([s["hu"] for s in slices])
    vol = _stack_hu(slices)
    np.testing.assert_array_equal(vol, expected)
    assert vol.dtype == np.float32 and vol.flags.c_contiguous
    assert all(s["hu"] is None for s in slices)
