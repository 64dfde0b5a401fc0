"""QC preview ``results/qc/{modality}_preview.png``: for sampled slices of every volume, the raw
canonical slice, the automatic head mask over it and the final [-1, 1] window, so a person can
see at a glance whether masking and slicing did what they should."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# display windows for the raw volumes (physical units)
RAW_DISPLAY = {"ct": (-1024.0, 1600.0), "mr": None, "pet": None}


def sample_indices(n: int, k: int) -> np.ndarray:
    """``k`` evenly spaced indices in ``range(n)``, avoiding the extremes."""
    if n == 0:
        return np.array([], dtype=int)
    k = min(k, n)
    return np.unique(np.round(np.linspace(0, n - 1, k + 2)[1:-1]).astype(int))


def preview_figure(modality: str, items: list[dict], n_slices: int):
    """Figure with one row per sampled slice: raw canonical slice, mask outline, final slice.

    Each item: ``volume`` (label), ``raw`` [z,y,x] physical values, ``mask`` [z,y,x] bool,
    ``images`` [n,S,S] final slices, ``slice`` [n] their indices, ``top_left`` (r, c).
    """
    rows = []
    for item in items:
        for i in sample_indices(len(item["slice"]), n_slices):
            rows.append((item, int(i)))
    n = max(len(rows), 1)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for r, (item, i) in enumerate(rows):
        k = int(item["slice"][i])
        raw = item["raw"][k]
        mask = item["mask"][k]
        window = RAW_DISPLAY.get(modality) or (
            0.0,
            float(np.percentile(item["raw"][item["mask"]], 99.5)) if item["mask"].any() else 1.0,
        )
        axes[r, 0].imshow(raw, cmap="gray", vmin=window[0], vmax=window[1])
        axes[r, 0].set_ylabel(f"{item['volume']}\nslice {k}", fontsize=8)
        axes[r, 1].imshow(raw, cmap="gray", vmin=window[0], vmax=window[1])
        axes[r, 1].contour(mask, levels=[0.5], colors="r", linewidths=0.8)
        axes[r, 2].imshow(item["images"][i], cmap="gray", vmin=-1, vmax=1)
    titles = ["raw (canonical grid)", "automatic head mask (red)", "final 256x256, [-1, 1]"]
    for c, t in enumerate(titles):
        axes[0, c].set_title(t, fontsize=9)
    unit = "HU" if modality == "ct" else "a.u."
    window = RAW_DISPLAY.get(modality)
    window_text = f"[{window[0]:g}, {window[1]:g}] {unit}" if window else "0 to in-mask p99.5"
    fig.suptitle(
        f"{modality.upper()} preprocessing QC; raw display window {window_text}; anterior up, patient right on image left",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (3 * n)))
    return fig
