"""The evaluation figure ``results/{task}/evaluation.png``: for each test subject, one axial
slice of the input, the real CT, the synthetic CT and the absolute difference inside the
evaluation mask (the panels :func:`medcyclegan.evaluation.volume.evaluate_volume` writes)."""

from __future__ import annotations

import numpy as np

from medcyclegan.io import atomic as io
from medcyclegan.io.slices import read_stack


def evaluation_figure(
    panel_npzs, out_png, *, task: str, hu_window=(-200.0, 1500.0), max_subjects: int = 4, dpi: int = 100
) -> None:
    """Rows = test subjects: input, real CT, synthetic CT, |difference| in the mask (MAE in the title).

    Rows are labelled ``test subject 1..n``: no subject id reaches the picture.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stacks = (read_stack(p) for p in sorted(panel_npzs))
    panels = [arrays for arrays, rejection in stacks if rejection is None][:max_subjects]
    n = max(len(panels), 1)
    fig, axes = plt.subplots(n, 4, figsize=(12, 3.1 * n), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, p in enumerate(panels):
        _draw_subject(fig, axes[i], p, f"test subject {i + 1}", hu_window)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no test subject with a paired CT", ha="center", va="center")
    fig.suptitle(
        f"{task}: one axial slice per test subject (CT window [{hu_window[0]:g}, {hu_window[1]:g}] HU)", fontsize=11
    )
    fig.tight_layout()
    io.write_figure(out_png, fig, dpi=dpi)
    plt.close(fig)


def _draw_subject(fig, row, p: dict, label: str, hu_window) -> None:
    """One row of four panels for one subject's panel arrays ``p``."""
    src = p["input"]
    lo, hi = np.percentile(src, [1, 99.5]) if np.ptp(src) > 0 else (0, 1)
    diff = np.where(p["mask"], np.abs(p["sct"] - p["ct"]), np.nan)
    row[0].imshow(src, cmap="gray", vmin=lo, vmax=hi)
    row[0].set_title(f"{label}: input", fontsize=10)
    row[1].imshow(p["ct"], cmap="gray", vmin=hu_window[0], vmax=hu_window[1])
    row[1].set_title("real CT", fontsize=10)
    row[2].imshow(p["sct"], cmap="gray", vmin=hu_window[0], vmax=hu_window[1])
    row[2].set_title("synthetic CT", fontsize=10)
    im = row[3].imshow(diff, cmap="magma", vmin=0, vmax=500)
    row[3].set_title(f"|sCT - CT|, volume MAE {float(p['mae_hu']):.0f} HU", fontsize=10)
    fig.colorbar(im, ax=row[3], fraction=0.046, pad=0.02, label="HU")
