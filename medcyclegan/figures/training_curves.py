"""The training-curves figure of the report: generator and discriminator losses, learning rate."""

from __future__ import annotations

import logging
import math

from medcyclegan.io import atomic as io
from medcyclegan.training.curves import read_training_curves

log = logging.getLogger(__name__)


def plot_training_curves(metrics_path, out_png, title: str = "") -> dict[str, list[tuple[int, float]]]:
    """Losses of the generators (left) and discriminators (right), learning rate below, to ``out_png``.

    ``metrics_path``: the run's JSON-lines metrics. Returns the plotted series.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_training_curves(metrics_path)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), gridspec_kw={"height_ratios": [3, 1]})
    panels = [
        (axes[0, 0], "generator losses", lambda k: not k.startswith("D_") and k != "lr"),
        (axes[0, 1], "discriminator losses", lambda k: k.startswith("D_")),
    ]
    for ax, name, keep in panels:
        for key, points in series.items():
            if keep(key) and points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=key, lw=1.2)
        ax.set_title(name)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7, ncol=2)
    ax = axes[1, 0]
    if series.get("lr"):
        steps, values = zip(*series["lr"])
        ax.plot(steps, values, color="k", lw=1.2)
    ax.set_title("learning rate")
    ax.set_xlabel("step")
    axes[1, 1].axis("off")
    n = max((len(v) for v in series.values()), default=0)
    last = {k: v[-1][1] for k, v in series.items() if v and k != "lr" and math.isfinite(v[-1][1])}
    text = (
        "no logged training steps"
        if not n
        else "last logged values:\n" + "\n".join(f"{k} = {v:.4g}" for k, v in sorted(last.items()))
    )
    axes[1, 1].text(0, 1, text, va="top", family="monospace", fontsize=8)
    fig.suptitle(f"{title} training".strip())
    fig.tight_layout()
    io.write_figure(out_png, fig, dpi=100)
    plt.close(fig)
    log.info("%d logged points of %d series -> %s", n, len(series), out_png)
    return series
