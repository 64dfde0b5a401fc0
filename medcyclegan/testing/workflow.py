"""Run the real Snakefile in a scratch folder (subprocess, like a user would)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


#: the tiny built-in demo the workflow tests run (3 subjects per modality, small CT)
TINY_DEMO = {
    "demo": {"n_ct_subjects": 3, "n_mr_subjects": 3, "n_pet_subjects": 3, "ct_matrix": 128, "ct_thin_slice_mm": 1.25},
    "split": {"test_fraction": 0.34},
}

#: a training budget of a few steps on tiny networks (the DAG and the files, not the quality);
#: whole slices, so the exported generator translates a slice in one pass, not in 64 px windows
TINY_TRAINING = {
    "training": {
        "image_size": 64,
        "patches": False,
        "n_unets": 1,
        "unet_depth": 4,
        "unet_filters": 4,
        "disc_filters": 4,
        "steps": 6,
        "lr_decay_steps": 3,
        "checkpoint_every": 3,
        "log_every": 2,
        "pool_size": 2,
        "shuffle_buffer": 8,
        "tensorboard_images": False,
        # config.yaml sets each task's steps (training.tasks): the tiny budget applies to both
        "tasks": {task: {"steps": 6, "lr_decay_steps": 3} for task in ("mr2ct", "pet2ct")},
    }
}


def snakemake_command(workdir: Path, *args: str, config: str = "config.yaml") -> list[str]:
    """The command line that runs this repository's Snakefile in ``workdir`` with ``config``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / config),
        *args,
    ]


def snakemake(
    workdir: Path, *args: str, config: str = "config.yaml", timeout: int = 1200
) -> subprocess.CompletedProcess:
    cmd = snakemake_command(workdir, *args, config=config)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    if proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def write_config(workdir: Path, overrides: dict, name: str = "config.yaml", base: Path = ROOT / "config.yaml") -> Path:
    """Write ``name`` in ``workdir``: ``base`` with nested ``overrides`` applied."""
    from medcyclegan.config.validation import deep_update

    base = yaml.safe_load(Path(base).read_text())
    deep_update(base, overrides)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(yaml.safe_dump(base))
    return path


def scheduled_jobs(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    jobs: dict[str, int] = {}
    text = dry_run_output
    if "Job stats:" not in text:
        return jobs
    table = text.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m[1] != "total":
            jobs[m[1]] = int(m[2])
    return jobs
