#!/usr/bin/env python
"""Benchmark 4: per-volume time of the MR and PET ingest + preprocessing (reported, no target).

    .venv/bin/python benchmarks/mr_pet_volumes.py            # demo-generator sessions at OASIS-3 sizes
    .venv/bin/python benchmarks/mr_pet_volumes.py --smoke    # the tiny test sessions of tests/fake_trees.py

The logic is in medcyclegan/bench/volumes.py.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcyclegan.bench import cli, volumes  # noqa: E402


def tiny_sessions(workdir: Path) -> dict:
    from medcyclegan.testing.fake_trees import write_oasis_mr, write_oasis_pet

    return {
        "mr": write_oasis_mr(workdir / "mr", "OAS30001", "d0129", xnat=False, seed=1),
        "pet": write_oasis_pet(workdir / "pet", "OAS30001", "PIB", "d0140", xnat=False, old_timing=False, seed=2),
    }


def full(args):
    return volumes.run(args.workdir, repeats=3)


def smoke(args):
    return volumes.run(args.workdir, make_sessions=tiny_sessions, repeats=1)


if __name__ == "__main__":
    sys.exit(cli("mr_pet_volumes", full, smoke))
