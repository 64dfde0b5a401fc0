#!/usr/bin/env python
"""Benchmark: ``python -m medcyclegan predict`` on one MR, with and without flip averaging (reported, no target).

    .venv/bin/python benchmarks/predict_speed.py            # demo OASIS-3 T1w (256x256x176), config.yaml's mr2ct generator
    .venv/bin/python benchmarks/predict_speed.py --smoke    # a tiny generator and a small phantom MR

The logic is in medcyclegan/bench/predict.py.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcyclegan.bench import cli  # noqa: E402
from medcyclegan.bench import predict as bench  # noqa: E402


def full(args):
    return bench.run(args.workdir, repeats=3)


def smoke(args):
    return bench.run(args.workdir, make_input=bench.phantom_mr, training_overrides=bench.SMOKE_TRAINING, repeats=1)


if __name__ == "__main__":
    sys.exit(cli("predict_speed", full, smoke))
