"""Training curves for the report, parsed from the training job's log.

The training loop logs a line every ``training.log_every`` steps::

    ... step 250/2500 G_mr2ct_adv=0.4121 cycle_mr=0.0712 ... D_ct=0.2301 lr=0.0005 8.12 steps/s eta 277 s

(losses averaged over the steps since the previous line). A resumed run logs from its resume step on.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

log = logging.getLogger(__name__)

_LINE = re.compile(r"\bstep (\d+)/(\d+) (.*?)\s*lr=(\S+)")
_PAIR = re.compile(r"(\S+)=(-?[\d.]+(?:e[-+]?\d+)?|nan|inf)", re.I)


def parse_training_log(path) -> dict[str, list[tuple[int, float]]]:
    """``{series: [(step, value), ...]}`` for every loss and the learning rate (``lr``)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        m = _LINE.search(line)
        if not m:
            continue
        step = int(m[1])
        for name, value in _PAIR.findall(m[3]):
            series.setdefault(name, []).append((step, float(value)))
        try:
            series.setdefault("lr", []).append((step, float(m[4])))
        except ValueError:
            pass
    return series


def plot_training_curves(log_path, out_png, title: str = "") -> dict[str, list[tuple[int, float]]]:
    """Losses of the generators (left) and discriminators (right), learning rate below, to ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = parse_training_log(log_path)
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
        "no training log lines found"
        if not n
        else "last logged values:\n" + "\n".join(f"{k} = {v:.4g}" for k, v in sorted(last.items()))
    )
    axes[1, 1].text(0, 1, text, va="top", family="monospace", fontsize=8)
    fig.suptitle(f"{title} training".strip())
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    log.info("%d logged points of %d series -> %s", n, len(series), out_png)
    return series
