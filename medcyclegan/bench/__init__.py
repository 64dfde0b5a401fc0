"""Benchmarks of the workflow's hot paths (``benchmarks/*.py`` are thin command-line wrappers).

Every benchmark compares two things measured in ONE run on the same machine (a ratio to a floor
or to a reference), interleaving repetitions and taking medians, so the figure holds on a noisy,
shared machine. Helpers here: machine description, peak memory of a function run in a fresh
process, interleaved timing.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medcyclegan.config.resources import available_cores

REPO = Path(__file__).resolve().parents[2]


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, memory, load and the versions that matter for the figures."""
    info: dict[str, Any] = {"nproc": available_cores(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    info["loadavg_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    info["python"] = sys.version.split()[0]
    from importlib import metadata

    versions = {}
    for dist in (
        "pydicom",
        "pylibjpeg-openjpeg",
        "numpy",
        "scipy",
        "SimpleITK",
        "tensorflow-cpu",
        "tensorflow",
        "snakemake",
    ):
        try:  # distribution metadata only: importing TensorFlow here would cost seconds
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    info["versions"] = versions
    return info


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): ``VmHWM`` of /proc/self/status.

    Not ``ru_maxrss``: Linux carries that across ``execve`` from the forked copy of the parent,
    so a freshly spawned process would report its (large) parent's resident size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measured_child(conn, fn: Callable, args: tuple, kwargs: dict) -> None:
    try:
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        wall = time.perf_counter() - t0
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        conn.send(("ok", result, wall, peak_rss_mb(), children))
    except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}", 0.0, 0.0, 0.0))
    finally:
        conn.close()


def in_fresh_process(fn: Callable, *args, **kwargs) -> dict[str, Any]:
    """Run ``fn`` (a module-level function) in a new interpreter (spawned, not daemonic, so it
    may start workers of its own); its result, wall time and peak resident memory in MB: the
    process's own peak (imports included, as a Snakemake job) plus the largest peak among the
    processes it started (an upper bound: forked workers share their parent's pages)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_measured_child, args=(child, fn, args, kwargs))
    proc.start()
    child.close()
    try:
        status, result, wall, own, children = parent.recv()
    except EOFError:
        status, result, wall, own, children = "error", "the process died without an answer", 0.0, 0.0, 0.0
    proc.join()
    if status != "ok" or proc.exitcode != 0:
        raise RuntimeError(f"{getattr(fn, '__name__', fn)} in a fresh process failed (exit {proc.exitcode}): {result}")
    return {
        "result": result,
        "wall_s": wall,
        "peak_rss_mb": round(own + children, 1),
        "own_peak_rss_mb": round(own, 1),
        "workers_peak_rss_mb": round(children, 1),
    }


def workflow_settings(modality: str, config_path: str | Path = REPO / "config.yaml", overrides: dict | None = None):
    """``{"ingest": kwargs, "preprocess": kwargs}``: what the ``ingest`` and ``preprocess_volume``
    rules pass for ``modality`` (:mod:`medcyclegan.config.settings`) with this config."""
    from medcyclegan.config.settings import ingest_settings, modality_settings, preprocess_settings
    from medcyclegan.config.validation import load_config

    settings = modality_settings(load_config(config_path, overrides), modality)
    return {"ingest": ingest_settings(settings), "preprocess": preprocess_settings(settings)}


def ingest_and_preprocess(
    modality: str, source, volume_id: str, out_dir, ingest_kw: dict, preprocess_kw: dict, threads: int = 2
) -> dict[str, Any]:
    """What the ``ingest`` and ``preprocess_volume`` jobs of one volume do, through the package's
    own entry points; raises if either step rejects the volume. Seconds of each step, sizes, slices kept."""
    import json

    import SimpleITK as sitk

    from medcyclegan.io.slices import read_stack
    from medcyclegan.workflow import jobs

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)  # as workflow_scripts/ingest.py
    out = Path(out_dir)
    vol, info, npz = (out / f"{volume_id}{ext}" for ext in (".nii.gz", ".json", ".npz"))
    t0 = time.perf_counter()
    jobs.ingest(modality, str(source), volume_id, str(vol), str(info), **ingest_kw)
    t1 = time.perf_counter()
    jobs.preprocess(
        modality,
        volume_id,
        str(vol),
        str(npz),
        str(out / f"{volume_id}.csv"),
        str(out / f"{volume_id}_mask.nii.gz"),
        **preprocess_kw,
    )
    t2 = time.perf_counter()
    meta = json.loads(info.read_text())
    if meta["status"] != "ok":
        raise RuntimeError(f"{source}: ingest rejected the volume: {meta.get('rejection')}")
    stack, rejection = read_stack(npz)
    if rejection is not None:
        raise RuntimeError(f"{source}: preprocessing rejected the volume: {rejection['reason']}")
    kept = int(stack["images"].shape[0])
    if kept == 0:
        raise RuntimeError(f"{source}: no slice kept")
    return {
        "ingest_s": t1 - t0,
        "preprocess_s": t2 - t1,
        "native_size": meta["native"]["size"],
        "canonical_size": meta["canonical"]["size"],
        "slices_kept": kept,
    }


@contextlib.contextmanager
def scratch_workdir(workdir, prefix: str):
    """An emptied ``workdir`` for a benchmark's generated data; without one, a temporary folder
    that is removed afterwards (a given ``workdir`` is kept for inspection)."""
    own = workdir is None
    path = Path(tempfile.mkdtemp(prefix=prefix)) if own else Path(workdir)
    try:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        yield path
    finally:
        if own:
            shutil.rmtree(path, ignore_errors=True)


def interleaved(funcs: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times of each function, run in turn (a, b, a, b, ...) ``repeats`` times after
    ``warmup`` untimed rounds, so both see the same machine load."""
    for _ in range(warmup):
        for fn in funcs.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in funcs}
    for _ in range(repeats):
        for name, fn in funcs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(values) -> float:
    return float(statistics.median(values))


def rounded(values, nd: int = 3) -> list[float]:
    return [round(float(v), nd) for v in values]


def cli(name: str, full: Callable[[Any], dict], smoke: Callable[[Any], dict], argv=None) -> int:
    """Command line of a benchmark script: ``--smoke`` (tiny sizes, checks the code path, never the
    target) or full mode (exit status 1 when the target is missed); JSON on stdout (and ``--json``).
    Errors raise, so the exit status is non-zero on any failure in both modes."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog=name, description=(sys.modules[full.__module__].__doc__ or "").split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, checks the code path, no target")
    parser.add_argument("--workdir", help="where generated data goes (default: a temporary folder, removed after)")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    result = (smoke if args.smoke else full)(args)
    result = {**result, "mode": "smoke" if args.smoke else "full", "bench_wall_s": round(time.perf_counter() - t0, 1)}
    result["machine"] = machine_info()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        from medcyclegan.io.atomic import write_text

        write_text(args.json, text + "\n")
    if args.smoke:
        return 0
    if not result.get("met", False):
        print(f"{name}: target missed", file=sys.stderr)
        return 1
    return 0
