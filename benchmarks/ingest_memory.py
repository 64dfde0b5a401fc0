#!/usr/bin/env python
"""Benchmark 7: peak memory of the `ingest` job on thin CT series of 240, 400 and 600 slices vs its declared mem_mb.

    .venv/bin/python benchmarks/ingest_memory.py            # full: target declared mem_mb > peak for every size
    .venv/bin/python benchmarks/ingest_memory.py --smoke    # one 64x64 series of 40 slices, seconds, no target

Each series is written into a temporary folder (or --workdir) and ingested in a fresh process;
the logic is in medcyclegan/bench/ingest_memory.py, the request in medcyclegan/config/job_resources.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medcyclegan.bench import cli, ct, ingest_memory  # noqa: E402


def full(args):
    return ingest_memory.run(args.workdir, sizes=ingest_memory.SIZES)


def smoke(args):
    return ingest_memory.run(
        args.workdir, sizes=(40,), matrix=64, pixel_mm=4.0, thin_mm=4.0, settings_overrides=ct.SMOKE_SETTINGS
    )


if __name__ == "__main__":
    sys.exit(cli("ingest_memory", full, smoke))
