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

from medcyclegan.evaluation.metrics import mae
from medcyclegan.io import atomic as io
from medcyclegan.preprocessing.intensity import to_physical

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


def read_selected(tfrecord, wanted, context_slices: int = 0) -> dict:
    """``{(volume, slice): record dict}`` for the wanted pairs (streamed): ``image`` the slice [H, W],
    ``stack`` the generator's input [H, W, 2k + 1] (2.5D context, k = ``context_slices``)."""
    from medcyclegan.io.tfrecords import read_dataset

    wanted = set(wanted)
    k = int(context_slices)
    out = {}
    for e in read_dataset(tfrecord, context_slices=k).as_numpy_iterator():
        key = (e["volume"].decode(), int(e["slice"]))
        if key in wanted:
            out[key] = {
                "image": e["image"][..., k],
                "stack": e["image"],
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

    n = len(inputs)
    if n == 0 or len(generated) != n:
        raise ValueError("need as many generated slices as input slices (at least one)")
    show_gt = ground_truth is not None and any(g is not None for g in ground_truth)
    rows = 3 if show_gt else 2
    src_label = MODALITY_LABEL.get(src, src.upper())
    fig, gs = _figure_grid(plt, n, rows, dpi)
    ct_kw = dict(cmap="gray", vmin=hu_window[0], vmax=hu_window[1], interpolation="nearest")
    src_kw = dict(cmap="gray" if src != "pet" else "magma", vmin=-1, vmax=1, interpolation="nearest")
    _draw_real_ct(fig, gs, rows, real_ct, ct_kw)
    row_names = [f"input {src_label}", f"generated CT\n({src_label} → CT)", "true CT\n(paired, not seen\nin training)"]
    for c in range(n):
        gt = ground_truth[c] if show_gt else None
        names = row_names if c == 0 else None
        src_im, ct_im = _draw_column(fig, gs, c, inputs[c], generated[c], gt, show_gt, src_kw, ct_kw, names)
    _colour_bars(fig, gs, n, src_im, ct_im, src_label, hu_window)
    if title:
        fig.suptitle(title, fontsize=10)
    io.write_figure(out_png, fig, dpi=dpi)
    plt.close(fig)
    return fig


def _figure_grid(plt, n: int, rows: int, dpi: int):
    """The figure and its grid: real CT | gap | n inputs | gap | source colourbar | gap | CT colourbar."""
    from matplotlib import gridspec

    panel = 2.3
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
    return fig, gs


def _panel(fig, cell):
    ax = fig.add_subplot(cell)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _draw_real_ct(fig, gs, rows: int, real_ct: list, ct_kw: dict) -> None:
    """The left column: one real CT test slice per row (unpaired, to show what CT looks like)."""
    for r in range(rows):
        ax = _panel(fig, gs[r, 0])
        if r < len(real_ct):
            hu, label = real_ct[r]
            ax.imshow(hu, **ct_kw)
            ax.set_title(label, fontsize=8)
        else:
            ax.axis("off")
        if r == 0:
            ax.set_ylabel("real CT (test set,\nunpaired reference)", fontsize=9)


def _draw_column(fig, gs, c: int, source, generated, gt, show_gt: bool, src_kw: dict, ct_kw: dict, row_names=None):
    """Column ``c``: the input, the CT generated from it and (``show_gt``) its paired true CT,
    with ``row_names`` as the row labels if given. Returns the source image and the last CT
    image drawn (for the colourbars)."""
    img, label = source
    ax = _panel(fig, gs[0, c + 2])
    src_im = ax.imshow(img, **src_kw)
    ax.set_title(label, fontsize=8)
    if row_names:
        ax.set_ylabel(row_names[0], fontsize=9)
    ax = _panel(fig, gs[1, c + 2])
    ct_im = ax.imshow(generated, **ct_kw)
    if gt is not None:
        ax.set_title(f"generated CT, MAE {mae(gt[0], generated, gt[1]):.0f} HU", fontsize=8)
    else:
        ax.set_title("generated CT", fontsize=8)
    if row_names:
        ax.set_ylabel(row_names[1], fontsize=9)
    if show_gt:
        ax = _panel(fig, gs[2, c + 2])
        if gt is not None:
            ct_im = ax.imshow(gt[0], **ct_kw)
            ax.contour(gt[1], levels=[0.5], colors="tab:cyan", linewidths=0.5)
            ax.set_title(gt[2], fontsize=8)
        else:
            ax.text(0.5, 0.5, "no paired CT", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        if row_names:
            ax.set_ylabel(row_names[2], fontsize=9)
    return src_im, ct_im


def _colour_bars(fig, gs, n: int, src_im, ct_im, src_label: str, hu_window) -> None:
    sb = fig.colorbar(src_im, cax=fig.add_subplot(gs[:, n + 3]))
    sb.set_label(f"{src_label} (normalised, -1 = background)", fontsize=9)
    cb = fig.colorbar(ct_im, cax=fig.add_subplot(gs[:, n + 5]))
    cb.set_label(f"CT, Hounsfield units (window {hu_window[0]:g} to {hu_window[1]:g} HU)", fontsize=9)


def examples_grid(model_dir, src_test, ct_test, out_png, examples: dict, ground_truth_npz=()) -> dict:
    """Build the figure from the exported model and the test TFRecords; return what was shown."""
    from medcyclegan.inference.runtime import generator_path, load_generator, load_manifest

    manifest = load_manifest(model_dir)
    src = manifest["source_modality"]
    lo_ct, hi_ct = manifest["ct_value_range"]
    frac = tuple(examples["slice_range"])
    picks = select_slices(scan_tfrecord(src_test), int(examples["n_inputs"]), frac)
    if not picks:
        raise ValueError(f"no test slices in {src_test}")
    recs = read_selected(src_test, picks, manifest["context_slices"])
    gt_files = (
        {Path(p).name[: -len(".npz")]: p for p in ground_truth_npz} if examples.get("show_ground_truth", True) else {}
    )
    rows = 3 if any(v in gt_files for v, _ in picks) else 2
    ct_picks = select_slices(scan_tfrecord(ct_test), rows, frac)
    ct_recs = read_selected(ct_test, ct_picks)

    label = MODALITY_LABEL.get(src, src)
    gen = load_generator(generator_path(model_dir, "to_ct"))
    y = gen(np.stack([recs[p]["stack"] for p in picks]))[..., 0]
    generated = [to_physical(y[i], lo_ct, hi_ct, np.float64) for i in range(len(picks))]
    inputs = [(recs[p]["image"], f"input {label}: {_name(recs[p])}\nslice {p[1]}") for p in picks]
    real_ct = [
        (
            to_physical(ct_recs[p]["image"], ct_recs[p]["value_lo"], ct_recs[p]["value_hi"], np.float64),
            f"real CT: {_name(ct_recs[p])}\nslice {p[1]}",
        )
        for p in ct_picks
    ]
    make_grid(
        real_ct,
        inputs,
        generated,
        out_png,
        src=src,
        ground_truth=_true_ct_panels(picks, gt_files) if rows == 3 else None,
        hu_window=tuple(examples["hu_window"]),
        title=_title(manifest, label, examples["hu_window"]),
        dpi=int(examples["dpi"]),
    )
    log.info("wrote %s: inputs %s, real CT %s", out_png, picks, ct_picks)
    return {"inputs": picks, "real_ct": ct_picks, "rows": rows}


def _name(rec: dict) -> str:
    """A panel's volume label, with the subject where the volume id does not contain it."""
    sub, vol = rec["subject"], rec["volume"]
    return vol if sub == vol or sub in vol else f"{sub} / {vol}"


def _true_ct_panels(picks, gt_files: dict) -> list:
    """Per picked slice, ``(true HU, head mask, label)`` from its volume's ground truth, or None."""
    panels = []
    for v, s in picks:
        item = None
        if v in gt_files:
            with np.load(gt_files[v]) as z:
                where = np.nonzero(z["slice"] == s)[0]
                if len(where):
                    k = int(where[0])
                    item = (z["hu"][k].astype(np.float64), z["mask"][k].astype(bool), f"true CT, slice {s}")
        panels.append(item)
    return panels


def _title(manifest: dict, label: str, hu_window) -> str:
    size = f"{manifest['image_size']}×{manifest['image_size']} px"
    trained_on = f"{size} windows at the stored resolution" if manifest.get("patches") else f"{size} slices"
    return (
        f"{manifest['task']}: {label} → CT generator on held-out test slices "
        f"(training step {manifest['step']}, trained on {trained_on})\n"
        f"CT shown in HU, window [{hu_window[0]:g}, {hu_window[1]:g}]; "
        f"left column: real CT test slices of other subjects (unpaired)"
    )
