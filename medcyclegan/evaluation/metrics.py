"""Image similarity between a synthetic CT and the real CT, as SynthRAD2023 scores it.

Definitions (``ct`` = real CT, ``sct`` = synthetic CT, both in HU on the same grid; ``mask`` =
the evaluation mask, a boolean array of the same shape; ``N`` = number of mask voxels):

- **MAE** (HU) = ``sum(|ct - sct| over mask) / N``. No clipping: a HU error is a HU error.
- **PSNR** (dB): both volumes clipped to ``[-1024, 3000]`` HU, then
  ``10 * log10(R**2 / MSE)`` with ``MSE = mean((ct - sct)**2 over mask)`` and the fixed data
  range ``R = 3000 - (-1024) = 4024`` (SynthRAD's "population range", so PSNR does not depend on
  the patient's own min/max). Identical volumes give ``inf``.
- **SSIM**: both volumes clipped to ``[-1024, 3000]``, voxels outside the mask set to -1024, then
  shifted by +1024 to ``[0, 4024]``; scikit-image's ``structural_similarity`` with
  ``data_range=4024``, its defaults otherwise (uniform 7x7x7 window, ``K1=0.01``, ``K2=0.03``,
  sample covariance) and ``full=True``; the SSIM map is averaged over the mask voxels that are at
  least ``(win_size - 1) // 2`` = 3 voxels from the volume's border (scikit-image's own mean also
  drops that border, where the window does not fit).

These follow the SynthRAD2023 challenge's evaluation code, so numbers are comparable in kind
(not in value: the demo is a phantom).
"""

from __future__ import annotations

import math

import numpy as np

#: HU range of SynthRAD2023's PSNR/SSIM: both volumes are clipped to it; its width is the data range
HU_RANGE = (-1024.0, 3000.0)
#: SSIM window (voxels per side), scikit-image's default
SSIM_WIN = 7


def _check(ct, sct, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ct = np.asarray(ct, dtype=np.float64)
    sct = np.asarray(sct, dtype=np.float64)
    mask = np.asarray(mask) > 0
    if ct.shape != sct.shape or ct.shape != mask.shape:
        raise ValueError(f"shape mismatch: ct {ct.shape}, sct {sct.shape}, mask {mask.shape}")
    return ct, sct, mask


def mae(ct, sct, mask) -> float:
    """Mean absolute error in HU over the mask (unclipped); NaN for an empty mask."""
    ct, sct, mask = _check(ct, sct, mask)
    if not mask.any():
        return float("nan")
    return float(np.abs(ct[mask] - sct[mask]).mean())


def psnr(ct, sct, mask, hu_range=HU_RANGE) -> float:
    """PSNR in dB over the mask after clipping both volumes to ``hu_range`` (data range = its width)."""
    ct, sct, mask = _check(ct, sct, mask)
    if not mask.any():
        return float("nan")
    lo, hi = hu_range
    a = np.clip(ct[mask], lo, hi)
    b = np.clip(sct[mask], lo, hi)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * math.log10((hi - lo) ** 2 / mse))


def ssim_map(ct, sct, mask, hu_range=HU_RANGE, win_size: int = SSIM_WIN) -> np.ndarray:
    """The full SSIM map (same shape as the inputs) computed as described in the module doc."""
    from skimage.metrics import structural_similarity

    ct, sct, mask = _check(ct, sct, mask)
    lo, hi = hu_range
    a = np.where(mask, np.clip(ct, lo, hi), lo) - lo
    b = np.where(mask, np.clip(sct, lo, hi), lo) - lo
    _, full = structural_similarity(a, b, data_range=hi - lo, win_size=win_size, full=True)
    return full


def ssim(ct, sct, mask, hu_range=HU_RANGE, win_size: int = SSIM_WIN) -> float:
    """Mean SSIM over the mask voxels away from the border (see the module doc); NaN if none."""
    ct, sct, mask = _check(ct, sct, mask)
    if min(ct.shape) < win_size:
        raise ValueError(f"SSIM needs at least {win_size} voxels along every axis, got {ct.shape}")
    if not mask.any():
        return float("nan")
    pad = (win_size - 1) // 2
    # Same value, less work: only the mask's bounding box plus two half-windows matters (the window
    # of every mask voxel, and the filter's edge handling for those windows, stay inside it). The
    # box is at least win_size long on every axis since the volume is.
    box = tuple(
        slice(max(int(i.min()) - 2 * pad, 0), min(int(i.max()) + 2 * pad + 1, n))
        for i, n in zip(np.nonzero(mask), mask.shape)
    )
    # mask voxels within `pad` of the volume's own border are left out, as scikit-image's mean does
    keep = np.zeros(mask.shape, bool)
    keep[tuple(slice(pad, n - pad) for n in mask.shape)] = True
    full = ssim_map(ct[box], sct[box], mask[box], hu_range, win_size)
    sel = mask[box] & keep[box]
    if not sel.any():
        return float("nan")
    return float(full[sel].mean(dtype=np.float64))


def score(ct, sct, mask, hu_range=HU_RANGE) -> dict:
    """All three metrics plus the number of mask voxels, as a JSON-ready dict."""
    return {
        "mae_hu": mae(ct, sct, mask),
        "psnr_db": psnr(ct, sct, mask, hu_range),
        "ssim": ssim(ct, sct, mask, hu_range),
        "n_voxels": int((np.asarray(mask) > 0).sum()),
    }
