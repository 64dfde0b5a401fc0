"""The training metrics: one JSON object per logged step, written as the run goes.

Each line is ``{"step": 250, "losses": {"G_mr2ct_adv": 0.41, ...}, "lr": 0.0002, "steps_per_s": 8.1}``
(losses averaged over the steps since the previous line, named as in the log line;
``steps_per_s`` is null for the first line of a run, whose window includes graph tracing).
The file lives in the checkpoint folder, so a resumed run continues it: on resume it is cut back
to the restored checkpoint's step, and the steps after it are logged again as they are retrained.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from medcyclegan.io import atomic as io

METRICS_FILE = "metrics.jsonl"


def loss_labels(src: str) -> dict[str, str]:
    """Train-step loss key -> the name in the log line and the metrics (``src``: source modality)."""
    return {
        "g_adv_ct": f"G_{src}2ct_adv",
        "g_adv_src": f"G_ct2{src}_adv",
        "cycle_src": f"cycle_{src}",
        "cycle_ct": "cycle_ct",
        "identity": "identity",
        "outline": "outline",
        "structure": "structure",
        "perceptual": "perceptual",
        "vgg_content": "vgg_content",
        "vgg_style": "vgg_style",
        "g_total": "G_total",
        "d_ct": "D_ct",
        "d_src": f"D_{src}",
    }


def read_records(path) -> list[dict]:
    """The file's records, in order; a last line cut short by a killed job is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLog:
    """Appends a run's records to ``path``, after dropping those past ``resume_step``."""

    def __init__(self, path, resume_step: int, src: str):
        self.path = Path(path)
        self.labels = loss_labels(src)
        kept = [r for r in read_records(self.path) if r.get("step", 0) <= resume_step] if self.path.exists() else []
        io.write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a")

    def append(self, step: int, losses: dict, lr: float, steps_per_s: float) -> None:
        record = {
            "step": int(step),
            "losses": {self.labels.get(k, k): float(v) for k, v in losses.items()},
            "lr": float(lr),
            "steps_per_s": float(steps_per_s) if math.isfinite(steps_per_s) else None,
        }
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def copy_to(self, dest) -> None:
        """An atomic copy of the records so far (e.g. the workflow's output of the run)."""
        self._file.flush()
        io.write_text(dest, self.path.read_text())

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
