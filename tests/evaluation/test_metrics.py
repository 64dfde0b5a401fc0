"""Evaluation metrics against values computed by hand on small arrays."""

import math

import numpy as np
import pytest

from medcyclegan.evaluation import metrics

L = 4024.0  # data range of [-1024, 3000]
C1, C2 = (0.01 * L) ** 2, (0.03 * L) ** 2


def test_mae_only_inside_mask_and_unclipped():
    ct = np.array([[0.0, 100.0], [-2000.0, 5000.0]])
    sct = np.array([[10.0, 70.0], [-1000.0, 9999.0]])
    mask = np.array([[1, 1], [1, 0]])
    # |0-10| + |100-70| + |-2000+1000| over 3 voxels; the unmasked 9999 is ignored, -2000 not clipped
    assert metrics.mae(ct, sct, mask) == pytest.approx((10 + 30 + 1000) / 3)
    assert math.isnan(metrics.mae(ct, sct, np.zeros_like(mask)))


def test_psnr_clips_to_hu_range_and_uses_fixed_data_range():
    ct = np.array([3500.0, -2000.0, 0.0, 0.0, 777.0])
    sct = np.array([3000.0, -1024.0, 40.24, 0.0, -5.0])
    mask = np.array([1, 1, 1, 1, 0])
    # after clipping the first two pairs agree; MSE = 40.24**2 / 4 over the 4 mask voxels
    expected = 10 * math.log10(L**2 / (40.24**2 / 4))
    assert metrics.psnr(ct, sct, mask) == pytest.approx(expected)
    assert metrics.psnr(ct, ct, mask) == float("inf")


def test_ssim_constant_volumes_matches_formula():
    ct = np.full((9, 9, 9), 0.0)
    sct = np.full((9, 9, 9), 500.0)
    a, b = 0.0 + 1024, 500.0 + 1024  # shifted to [0, 4024]
    expected = (2 * a * b + C1) / (a * a + b * b + C1)  # no variance: only the luminance term
    assert metrics.ssim(ct, sct, np.ones(ct.shape)) == pytest.approx(expected, rel=1e-9)
    assert metrics.ssim(ct, ct, np.ones(ct.shape)) == pytest.approx(1.0)


def test_ssim_window_is_7_voxels_and_mean_skips_border():
    ct = np.zeros((15, 15, 15))
    sct = ct.copy()
    d = 400.0
    sct[7, 7, 7] = d
    mu_x, mu_y = 1024.0, 1024.0 + d / 343
    var_y = d * d / 343  # sample variance of one d among 343 window voxels
    inside = (2 * mu_x * mu_y + C1) * C2 / ((mu_x**2 + mu_y**2 + C1) * (var_y + C2))
    full = metrics.ssim_map(ct, sct, np.ones(ct.shape))
    changed = ~np.isclose(full, 1.0)
    assert changed.sum() == 7**3  # exactly the voxels whose 7x7x7 window holds the spike
    assert np.allclose(full[4:11, 4:11, 4:11], inside)
    # the mean runs over the 9x9x9 interior (3-voxel border dropped): 343 changed, 386 perfect
    assert metrics.ssim(ct, sct, np.ones(ct.shape)) == pytest.approx((343 * inside + 386) / 729, rel=1e-9)


def test_ssim_mask_selects_voxels_and_outside_is_background():
    ct = np.zeros((15, 15, 15))
    sct = ct.copy()
    sct[7, 7, 7] = 400.0
    sct[0, 0, 0] = 2000.0  # outside the mask: set to -1024 in both, cannot matter
    mask = np.zeros(ct.shape, bool)
    mask[1:14, 1:14, 1:14] = True
    mu_x, mu_y = 1024.0, 1024.0 + 400.0 / 343
    inside = (2 * mu_x * mu_y + C1) * C2 / ((mu_x**2 + mu_y**2 + C1) * (400.0**2 / 343 + C2))
    full = metrics.ssim_map(ct, sct, mask)
    assert full[7, 7, 7] == pytest.approx(inside, rel=1e-9)
    # the corner spike is outside the mask, so it is background in both volumes: voxel (3, 3, 3),
    # whose window reaches the corner, is a perfect match; without the mask it would not be
    assert full[3, 3, 3] == pytest.approx(1.0)
    assert metrics.ssim_map(ct, sct, np.ones(ct.shape))[3, 3, 3] < 0.99
    # identical windows elsewhere (background where masked in both): the mean over the mask's
    # interior voxels (3..11 along each axis) is 343 windows with the spike and 386 perfect ones
    assert metrics.ssim(ct, sct, mask) == pytest.approx((343 * inside + 386) / 729, rel=1e-9)
    s = metrics.score(ct, sct, mask)
    assert s["n_voxels"] == 13**3 and s["mae_hu"] == pytest.approx(400.0 / 13**3)


def test_shape_mismatch_and_tiny_volume_rejected():
    with pytest.raises(ValueError, match="shape"):
        metrics.mae(np.zeros(3), np.zeros(4), np.ones(3))
    with pytest.raises(ValueError, match="7 voxels"):
        metrics.ssim(np.zeros((5, 9, 9)), np.zeros((5, 9, 9)), np.ones((5, 9, 9)))


def test_ssim_on_the_mask_box_equals_ssim_on_the_whole_volume():
    rng = np.random.default_rng(0)
    ct = rng.normal(0, 300, (20, 24, 22))
    sct = ct + rng.normal(0, 100, ct.shape)
    mask = np.zeros(ct.shape, bool)
    mask[2:9, 5:15, 0:6] = True  # touches the volume's border on one axis
    full = metrics.ssim_map(ct, sct, mask)
    inner = np.zeros(ct.shape, bool)
    inner[3:-3, 3:-3, 3:-3] = True
    assert metrics.ssim(ct, sct, mask) == pytest.approx(full[mask & inner].mean(), rel=1e-12)
