"""MR and PET per-volume time (benchmark 4, reported; no target yet).

One OASIS-3-style T1w MR session and one dynamic PET session (the demo generator's: MR 1 mm,
256x256x176; PET 128x128x63 x 19 frames with frame timing) go through what the workflow's
``ingest`` and ``preprocess_volume`` jobs do (``workflow.jobs.ingest`` + ``workflow.jobs.preprocess`` with
the settings the rules pass from ``config.yaml``): median wall time of a few runs per step, and
the peak memory of a fresh process doing both.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medcyclegan.bench import in_fresh_process, median, rounded, scratch_workdir, workflow_settings


def demo_sessions(workdir: Path) -> dict[str, Path]:
    """One demo MR and one demo PET session (realistic OASIS-3 sizes)."""
    from medcyclegan.demo import oasis

    return {
        "mr": oasis.write_mr_session(workdir / "raw" / "mr", workdir / "gt", 0, 20191126),
        "pet": oasis.write_pet_session(workdir / "raw" / "pet", workdir / "gt", 0, 20191126),
    }


def process(modality: str, session: str | Path, out_dir: str | Path, settings: dict, threads: int = 2) -> dict:
    """``ingest`` then ``preprocess_volume`` of one session; seconds of each step and the slices kept."""
    from medcyclegan.bench import ingest_and_preprocess

    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    return ingest_and_preprocess(
        modality, session, Path(session).name, out, settings["ingest"], settings["preprocess"], threads=threads
    )


def run(
    workdir: str | Path | None = None,
    *,
    make_sessions: Callable[[Path], dict[str, Path]] = demo_sessions,
    repeats: int = 3,
    settings_overrides: dict | None = None,
) -> dict[str, Any]:
    with scratch_workdir(workdir, "bench_volumes_") as workdir:
        sessions = make_sessions(workdir)
        results: dict[str, Any] = {}
        for modality, session in sessions.items():
            settings = workflow_settings(modality, overrides=settings_overrides)
            runs = [process(modality, session, workdir / f"out_{modality}", settings) for _ in range(repeats)]
            mem = in_fresh_process(process, modality, session, workdir / f"out_{modality}_mem", settings)
            totals = [r["ingest_s"] + r["preprocess_s"] for r in runs]
            results[modality] = {
                "session": Path(session).name,
                "native_size": runs[0]["native_size"],
                "canonical_size": runs[0]["canonical_size"],
                "slices_kept": runs[0]["slices_kept"],
                "ingest_s": rounded([r["ingest_s"] for r in runs]),
                "preprocess_s": rounded([r["preprocess_s"] for r in runs]),
                "total_median_s": round(median(totals), 3),
                "peak_rss_mb": mem["peak_rss_mb"],
            }
        return {"benchmark": "mr_pet_per_volume", "repeats": repeats, "volumes": results, "met": True}
