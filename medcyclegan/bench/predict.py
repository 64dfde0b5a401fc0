"""Bring-your-own-volume synthetic CT (``python -m medcyclegan predict``): time and peak memory (reported).

A model folder is built the way training exports it (:func:`medcyclegan.inference.export.export_models`:
both SavedModels, ``manifest.json``, ``preprocessing.json``) with the generator architecture of
``config.yaml``'s ``training`` block for mr2ct (untrained weights: the compute is the same). Then
the command a user runs, ``python -m medcyclegan predict --model M --input t1w.nii.gz --output
sct.nii.gz --threads 2``, runs in its own process on one demo OASIS-3 T1w MR (256x256x176, 1 mm),
with and without ``--no-flip-average``, repetitions interleaved: wall time of the process (imports,
model loading and writing included) and its peak resident memory (``VmHWM``). The phases come
from the timestamps of its log lines. Once more with ``--output-dicom`` on top of the NIfTI run:
the DICOM CT series' extra seconds.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from medcyclegan.bench import REPO, in_fresh_process, median, rounded, scratch_workdir
from medcyclegan.bench.dag import timed_run

TASK = "mr2ct"
THREADS = 2
SMOKE_TRAINING = {"image_size": 64, "n_unets": 1, "unet_depth": 4, "unet_filters": 4, "patches": False}
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ ([\w.]+): (.*)$")


def build_model(model_dir, training_overrides: dict | None = None, task: str = TASK) -> dict:
    """Export untrained generators of the config's architecture for ``task`` as training does."""
    import keras

    from medcyclegan.config.settings import modality_settings
    from medcyclegan.config.tasks import TASKS, task_config, training_only
    from medcyclegan.config.validation import load_config
    from medcyclegan.inference.export import export_models
    from medcyclegan.training.trainer import _build_models, precision_policy

    overrides = {"training": {"tasks": {task: training_overrides}}} if training_overrides else None
    config = load_config(REPO / "config.yaml", overrides)
    cfg = training_only(task_config(config["training"], task))
    keras.utils.set_random_seed(cfg["seed"])
    models = _build_models(cfg, precision_policy(cfg), channels=1)
    export_models(
        models["g_src2ct"],
        models["g_ct2src"],
        model_dir,
        task,
        cfg["image_size"],
        step=0,
        ct_value_range=config["intensity"]["ct_window_hu"],
        fingerprint="untrained (benchmark)",
        tiled=bool(cfg.get("patches")),
        preprocessing=modality_settings(config, TASKS[task]),
    )
    keys = ("image_size", "patches", "n_unets", "unet_depth", "unet_filters", "norm", "mixed_precision")
    return {
        **{k: cfg.get(k) for k in keys},
        "generator_parameters": int(models["g_src2ct"].count_params()),
    }


def demo_mr(workdir: Path) -> Path:
    """The T1w NIfTI of one demo OASIS-3 MR session (256x256x176, 1 mm)."""
    from medcyclegan.demo import oasis

    session = oasis.write_mr_session(workdir / "raw" / "mr", workdir / "gt", 0, 20191126)
    return next(Path(session).rglob("*T1w.nii.gz"))


def phantom_mr(workdir: Path) -> Path:
    """A small phantom head MR (the smoke run's input)."""
    from medcyclegan.testing.phantoms import phantom

    path = workdir / "phantom_t1w.nii.gz"
    phantom(path, shape=(64, 72, 56), zooms=(3.0, 2.6, 3.2))
    return path


def command(model_dir: Path, source: Path, out: Path, flip_average: bool, dicom: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "medcyclegan", "predict", "--model", str(model_dir), "--input", str(source)]
    cmd += ["--output", str(out), "--threads", str(THREADS)]
    if not flip_average:
        cmd.append("--no-flip-average")
    if dicom is not None:
        cmd += ["--output-dicom", str(dicom)]
    return cmd


