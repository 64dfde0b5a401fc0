"""Head mask: removes a CT headrest and table and MR background noise, keeps scalp and skull."""

import numpy as np

from medcyclegan.preprocessing.masking import MaskParams, head_mask


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
