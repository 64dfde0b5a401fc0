"""The example figure ``results/{task}/examples.png`` (layout of the original project's examples).

Left: a column of real CT test slices (unpaired, to show what CT looks like). Right: a row of
input MR (or PET) test slices and, below each, the CT generated from it; where the demo provides
a paired true CT for that slice, a third row shows it with the MAE inside the head mask.
CT panels share one HU window and colourbar; the source panels their own [-1, 1] scale.
Slices are chosen deterministically: evenly spaced through a configurable range of each test
volume (``slice_range``, fractions of its slices from the first, inferior, one), columns going round-robin over the sorted test volumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("medcyclegan.examples_grid")

MODALITY_LABEL = {"ct": "CT", "mr": "MR", "pet": "PET"}


def select_slices(slices_by_volume: dict, n: int, slice_range=(0.25, 0.75)) -> list[tuple[str, int]]:
    """Pick ``n`` (volume, slice) pairs deterministically.

    Columns go round-robin over the sorted volumes; a volume given ``m`` columns contributes
    ``m`` slices evenly spaced (ends excluded) between the fractions ``slice_range`` of its
    sorted slice indices (0 = first slice, 1 = last). Returns fewer pairs only when there are
    fewer slices in all.
    """
    vols = sorted(v for v, s in slices_by_volume.items() if len(s))
    if not vols or n <= 0:
        return []
    f0, f1 = sorted(float(f) for f in slice_range)
    per_vol = {v: 0 for v in vols}
    for k in range(n):
        per_vol[vols[k % len(vols)]] += 1
    picks: dict = {}
    for v in vols:
        s = sorted(set(int(x) for x in slices_by_volume[v]))
        m = min(per_vol[v], len(s))
        if m == 0:
            continue
        lo = f0 * (len(s) - 1)
        hi = f1 * (len(s) - 1)
        idx = [int(round(lo + (hi - lo) * (j + 1) / (m + 1))) for j in range(m)]
        # keep them distinct if the range holds fewer than m slices
        seen: list = []
        for i in idx:
            if i in seen:  # nearest unused slice
                i = min((k for k in range(len(s)) if k not in seen), key=lambda k: (abs(k - i), k))
            seen.append(i)
        picks[v] = [s[i] for i in sorted(seen)]
    out = []
    counters = {v: 0 for v in vols}
    for k in range(n):
        v = vols[k % len(vols)]
        if v in picks and counters[v] < len(picks[v]):
            out.append((v, picks[v][counters[v]]))
            counters[v] += 1
    return out


def scan_tfrecord(tfrecord) -> dict:
    """``{volume: [slice, ...]}`` of a TFRecord file (streamed)."""
    from medcyclegan.io.tfrecords import read_dataset

    out: dict = {}

    def keys(e):
        return e["volume"], e["slice"]

    for vol, sl in read_dataset(tfrecord).map(keys).as_numpy_iterator():
        out.setdefault(vol.decode(), []).append(int(sl))
    return out


def read_selected(tfrecord, wanted) -> dict:
    """``{(volume, slice): record dict}`` for the wanted pairs (streamed)."""
    from medcyclegan.io.tfrecords import read_dataset

    wanted = set(wanted)
    out = {}
    for e in read_dataset(tfrecord).as_numpy_iterator():
        key = (e["volume"].decode(), int(e["slice"]))
        if key in wanted:
            out[key] = {
                "image": e["image"][..., 0],
                "subject": e["subject"].decode(),
                "volume": key[0],
                "slice": key[1],
                "value_lo": float(e["value_lo"]),
                "value_hi": float(e["value_hi"]),
            }
    return out


def make_grid(
    real_ct: list,
    inputs: list,
    generated: list,
    out_png,
    *,
    src: str = "mr",
    ground_truth: list | None = None,
    hu_window=(-200, 1500),
    title: str = "",
    dpi: int = 100,
):
    """Draw and save the figure; return the matplotlib figure (closed) for inspection.

    ``real_ct``: list of ``(hu [H, W], label)``, one per row; ``inputs``: list of
    ``(image [-1, 1] [H, W], label)``; ``generated``: list of ``hu [H, W]`` (same length);
    ``ground_truth``: ``None`` (no row) or a list of ``None`` / ``(hu, mask, label)`` per column.
    Rows: input, generated CT [, true CT]; the real-CT column has one panel per row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import gridspec

    n = len(inputs)
    if n == 0 or len(generated) != n:
        raise ValueError("need as many generated slices as input slices (at least one)")
    show_gt = ground_truth is not None and any(g is not None for g in ground_truth)
    rows = 3 if show_gt else 2
    src_label = MODALITY_LABEL.get(src, src.upper())
    vmin, vmax = hu_window
    panel = 2.3
    # columns: real CT | gap | n inputs | gap | source colourbar | gap | CT colourbar
    ratios = [1, 0.15, *([1] * n), 0.12, 0.06, 0.55, 0.06]
    fig_w = panel * (sum(ratios) + 0.5)
    fig_h = panel * rows + 1.3
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=dpi)
    gs = gridspec.GridSpec(
        rows,
        len(ratios),
        figure=fig,
        width_ratios=ratios,
        wspace=0.06,
        hspace=0.3,
        left=0.5 / fig_w,
        right=1 - 1.0 / fig_w,
        top=1 - 1.05 / fig_h,
        bottom=0.05 / fig_h,
    )
    col_src_cb, col_ct_cb = n + 3, n + 5
    ct_kw = dict(cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    src_kw = dict(cmap="gray" if src != "pet" else "magma", vmin=-1, vmax=1, interpolation="nearest")

    def clean(ax):
        ax.set_xticks([])
        ax.set_yticks([])

    ct_im = src_im = None
    for r in range(rows):
        ax = fig.add_subplot(gs[r, 0])
        clean(ax)
        if r < len(real_ct):
            hu, label = real_ct[r]
            ct_im = ax.imshow(hu, **ct_kw)
            ax.set_title(label, fontsize=8)
        else:
            ax.axis("off")
        if r == 0:
            ax.set_ylabel("real CT (test set,\nunpaired reference)", fontsize=9)
    row_names = [f"input {src_label}", f"generated CT\n({src_label} → CT)", "true CT\n(paired, not seen\nin training)"]
    for c in range(n):
        img, label = inputs[c]
        ax = fig.add_subplot(gs[0, c + 2])
        clean(ax)
        src_im = ax.imshow(img, **src_kw)
        ax.set_title(label, fontsize=8)
        if c == 0:
            ax.set_ylabel(row_names[0], fontsize=9)
        ax = fig.add_subplot(gs[1, c + 2])
        clean(ax)
        ct_im = ax.imshow(generated[c], **ct_kw)
        gt = ground_truth[c] if show_gt else None
        if gt is not None:
            mae = float(np.abs(np.asarray(generated[c], float) - gt[0])[gt[1]].mean()) if gt[1].any() else float("nan")
            ax.set_title(f"generated CT, MAE {mae:.0f} HU", fontsize=8)
        else:
            ax.set_title("generated CT", fontsize=8)
        if c == 0:
            ax.set_ylabel(row_names[1], fontsize=9)
        if show_gt:
            ax = fig.add_subplot(gs[2, c + 2])
            clean(ax)
            if gt is not None:
                ct_im = ax.imshow(gt[0], **ct_kw)
                ax.contour(gt[1], levels=[0.5], colors="tab:cyan", linewidths=0.5)
                ax.set_title(gt[2], fontsize=8)
            else:
                ax.text(0.5, 0.5, "no paired CT", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            if c == 0:
                ax.set_ylabel(row_names[2], fontsize=9)
    sax = fig.add_subplot(gs[:, col_src_cb])
    sb = fig.colorbar(src_im, cax=sax)
    sb.set_label(f"{src_label} (normalised, -1 = background)", fontsize=9)
    cax = fig.add_subplot(gs[:, col_ct_cb])
    cb = fig.colorbar(ct_im, cax=cax)
    cb.set_label(f"CT, Hounsfield units (window {vmin:g} to {vmax:g} HU)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return fig


def examples_grid(model_dir, src_test, ct_test, out_png, examples: dict, ground_truth_npz=()) -> dict:
    """Build the figure from the exported model and the test TFRecords; return what was shown."""
    from medcyclegan.evaluation.slice_eval import to_physical
    from medcyclegan.training.loop import generator_path, load_generator, load_manifest

    manifest = load_manifest(model_dir)
    src = manifest["source_modality"]
    lo_ct, hi_ct = manifest["ct_value_range"]
    n = int(examples["n_inputs"])
    frac = tuple(examples["slice_range"])

    picks = select_slices(scan_tfrecord(src_test), n, frac)
    if not picks:
        raise ValueError(f"no test slices in {src_test}")
    recs = read_selected(src_test, picks)
    gt_files = (
        {Path(p).name[: -len(".npz")]: p for p in ground_truth_npz} if examples.get("show_ground_truth", True) else {}
    )
    rows = 3 if any(v in gt_files for v, _ in picks) else 2
    ct_picks = select_slices(scan_tfrecord(ct_test), rows, frac)
    ct_recs = read_selected(ct_test, ct_picks)

    label = MODALITY_LABEL.get(src, src)
    gen = load_generator(generator_path(model_dir, "to_ct"))
    x = np.stack([recs[p]["image"] for p in picks])[..., None]
    y = gen(x)[..., 0]
    generated = [to_physical(y[i], lo_ct, hi_ct) for i in range(len(picks))]

    def name(rec):
        sub, vol = rec["subject"], rec["volume"]
        return vol if sub == vol or sub in vol else f"{sub} / {vol}"

    inputs = [(recs[p]["image"], f"input {label}: {name(recs[p])}\nslice {p[1]}") for p in picks]
    real_ct = [
        (
            to_physical(ct_recs[p]["image"], ct_recs[p]["value_lo"], ct_recs[p]["value_hi"]),
            f"real CT: {name(ct_recs[p])}\nslice {p[1]}",
        )
        for p in ct_picks
    ]
    ground_truth = None
    if rows == 3:
        ground_truth = []
        for v, s in picks:
            item = None
            if v in gt_files:
                with np.load(gt_files[v]) as z:
                    where = np.nonzero(z["slice"] == s)[0]
                    if len(where):
                        k = int(where[0])
                        item = (z["hu"][k].astype(np.float64), z["mask"][k].astype(bool), f"true CT, slice {s}")
            ground_truth.append(item)
    size = f"{manifest['image_size']}×{manifest['image_size']} px"
    trained_on = f"{size} windows at the stored resolution" if manifest.get("patches") else f"{size} slices"
    title = (
        f"{manifest['task']}: {label} → CT generator on held-out test slices "
        f"(training step {manifest['step']}, trained on {trained_on})\n"
        f"CT shown in HU, window [{examples['hu_window'][0]:g}, {examples['hu_window'][1]:g}]; "
        f"left column: real CT test slices of other subjects (unpaired)"
    )
    make_grid(
        real_ct,
        inputs,
        generated,
        out_png,
        src=src,
        ground_truth=ground_truth,
        hu_window=tuple(examples["hu_window"]),
        title=title,
        dpi=int(examples["dpi"]),
    )
    log.info("wrote %s: inputs %s, real CT %s", out_png, picks, ct_picks)
    return {"inputs": picks, "real_ct": ct_picks, "rows": rows}