def phases(output: str, started: datetime, wall_s: float) -> dict[str, float]:
    """Split of one run at the predict log's head-mask line (the end of preprocessing): before it
    the interpreter start, imports, TensorFlow set-up, ingest and preprocessing; after it the
    generator loading, translation, resampling onto the input's grid and writing. Empty when the
    log has no such line."""
    for line in output.splitlines():
        m = _STAMP.match(line)
        if m and m[2] == "medcyclegan" and ": mask {" in m[3]:
            before = (datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f") - started).total_seconds()
            return {"start_to_preprocessed_s": round(before, 3), "model_translate_write_s": round(wall_s - before, 3)}
    return {}


def predict_once(cmd: list[str], log: Path) -> dict[str, Any]:
    """One ``predict`` process: wall s, peak RSS MB, phases and the JSON line it printed."""
    started = datetime.now()
    wall, peak, output = timed_run(cmd, log)
    load = round(os.getloadavg()[0], 2)  # 1-minute load average as the run ends (the machine is shared)
    info = json.loads(next(line for line in reversed(output.splitlines()) if line.startswith('{"output"')))
    return {
        "wall_s": wall,
        "peak_rss_mb": round(peak, 1),
        **phases(output, started, wall),
        "load_1min": load,
        "info": info,
    }


def run(
    workdir=None,
    *,
    make_input=demo_mr,
    training_overrides: dict | None = None,
    repeats: int = 3,
    dicom: bool = True,
) -> dict[str, Any]:
    """Build the model, then ``repeats`` rounds of predict with / without flip averaging in turn,
    then once with ``--output-dicom`` on top of the NIfTI (flip averaging)."""
    with scratch_workdir(workdir, "bench_predict_") as workdir:
        workdir = workdir.resolve()  # the predict processes run in their log's folder
        source = make_input(workdir)
        model_dir = workdir / "model"
        built = in_fresh_process(build_model, model_dir, training_overrides)
        variants = {"flip_average": True, "no_flip_average": False}
        runs: dict[str, list[dict]] = {k: [] for k in variants}
        for r in range(repeats):
            for name, flip in variants.items():
                out = workdir / "out" / f"{name}_{r}.nii.gz"
                runs[name].append(predict_once(command(model_dir, source, out, flip), workdir / f"{name}_{r}.log"))
        result: dict[str, Any] = {
            "benchmark": "predict_speed",
            "command": " ".join(command(Path("MODEL"), Path("t1w.nii.gz"), Path("sct.nii.gz"), True)),
            "input": {"file": source.name, "shape": _shape(source)},
            "model": {**built["result"], "export_s": round(built["wall_s"], 1), "weights": "untrained (random)"},
            "repeats": repeats,
            "threads": THREADS,
        }
        for name, rs in runs.items():
            result[name] = _summary(rs)
        if dicom:
            out, folder = workdir / "out" / "dicom.nii.gz", workdir / "out" / "sct_dicom"
            d = predict_once(command(model_dir, source, out, True, folder), workdir / "dicom.log")
            result["nifti_plus_dicom"] = {
                "wall_s": round(d["wall_s"], 3),
                "extra_over_nifti_median_s": round(d["wall_s"] - result["flip_average"]["wall_median_s"], 3),
                "peak_rss_mb": d["peak_rss_mb"],
                "load_1min_after": d["load_1min"],
                "dicom_files": d["info"]["dicom"]["n_files"],
                "dicom_grid": d["info"]["dicom"]["grid"],
            }
        return {**result, "met": True}


def _summary(rs: list[dict]) -> dict[str, Any]:
    info = rs[0]["info"]
    out = {
        "wall_s": rounded([r["wall_s"] for r in rs]),
        "wall_median_s": round(median([r["wall_s"] for r in rs]), 3),
        "peak_rss_mb": [r["peak_rss_mb"] for r in rs],
        "peak_rss_max_mb": max(r["peak_rss_mb"] for r in rs),
        "load_1min_after_each": [r["load_1min"] for r in rs],
        "slices_translated": info["n_slices_translated"],
        "canonical_slices": info["n_canonical_slices"],
    }
    for key in ("start_to_preprocessed_s", "model_translate_write_s"):
        if all(key in r for r in rs):
            out[key] = rounded([r[key] for r in rs])
            out[key[:-2] + "_median_s"] = round(median([r[key] for r in rs]), 3)
    return out


def _shape(path: Path) -> list[int]:
    import nibabel as nib

    return [int(v) for v in nib.load(str(path)).shape]
