#!/usr/bin/env python
"""Benchmark: validation and test scores of both tasks for 3 training seeds, and the targets they must meet.

    .venv/bin/python benchmarks/synthesis_quality.py           # demo data, config.yaml's budget, seeds 1234, 1, 2
    .venv/bin/python benchmarks/synthesis_quality.py --tasks mr2ct --seeds 1234 1   # a part of it
    .venv/bin/python benchmarks/synthesis_quality.py --smoke   # a tiny demo and network, mr2ct, 2 seeds

The logic is in medcyclegan/bench/synthesis_quality.py.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcyclegan.bench import cli  # noqa: E402
from medcyclegan.bench import synthesis_quality as bench  # noqa: E402

parser = argparse.ArgumentParser(add_help=False)
parser.add_argument("--tasks", nargs="+", choices=bench.TASKS, default=list(bench.TASKS))
parser.add_argument("--seeds", nargs="+", type=int, default=list(bench.SEEDS))
CHOSEN, REST = parser.parse_known_args()


def full(args):
    return bench.run(args.workdir, seeds=CHOSEN.seeds, tasks=CHOSEN.tasks)


def smoke(args):
    from medcyclegan.config.validation import deep_update
    from medcyclegan.testing.workflow import TINY_TRAINING

    overrides = deep_update(dict(bench.SMOKE_CONFIG), TINY_TRAINING)
    return bench.run(args.workdir, seeds=bench.SMOKE_SEEDS, tasks=bench.SMOKE_TASKS, overrides=overrides)


if __name__ == "__main__":
    sys.exit(cli("synthesis_quality", full, smoke, argv=REST))
