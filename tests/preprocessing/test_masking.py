"""Head mask: removes a CT headrest and table and MR background noise, keeps scalp and skull."""

import numpy as np
import pytest

from medcyclegan.preprocessing.masking import NOISE_SIGMAS, MaskParams, background_floor, head_mask


def ct_head_with_headrest(shape=(40, 120, 120)):
    """Ellipsoidal head (scalp, skull, brain) with a curved headrest touching it and a table."""
    z, y, x = np.indices(shape).astype(float)
    cz, cy, cx = shape[0] / 2, shape[1] / 2 - 8, shape[2] / 2
    r = np.sqrt(((y - cy) / 40) ** 2 + ((x - cx) / 34) ** 2 + ((z - cz) / 30) ** 2)
    vol = np.full(shape, -1000.0, dtype=np.float32)
    vol[r < 1.0] = 40.0  # scalp
    vol[r < 0.93] = 1200.0  # skull
    vol[r < 0.85] = 35.0  # brain
    # headrest: curved plastic shell below (posterior) the head, touching it through a 1-voxel bridge
    rr = np.sqrt(((y - cy) / 46) ** 2 + ((x - cx) / 40) ** 2)
    shell = (rr > 0.97) & (rr < 1.25) & (y > cy + 20) & (r >= 1.0)  # cup in contact with the scalp
    vol[shell] = 150.0
    bridge = (np.abs(x - cx) < 1) & (y > cy + 39) & (y < cy + 49)
    vol[bridge & (r > 0.99)] = 100.0
    table = (y >= 108) & (y < 118) & (x >= 5) & (x < 115)
    vol[table] = 200.0  # table slab, thicker than the opening radius
    return vol, r < 1.0, shell | table


def test_ct_mask_removes_headrest_and_table_keeps_skull():
    vol, head, hardware = ct_head_with_headrest()
    mask, info = head_mask(
        vol,
        (1.0, 1.0, 1.0),
        MaskParams(threshold=-500, smoothing_sigma_mm=0.5, opening_radius_mm=3, closing_radius_mm=2),
    )
    assert info["components"] >= 2  # head and hardware separated by the opening
    assert not mask[hardware].any(), "headrest or table kept"
    skull = vol == 1200.0
    assert mask[skull].mean() > 0.99
    # scalp (outer shell) essentially kept: only the opening's rounding may nibble at it
    assert mask[head].mean() > 0.97
    assert mask[~head].mean() < 0.01


def test_mr_mask_removes_background_noise():
    rng = np.random.default_rng(0)
    shape = (30, 100, 100)
    z, y, x = np.indices(shape).astype(float)
    r = np.sqrt(((y - 50) / 38) ** 2 + ((x - 50) / 32) ** 2 + ((z - 15) / 25) ** 2)
    vol = np.zeros(shape, np.float32)
    vol[r < 1.0] = 300.0  # bright scalp
    vol[r < 0.9] = 20.0  # dark skull (hole in the threshold)
    vol[r < 0.82] = 200.0  # brain
    noisy = np.abs(vol + rng.normal(0, 25, shape) + 1j * rng.normal(0, 25, shape)).astype(np.float32)
    mask, _ = head_mask(
        noisy,
        (1.0, 1.0, 1.0),
        MaskParams(
            threshold="otsu", threshold_scale=0.5, smoothing_sigma_mm=1.5, opening_radius_mm=2, closing_radius_mm=3
        ),
    )
    inside = r < 0.97
    assert mask[inside].mean() > 0.98  # skull band filled, scalp kept
    assert mask[r > 1.1].mean() < 0.001  # background noise gone


def test_empty_volume_gives_empty_mask():
    mask, info = head_mask(np.full((5, 20, 20), -1000, np.float32), (1, 1, 1), MaskParams(threshold=-500))
    assert not mask.any() and info["kept_voxels"] == 0


