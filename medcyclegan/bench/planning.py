"""Planning cost (benchmark 5): ``snakemake -n`` of the main target on a finished demo run.

Every ``snakemake`` command parses the workflow and builds the DAG first, and on a cluster every
job parses it again; importing TensorFlow or Keras there costs seconds per command and per job.
Measured: the wall time of the dry run (median of a few, after a warm-up), the same for
``python -c "import snakemake"`` (the floor no workflow can go below), and which modules the dry
run imports (``python -X importtime``): TensorFlow, Keras and TensorBoard must not be among them.

Target: no such import, and a dry run <= MAX_WALL_S.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from medcyclegan.bench import REPO, interleaved, median, rounded

MAX_WALL_S = 3.0
HEAVY = ("tensorflow", "keras", "tensorboard")
TARGET = "results/mr2ct/examples.png"


def snakemake_command(workdir: Path, *python_flags: str, dry_run: bool = True) -> list[str]:
    """``snakemake [-n] TARGET`` in ``workdir`` (the target first: ``--configfile`` takes every word after it)."""
    return [
        sys.executable,
        *python_flags,
        "-m",
        "snakemake",
        TARGET,
        *(["-n"] if dry_run else []),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
    ]


def _checked(cmd: list[str], cwd: Path, timeout: int = 3600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def heavy_modules(importtime_output: str) -> list[str]:
    """The TensorFlow / Keras / TensorBoard modules named in ``python -X importtime``'s output."""
    lines = (line for line in importtime_output.splitlines() if line.startswith("import time:"))
    names = {line.rsplit("|", 1)[-1].strip() for line in lines}
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


def heavy_imports(workdir: Path) -> list[str]:
    """The heavy modules the dry run imports."""
    return heavy_modules(_checked(snakemake_command(workdir, "-X", "importtime"), workdir).stderr)


def finish(workdir: Path, cores: int = 2) -> float:
    """Run the main target to completion (nothing happens when it is up to date); wall seconds."""
    t0 = time.perf_counter()
    _checked([*snakemake_command(workdir, dry_run=False), "-j", str(cores)], workdir)
    return time.perf_counter() - t0


def run(workdir: str | Path, *, build: bool, repeats: int = 5) -> dict[str, Any]:
    """Time the dry run in ``workdir`` (which holds ``config.yaml``); ``build`` first runs the main
    target to completion, so the dry run plans a finished workflow (nothing to do)."""
    workdir = Path(workdir).resolve()
    build_s = finish(workdir) if build else None
    output = _checked(snakemake_command(workdir), workdir)
    finished = "Nothing to be done" in output.stdout + output.stderr
    if build and not finished:
        raise RuntimeError(f"the dry run after the build still has jobs to do:\n{output.stdout[-3000:]}")
    times = interleaved(
        {
            "dry_run": lambda: _checked(snakemake_command(workdir), workdir),
            "import_snakemake": lambda: _checked([sys.executable, "-c", "import snakemake.api"], workdir),
        },
        repeats=repeats,
    )
    heavy = heavy_imports(workdir)
    wall = median(times["dry_run"])
    return {
        "benchmark": "planning",
        "command": f"snakemake -n {TARGET}",
        "workflow_finished": finished,
        "build_s": round(build_s, 1) if build_s is not None else None,
        "wall_s": rounded(times["dry_run"], 2),
        "wall_median_s": round(wall, 2),
        "import_snakemake_median_s": round(median(times["import_snakemake"]), 2),
        "heavy_imports": heavy,
        "targets": {"max_wall_s": MAX_WALL_S, "heavy_imports": []},
        "met": not heavy and wall <= MAX_WALL_S,
    }
