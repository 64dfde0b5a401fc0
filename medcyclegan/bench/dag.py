"""DAG scale (benchmark 2): ``snakemake -n`` to the TFRecords on a large raw tree.

The tree (500 CQ500 studies, 2,800 OASIS-3 MR and 1,600 PET sessions at full size) has the real
folder layouts with EMPTY image files: planning must open no image file. Measured: wall time and
peak resident memory of the ``snakemake -n`` process (its ``VmHWM``), median of a few runs; and,
where ``strace`` is installed, every file the planning process opened under the raw tree (must be
none; folders are listed, never files read). For scale, the same ``snakemake -n`` of a minimal
Snakefile with two trivial jobs per volume (Snakemake's own planning cost on this machine) runs
interleaved with it.

Target: <= 15 s and <= 1 GB.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from medcyclegan.bench import REPO, median, rounded

MAX_WALL_S = 15.0
MAX_PEAK_MB = 1024.0


def targets() -> list[str]:
    return [f"results/tfrecords/{m}/{s}.tfrecord" for m in ("ct", "mr", "pet") for s in ("train", "test")]


def write_config(workdir: Path, data_dirs: dict) -> Path:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["data"].update(data_dirs)
    cfg["results_dir"] = "results"
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def command(workdir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "-n",
        *extra,
        *targets(),
    ]


FLOOR_SNAKEFILE = """\
# Snakemake's own cost per job: the same number of volumes, two trivial jobs each
VOLUMES = [f"v{{i:05d}}" for i in range({n})]


rule all:
    input:
        expand("b/{{volume}}.txt", volume=VOLUMES),


rule a:
    output:
        "a/{{volume}}.txt",
    shell:
        "touch {{output}}"


rule b:
    input:
        "a/{{volume}}.txt",
    output:
        "b/{{volume}}.txt",
    shell:
        "touch {{output}}"
"""


def floor_command(workdir: Path, n_volumes: int) -> list[str]:
    """``snakemake -n`` of a minimal workflow with two trivial jobs per volume: what Snakemake
    itself needs on this machine to plan that many jobs, whatever the rules do."""
    floor = workdir / "snakemake_floor"
    floor.mkdir(parents=True, exist_ok=True)
    (floor / "Snakefile").write_text(FLOOR_SNAKEFILE.format(n=n_volumes))
    return [sys.executable, "-m", "snakemake", "-s", str(floor / "Snakefile"), "-d", str(floor), "-n", "--cores", "1"]


def _vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def timed_run(cmd: list[str], log: Path) -> tuple[float, float, str]:
    """(wall s, peak RSS MB of the process, its output); raises on a non-zero exit.

    The peak is the process's ``VmHWM`` (read every 20 ms while it runs; it only grows), not
    ``ru_maxrss`` from ``wait4``, which Linux carries over from the parent's pages at fork + exec.
    """
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
        peak = 0.0
        while True:
            peak = max(peak, _vm_hwm_mb(proc.pid))
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return wall, peak, text


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of ``snakemake -n``."""
    counts: dict[str, int] = {}
    table = dry_run_output.split("Job stats:", 1)[-1]
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if m and m[1] != "total":
            counts[m[1]] = int(m[2])
    return counts


def files_opened(cmd: list[str], roots: list[str], log: Path) -> list[str] | None:
    """Files (not folders) under ``roots`` that the command opens, from ``strace``; None without strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    trace = log.with_suffix(".strace")
    proc = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(trace), *cmd],
        capture_output=True,
        text=True,
        cwd=log.parent,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"strace {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    roots = [os.path.realpath(r) for r in roots]
    opened = set()
    for line in trace.read_text().splitlines():
        m = re.search(r'open(?:at2?)?\((?:[^,]+, )?"([^"]+)", ([^)]*)\)', line)
        if not m or "O_DIRECTORY" in m[2]:
            continue
        path = os.path.realpath(os.path.join(log.parent, m[1]))
        if any(path == r or path.startswith(r + os.sep) for r in roots) and not os.path.isdir(path):
            opened.add(path)
    trace.unlink()
    return sorted(opened)


def run(
    workdir: str | Path,
    build_tree: Callable[..., dict],
    *,
    n_ct: int = 500,
    n_mr: int = 2800,
    n_pet: int = 1600,
    repeats: int = 3,
    ct_slices: int = 240,
) -> dict[str, Any]:
    """Build the empty raw tree with ``build_tree(root, n_ct, n_mr, n_pet, ct_slices=...)``
    (medcyclegan/testing/fake_trees.py: build_empty_layout_tree) and time ``snakemake -n`` to the TFRecords."""
    workdir = Path(workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    t0 = time.perf_counter()
    dirs = build_tree(workdir / "raw", n_ct, n_mr, n_pet, ct_slices=ct_slices)
    tree_s = time.perf_counter() - t0
    n_files = sum(len(files) for _, _, files in os.walk(workdir / "raw"))
    write_config(workdir, dirs)
    cmd = command(workdir)
    log = workdir / "dryrun.log"
    walls, peaks, text = [], [], ""
    floor_walls, floor_text = [], ""
    floor_cmd = floor_command(workdir, n_ct + n_mr + n_pet)
    for _ in range(repeats):  # interleaved with the same job count in a minimal workflow
        wall, peak, text = timed_run(cmd, log)
        walls.append(wall)
        peaks.append(peak)
        wall, _, floor_text = timed_run(floor_cmd, workdir / "snakemake_floor" / "dryrun.log")
        floor_walls.append(wall)
    counts = job_counts(text)
    expected = {"ingest": n_ct + n_mr + n_pet, "preprocess_volume": n_ct + n_mr + n_pet, "split": 3, "tfrecords": 6}
    wrong = {k: (counts.get(k), v) for k, v in expected.items() if counts.get(k) != v}
    if wrong:
        raise RuntimeError(f"snakemake -n scheduled unexpected job counts (got, expected): {wrong}")
    opened = files_opened(cmd, list(dirs.values()), log)
    if opened:
        raise RuntimeError(f"planning the workflow opened {len(opened)} raw files, e.g. {opened[:5]}")
    wall, peak = median(walls), max(peaks)
    return {
        "benchmark": "dag_scale",
        "tree": {
            "ct_studies": n_ct,
            "mr_sessions": n_mr,
            "pet_sessions": n_pet,
            "files": n_files,
            "build_s": round(tree_s, 1),
        },
        "command": "snakemake -n " + " ".join(targets()),
        "jobs": counts,
        "jobs_total": sum(counts.values()),
        "wall_s": rounded(walls, 2),
        "wall_median_s": round(wall, 2),
        "peak_rss_mb": round(peak, 1),
        "snakemake_floor": {
            "what": "snakemake -n of a minimal Snakefile: two `touch` jobs per volume, same volume count",
            "jobs_total": sum(job_counts(floor_text).values()),
            "wall_s": rounded(floor_walls, 2),
            "wall_median_s": round(median(floor_walls), 2),
        },
        "ratio_to_floor": round(wall / median(floor_walls), 2),
        "raw_files_opened": opened if opened is not None else "not checked (strace not installed)",
        "targets": {"max_wall_s": MAX_WALL_S, "max_peak_rss_mb": MAX_PEAK_MB},
        "met": wall <= MAX_WALL_S and peak <= MAX_PEAK_MB,
    }
