#!/usr/bin/env python
"""Benchmark 3: training steps/s fed from the TFRecords vs fed one cached in-memory batch.

    .venv/bin/python benchmarks/input_pipeline.py            # full: config.yaml's training budget, target >= 0.95
    .venv/bin/python benchmarks/input_pipeline.py --smoke    # tiny networks, a few steps, no target

The logic is in medcyclegan/bench/input_pipeline.py (the real train step and tf.data input).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medcyclegan.bench import cli, input_pipeline  # noqa: E402

SMOKE_TRAINING = {
    "image_size": 32,
    "n_unets": 1,
    "unet_depth": 3,
    "unet_filters": 4,
    "disc_filters": 4,
    "shuffle_buffer": 8,
    "pool_size": 2,
    "ema_decay": 0.0,
}


def full(args):
    return input_pipeline.run(args.workdir, n_slices=600, block_steps=10, blocks=20, warmup_steps=10)


def smoke(args):
    return input_pipeline.run(
        args.workdir, n_slices=16, block_steps=2, blocks=2, warmup_steps=1, cfg_overrides=SMOKE_TRAINING
    )


if __name__ == "__main__":
    sys.exit(cli("input_pipeline", full, smoke))
