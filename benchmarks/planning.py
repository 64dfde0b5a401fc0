#!/usr/bin/env python
"""Benchmark 5: `snakemake -n results/mr2ct/examples.png` on a finished tiny demo run.

    .venv/bin/python benchmarks/planning.py            # full: builds the tiny demo (minutes), then times
    .venv/bin/python benchmarks/planning.py --smoke    # no build: one dry run of the whole DAG

Target: no TensorFlow / Keras / TensorBoard import while planning, and <= 3 s. The measurement is
in medcyclegan/bench/planning.py; the tiny demo is the workflow tests' (medcyclegan/testing/workflow.py).
"""

import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcyclegan.bench import cli, planning, scratch_workdir  # noqa: E402
from medcyclegan.config.validation import deep_update  # noqa: E402
from medcyclegan.testing.workflow import TINY_DEMO, TINY_TRAINING, write_config  # noqa: E402


def tiny_demo(workdir: Path) -> None:
    overrides = copy.deepcopy(TINY_DEMO)
    deep_update(overrides, copy.deepcopy(TINY_TRAINING))
    write_config(workdir, overrides)


def full(args):
    workdir = Path(args.workdir or ROOT / "benchmarks_out" / "planning")
    workdir.mkdir(parents=True, exist_ok=True)
    tiny_demo(workdir)  # the same config again: a finished run stays finished
    return planning.run(workdir, build=True)


def smoke(args):
    with scratch_workdir(args.workdir, "planning_") as workdir:
        tiny_demo(workdir)
        return planning.run(workdir, build=False, repeats=1)


if __name__ == "__main__":
    sys.exit(cli("planning", full, smoke))
