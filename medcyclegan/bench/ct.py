"""CT preprocessing versus the DICOM decode floor (benchmark 1).

One 512x512x240 thin CQ500-style series (the demo generator's, JPEG 2000 lossless as in CQ500)
is written twice: as generated (JPEG 2000 lossless) and decompressed (Explicit VR Little
Endian). For each variant:

(a) the floor: ``pydicom.dcmread`` + ``pixel_array`` of every file of the series, nothing else;
(b) the project's full per-study work: ``workflow.jobs.ingest`` (series listing and selection, read,
    HU, geometry, canonical 1 mm grid, NIfTI + info JSON) then ``workflow.jobs.preprocess`` (head mask,
    useful slices, 256x256 window, [-1, 1], npz + csv + mask NIfTI), with the settings the
    workflow's ``ingest`` and ``preprocess_volume`` rules pass from ``config.yaml``.

Target: median (b) / median (a) <= 1.5 for both variants; peak memory of (b) (a fresh process
doing both steps, imports included) <= 2 GB.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from medcyclegan.bench import in_fresh_process, interleaved, median, rounded, scratch_workdir, workflow_settings

#: config overrides of the smoke runs: every step of a CT job on a small grid, in seconds
SMOKE_SETTINGS = {
    "ct_series": {"min_slices": 8, "max_slice_thickness_mm": 8.0},
    "geometry": {"spacing_mm": [4.0, 4.0, 4.0]},
    "slicing": {"size": 64},
}

MAX_RATIO = 1.5
MAX_PEAK_MB = 2048.0
VOLUME_ID = "CQ500-CT-0"


def make_series(workdir: str | Path, *, matrix: int = 512, thin_mm: float = 0.625, seed: int = 20191126) -> dict:
    """Write the demo's thin CT series as two one-series studies: ``{"jpeg2000": study, "uncompressed": study}``."""
    import pydicom

    from medcyclegan.demo import cq500

    workdir = Path(workdir)
    gen = cq500.write_ct_study(workdir / "generated", 0, seed, matrix=matrix, thin_mm=thin_mm, thick_mm=5.0)
    thin = None
    for series in sorted(gen.glob("*/Unknown Study/*")):
        first = next(iter(sorted(series.glob("*.dcm"))))
        if pydicom.dcmread(first, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed:
            thin = series
    if thin is None:
        raise RuntimeError(f"{gen}: the demo study has no compressed (thin) series")
    inner = thin.relative_to(gen)  # "CQ500CT0 CQ500CT0/Unknown Study/CT <thin>"
    studies = {}
    for variant in ("jpeg2000", "uncompressed"):
        study = workdir / variant / VOLUME_ID
        (study / inner).mkdir(parents=True)
        for f in sorted(thin.glob("*.dcm")):
            if variant == "jpeg2000":
                shutil.copy2(f, study / inner / f.name)
            else:
                ds = pydicom.dcmread(f)
                ds.decompress(decoding_plugin="pylibjpeg", generate_instance_uid=False)
                ds.save_as(study / inner / f.name, enforce_file_format=True)
        studies[variant] = study
    shutil.rmtree(workdir / "generated")
    return studies


def series_files(study: str | Path) -> list[Path]:
    return sorted(Path(study).rglob("*.dcm"))


def bare_read(files: list[Path]) -> int:
    """The floor: read and decode every file with pydicom, nothing else."""
    import pydicom

    n = 0
    for f in files:
        n += pydicom.dcmread(f).pixel_array.size
    return n


def full_processing(study: str | Path, out_dir: str | Path, settings: dict, threads: int = 2) -> dict:
    """What the ``ingest`` and ``preprocess_volume`` jobs of one CT study do; returns a summary."""
    from medcyclegan.bench import ingest_and_preprocess

    r = ingest_and_preprocess(
        "ct", study, VOLUME_ID, out_dir, settings["ingest"], settings["preprocess"], threads=threads
    )
    return {k: r[k] for k in ("native_size", "canonical_size", "slices_kept")}


def unavoidable_steps(study: str | Path, settings: dict, repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` seconds of single steps that any version of (b) must do, each alone:
    reading the selected series into one HU volume, resampling it to the canonical grid (linear,
    no anti-aliasing: the cheapest resampling) and writing that grid as int16 ``.nii.gz``. Their
    sum against the floor shows how close to it (b) could ever get."""
    import time

    import SimpleITK as sitk

    from medcyclegan.ingest.ct import ingest_ct_study
    from medcyclegan.preprocessing.geometry import canonical_grid

    def best(step):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = step()
            times.append(time.perf_counter() - t0)
        return min(times), result

    read_s, (img, _) = best(lambda: ingest_ct_study(study, settings["ingest"]["ct_series"]))
    grid = canonical_grid(img, settings["ingest"]["spacing_mm"])
    resample_s, canonical = best(lambda: sitk.Resample(img, grid, sitk.Transform(), sitk.sitkLinear, -1024.0))
    as_int16 = sitk.Cast(canonical, sitk.sitkInt16)
    with scratch_workdir(None, "bench_ct_write_") as tmp:
        write_s, _ = best(lambda: sitk.WriteImage(as_int16, str(tmp / "canonical.nii.gz"), useCompression=True))
    return {
        "read_series_hu_s": round(read_s, 3),
        "resample_linear_s": round(resample_s, 3),
        "write_nii_gz_s": round(write_s, 3),
    }


def run(
    workdir: str | Path | None = None,
    *,
    matrix: int = 512,
    thin_mm: float = 0.625,
    repeats: int = 5,
    settings_overrides: dict | None = None,
    profile_to: str | Path | None = None,
) -> dict[str, Any]:
    """Generate the two series, time (a) and (b) interleaved, measure (b)'s peak memory."""
    with scratch_workdir(workdir, "bench_ct_") as workdir:
        studies = make_series(workdir, matrix=matrix, thin_mm=thin_mm)
        settings = workflow_settings("ct", overrides=settings_overrides)
        results: dict[str, Any] = {}
        for variant, study in studies.items():
            files = series_files(study)
            summary: dict[str, Any] = {}

            def floor(files=files):
                bare_read(files)

            def full(study=study, variant=variant, summary=summary):
                out = workdir / f"out_{variant}"
                shutil.rmtree(out, ignore_errors=True)
                summary.update(full_processing(study, out, settings))

            times = interleaved({"floor": floor, "full": full}, repeats=repeats)
            mem = in_fresh_process(full_processing, study, workdir / f"out_{variant}_mem", settings)
            ratio = median(times["full"]) / median(times["floor"])
            results[variant] = {
                "files": len(files),
                "series_mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
                **summary,
                "floor_s": rounded(times["floor"]),
                "full_s": rounded(times["full"]),
                "floor_median_s": round(median(times["floor"]), 3),
                "full_median_s": round(median(times["full"]), 3),
                "ratio": round(ratio, 3),
                "full_peak_rss_mb": mem["peak_rss_mb"],
                "full_peak_rss_detail_mb": {
                    "own": mem["own_peak_rss_mb"],
                    "largest_worker": mem["workers_peak_rss_mb"],
                },
                "unavoidable_steps_s": unavoidable_steps(study, settings),
            }
            if profile_to:
                import cProfile

                out = workdir / f"out_{variant}_prof"
                cProfile.runctx(
                    "full_processing(study, out, settings)",
                    globals(),
                    {"study": study, "out": out, "settings": settings, "full_processing": full_processing},
                    filename=str(Path(profile_to).with_suffix(f".{variant}.prof")),
                )
        return {
            "benchmark": "ct_preprocessing_vs_decode_floor",
            "series": {"matrix": matrix, "thin_mm": thin_mm, "repeats": repeats},
            "targets": {"max_ratio": MAX_RATIO, "max_peak_rss_mb": MAX_PEAK_MB},
            "variants": results,
            "met": all(r["ratio"] <= MAX_RATIO and r["full_peak_rss_mb"] <= MAX_PEAK_MB for r in results.values()),
        }
