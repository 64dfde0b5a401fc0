#!/usr/bin/env python
"""Benchmark 2: `snakemake -n` to the TFRecords on 500 CQ500 studies + 2,800 MR + 1,600 PET sessions.

    .venv/bin/python benchmarks/dag_scale.py            # full: target <= 15 s and <= 1 GB
    .venv/bin/python benchmarks/dag_scale.py --smoke    # 3 + 3 + 3 volumes, no target

The raw tree (real CQ500 / OASIS-3 folder layouts, EMPTY image files) comes from
medcyclegan/testing/fake_trees.py (build_empty_layout_tree); the measurement is in medcyclegan/bench/dag.py.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcyclegan.bench import cli, dag  # noqa: E402
from medcyclegan.testing.fake_trees import build_empty_layout_tree  # noqa: E402


def workdir(args, name):
    return args.workdir or str(ROOT / "benchmarks_out" / name)


def full(args):
    return dag.run(workdir(args, "dag_scale"), build_empty_layout_tree, n_ct=500, n_mr=2800, n_pet=1600, repeats=3)


def smoke(args):
    return dag.run(
        workdir(args, "dag_scale_smoke"), build_empty_layout_tree, n_ct=3, n_mr=3, n_pet=3, repeats=1, ct_slices=4
    )


if __name__ == "__main__":
    sys.exit(cli("dag_scale", full, smoke))
