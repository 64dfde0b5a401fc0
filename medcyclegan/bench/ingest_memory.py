"""Peak memory of the ``ingest`` job against the ``mem_mb`` the rule declares (benchmark 7).

A thin CT series of 400+ slices of 512x512 needs more memory in ``ingest`` than a fixed request
sized on the demo's 240 slices, and a cluster that enforces limits kills the job. This writes
CQ500-style studies of one thin series (int16 stored values, RescaleIntercept -1024, Explicit VR
Little Endian: 0.5 MB a slice) of several lengths, runs ``workflow.jobs.ingest`` on each with the
settings the ``ingest`` rule passes from ``config.yaml`` in a fresh process (its ``VmHWM``, plus
the largest decode worker's peak: the memory a scheduler sees), and compares that peak with
:func:`medcyclegan.config.job_resources.ingest_mem_mb` of the study folder.

Target: the declared ``mem_mb`` is above the measured peak for every size, for ``ingest`` and for
``preprocess_volume`` of the canonical volume ``ingest`` wrote (its own request, from the voxels).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from medcyclegan.bench import in_fresh_process, scratch_workdir, workflow_settings

SIZES = (240, 400, 600)


def write_study(root: str | Path, n_slices: int, *, matrix: int = 512, pixel_mm: float = 0.5, thin_mm: float = 0.625):
    """One CQ500-layout study with a single thin axial series of ``n_slices`` (ball head phantom
    with a headrest and mild noise, air at -1024 HU); returns the study folder."""
    from pydicom.uid import generate_uid

    from medcyclegan.testing.fake_trees import ball_head_hu, cq500_study_folder, write_dicom_slice

    series = cq500_study_folder(Path(root), n_slices, zipped_folder=True) / "CT PLAIN THIN"
    series.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    rng = np.random.default_rng(n_slices)
    half = (matrix - 1) / 2 * pixel_mm
    rows, cols = np.indices((matrix, matrix))
    z0 = -(n_slices - 1) / 2 * thin_mm
    for k in range(n_slices):
        z = z0 + k * thin_mm
        lps = np.stack([cols * pixel_mm - half, rows * pixel_mm - half, np.full(rows.shape, z)], -1)
        hu = ball_head_hu(lps) + rng.normal(0.0, 8.0, rows.shape)
        stored = np.clip(np.rint(hu) + 1024, 0, 4095).astype(np.int16)
        write_dicom_slice(
            series / f"CT{k:06d}.dcm",
            stored,
            series_uid=uid,
            description="CT PLAIN THIN",
            ipp=(-half, -half, z),
            pixel_spacing=(pixel_mm, pixel_mm),
            thickness=thin_mm,
            rescale=(1.0, -1024.0),
            instance=k + 1,
        )
    return cq500_study_folder(Path(root), n_slices, zipped_folder=True).parents[1]


def ingest_job(study: str, out_dir: str, settings: dict, threads: int = 2) -> dict[str, Any]:
    """What the ``ingest`` rule's script does for one CT study (threads as the rule's)."""
    import json

    import SimpleITK as sitk

    from medcyclegan.workflow import jobs

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)  # as workflow_scripts/ingest.py
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs.ingest("ct", study, "CQ500-CT-0", str(out / "v.nii.gz"), str(out / "v.json"), **settings)
    meta = json.loads((out / "v.json").read_text())
    if meta["status"] != "ok":
        raise RuntimeError(f"{study}: ingest rejected the study: {meta.get('rejection')}")
    return {"native_size": meta["native"]["size"], "canonical_size": meta["canonical"]["size"]}


def preprocess_job(volume: str, out_dir: str, settings: dict) -> dict[str, Any]:
    """What the ``preprocess_volume`` rule's script does with the canonical volume ``ingest`` wrote."""
    from medcyclegan.workflow import jobs

    out = Path(out_dir)
    jobs.preprocess(
        "ct", "CQ500-CT-0", volume, str(out / "v.npz"), str(out / "v.csv"), str(out / "m.nii.gz"), **settings
    )
    return {}


def run(
    workdir: str | Path | None = None,
    *,
    sizes=SIZES,
    matrix: int = 512,
    pixel_mm: float = 0.5,
    thin_mm: float = 0.625,
    repeats: int = 1,
    settings_overrides: dict | None = None,
) -> dict[str, Any]:
    """Write one study per size, measure each ingest's peak (the largest of ``repeats`` fresh
    processes) and the rule's declared ``mem_mb`` and ``runtime`` for it."""
    from medcyclegan.config import job_resources

    settings = workflow_settings("ct", overrides=settings_overrides)
    rows = []
    with scratch_workdir(workdir, "bench_ingest_mem_") as workdir:
        for n in sizes:
            t0 = time.perf_counter()
            study = write_study(workdir / f"n{n}", n, matrix=matrix, pixel_mm=pixel_mm, thin_mm=thin_mm)
            write_s = time.perf_counter() - t0
            size = job_resources.source_bytes(study)
            outs = [workdir / f"out{n}_{r}" for r in range(repeats)]
            runs = [in_fresh_process(ingest_job, str(study), str(out), settings["ingest"]) for out in outs]
            peak = max(r["peak_rss_mb"] for r in runs)
            volume = outs[0] / "v.nii.gz"
            pre = in_fresh_process(preprocess_job, str(volume), str(outs[0]), settings["preprocess"])
            declared = job_resources.ingest_mem_mb(size)
            rows.append(
                {
                    "slices": n,
                    "matrix": matrix,
                    "input_mb": round(size / 2**20, 1),
                    "peak_mb": peak,
                    "own_peak_mb": [r["own_peak_rss_mb"] for r in runs],
                    "workers_peak_mb": [r["workers_peak_rss_mb"] for r in runs],
                    "wall_s": [round(r["wall_s"], 2) for r in runs],
                    "declared_mem_mb": declared,
                    "declared_runtime_min": job_resources.ingest_runtime_min(size),
                    "headroom_mb": round(declared - peak, 1),
                    "write_s": round(write_s, 1),
                    "canonical_mb": round(volume.stat().st_size / 2**20, 1),
                    "preprocess_peak_mb": pre["peak_rss_mb"],
                    "preprocess_declared_mem_mb": job_resources.preprocess_mem_mb(job_resources.nifti_voxels(volume)),
                    "preprocess_wall_s": round(pre["wall_s"], 2),
                    **runs[0]["result"],
                }
            )
    return {
        "benchmark": "ingest_memory",
        "what": "peak RSS of workflow.jobs.ingest (fresh process) vs the ingest rule's mem_mb",
        "rows": rows,
        "table": table(rows),
        "met": all(
            r["declared_mem_mb"] > r["peak_mb"] and r["preprocess_declared_mem_mb"] > r["preprocess_peak_mb"]
            for r in rows
        ),
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as Markdown: slices, input MB, peak MB, declared mem_mb."""
    out = ["| slices | input MB | peak MB | declared mem_mb |", "|---|---|---|---|"]
    out += [f"| {r['slices']} | {r['input_mb']} | {r['peak_mb']:.0f} | {r['declared_mem_mb']} |" for r in rows]
    return out
