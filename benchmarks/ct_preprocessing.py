#!/usr/bin/env python
"""Benchmark 1: CT preprocessing (ingest + preprocess of one 512x512x240 study) vs the pydicom decode floor.

    .venv/bin/python benchmarks/ct_preprocessing.py            # full: target (b)/(a) <= 1.5, peak <= 2 GB
    .venv/bin/python benchmarks/ct_preprocessing.py --smoke    # tiny series, seconds, no target

The logic is in medcyclegan/bench/ct.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medcyclegan.bench import cli, ct  # noqa: E402


def full(args):
    return ct.run(args.workdir, matrix=512, thin_mm=0.625, repeats=5)


def smoke(args):
    return ct.run(args.workdir, matrix=64, thin_mm=4.0, repeats=1, settings_overrides=ct.SMOKE_SETTINGS)


if __name__ == "__main__":
    sys.exit(cli("ct_preprocessing", full, smoke))