def pet_head(brain_uptake: float, shape=(30, 128, 128), seed=0):
    """A summed PET: a scatter floor around 1 filling most of the field of view, a faint scalp
    and a textured brain whose uptake varies with the tracer and the amyloid status. Zeros
    outside the reconstructed cylinder and negative noise, as real reconstructions have."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape).astype(float)
    r = np.sqrt(((y - 64) / 36) ** 2 + ((x - 64) / 30) ** 2 + ((z - 15) / 24) ** 2)
    vol = rng.gamma(4.0, 0.25, shape)  # floor: mean 1
    vol[r < 1.0] = 3.5  # scalp
    brain = r < 0.85
    vol[brain] = brain_uptake * rng.lognormal(0, 0.4, brain.sum())
    vol = (vol + rng.normal(0, 0.3, shape)).astype(np.float32)
    vol[:, np.hypot(y[0] - 64, x[0] - 64) > 63] = 0.0  # outside the field of view
    return vol, r


def test_background_floor_is_the_floor_not_the_head():
    floors = [background_floor(pet_head(uptake)[0], 1.5) for uptake in (10.0, 80.0)]
    for level, noise in floors:
        assert level == pytest.approx(1.0, abs=0.1)  # the floor's mean, not the head's or the zeros'
        assert 0 < noise < 0.2


def test_background_threshold_is_a_multiple_of_the_floor():
    vol, _ = pet_head(brain_uptake=80.0)
    _, info = head_mask(vol, (2.0, 2.0, 2.0), MaskParams(threshold="background", threshold_scale=2.5))
    level, _ = background_floor(vol, 0.5)  # the default smoothing: 1 mm on 2 mm voxels
    assert info["threshold"] == pytest.approx(2.5 * level)


def test_background_threshold_stays_clear_of_a_zero_mean_floor():
    """A floor of zero-mean noise (filtered back-projection) has no level to scale: the
    threshold then stands NOISE_SIGMAS noise deviations above it, and no speckle gets in."""
    rng = np.random.default_rng(1)
    z, y, x = np.indices((30, 100, 100)).astype(float)
    r = np.sqrt(((y - 50) / 36) ** 2 + ((x - 50) / 30) ** 2 + ((z - 15) / 24) ** 2)
    vol = np.where(r < 1.0, 6.0, 0.0) + np.where(r < 0.85, 30.0, 0.0) + rng.normal(0, 1.0, r.shape)
    sigma = 1.5
    level, noise = background_floor(vol.astype(np.float32), sigma)
    assert abs(level) < noise
    mask, info = head_mask(
        vol, (2.0, 2.0, 2.0), MaskParams(threshold="background", threshold_scale=2.4, smoothing_sigma_mm=3.0)
    )
    assert info["threshold"] == pytest.approx(level + NOISE_SIGMAS * noise)
    assert mask[r < 0.95].all()
    assert mask[r > 1.25].mean() < 0.001


def test_background_threshold_without_measured_voxels_gives_an_empty_mask():
    with pytest.raises(ValueError, match="no measured voxel"):
        background_floor(np.zeros((4, 8, 8), np.float32))
    mask, info = head_mask(np.zeros((5, 20, 20), np.float32), (1, 1, 1), MaskParams(threshold="background"))
    assert not mask.any() and info["kept_voxels"] == 0


PET_MORPHOLOGY = dict(smoothing_sigma_mm=3.0, opening_radius_mm=3, closing_radius_mm=6)


@pytest.mark.parametrize("brain_uptake", [10.0, 80.0])
def test_pet_mask_keeps_the_faint_scalp_whatever_the_brain_uptake(brain_uptake):
    vol, r = pet_head(brain_uptake)
    mask, _ = head_mask(vol, (2.0, 2.0, 2.0), MaskParams(threshold="background", threshold_scale=2.4, **PET_MORPHOLOGY))
    assert mask[(r > 0.85) & (r < 1.0)].mean() > 0.9  # the scalp
    assert mask[r < 0.85].all()
    assert mask[r > 1.15].mean() < 0.005  # the floor


def test_otsu_pet_mask_follows_the_brain_not_the_scalp():
    """Why PET uses the background threshold: one Otsu scale is too high for a bright brain
    (the scalp is cut) and too low for a faint one (the floor comes in)."""
    otsu = MaskParams(threshold="otsu", threshold_scale=0.1, **PET_MORPHOLOGY)
    vol, r = pet_head(brain_uptake=80.0)
    mask, _ = head_mask(vol, (2.0, 2.0, 2.0), otsu)
    assert mask[(r > 0.85) & (r < 1.0)].mean() < 0.85
    vol, r = pet_head(brain_uptake=10.0)
    mask, _ = head_mask(vol, (2.0, 2.0, 2.0), otsu)
    assert mask[r > 1.15].mean() > 0.2


def test_background_threshold_on_a_zeroed_background_falls_back_to_otsu():
    """A PET whose background was set to zero upstream has no floor: the floor's mode would be
    the scalp's own uptake and cut the head; the method takes a tenth of Otsu's instead."""
    vol, r = pet_head(brain_uptake=10.0)
    vol[r >= 1.0] = 0.0
    mask, _ = head_mask(vol, (2.0, 2.0, 2.0), MaskParams(threshold="background", threshold_scale=2.4, **PET_MORPHOLOGY))
    assert mask[r < 0.97].mean() > 0.99
    assert mask[r > 1.15].mean() < 0.005
