"""Input pipeline (benchmark 3): is training ever starved by its tf.data input?

The project's real train step (``training.trainer.CycleGANTrainer.train_step``) is timed fed by
the real input function (``training.data.unpaired_dataset``: TFRecords -> shuffle -> resize ->
flips -> batch -> prefetch) and fed one cached in-memory batch, in interleaved blocks of steps
(same machine load for both), after the graph has been traced. Each step is driven as ``run_training`` drives it
(``next(data)``, ``train_step``, losses fetched to Python floats, which waits for the step).

Target: steps/s from TFRecords / steps/s from the cached batch >= 0.95, as the median over pairs
of adjacent blocks (robust to the machine's load changing between pairs; the ratio of the two
medians is reported too).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from medcyclegan.bench import REPO, median, rounded, scratch_workdir

MIN_RATIO = 0.95


def write_slices(path: Path, n: int, modality: str, seed: int, size: int = 256) -> int:
    """``n`` smooth random 256x256 slices in [-1, 1] in the project's TFRecord schema."""
    from scipy import ndimage

    from medcyclegan.io.tfrecords import volume_example, write_tfrecord

    rng = np.random.default_rng(seed)

    def slice_image():
        img = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 6)
        return np.clip(img / (np.abs(img).max() + 1e-6), -1, 1)

    def examples():
        for v, start in enumerate(range(0, n, 50)):  # volumes of 50 slices (the last one may be shorter)
            idx = np.arange(start, min(start + 50, n)) % 50
            meta = {
                "subject": f"bench{v}",
                "volume": f"bench{v}",
                "slice": idx,
                "modality": modality,
                "spacing": [1.0, 1.0, 1.0],
                "z_mm": idx.astype(float),
                "crop_offset": [0, 0],
                "value_lo": -1024.0,
                "value_hi": 3000.0,
                "unit": "HU" if modality == "ct" else "a.u.",
            }
            yield volume_example(np.stack([slice_image() for _ in idx]), meta)

    write_tfrecord(path, examples())
    return n


def training_config(overrides: dict | None = None, task: str = "mr2ct") -> dict:
    """The workflow's training config for ``task`` (config.yaml's demo budget), with ``overrides``."""
    import yaml

    from medcyclegan.config.tasks import task_config
    from medcyclegan.config.validation import deep_update

    training = yaml.safe_load((REPO / "config.yaml").read_text())["training"]
    deep_update(training, overrides or {})
    return task_config(training, task)


def run(
    workdir: str | Path | None = None,
    *,
    n_slices: int = 600,
    block_steps: int = 20,
    blocks: int = 5,
    warmup_steps: int = 5,
    cfg_overrides: dict | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    import tensorflow as tf

    from medcyclegan.config.resources import available_cores
    from medcyclegan.inference.runtime import configure_tensorflow
    from medcyclegan.training.data import unpaired_dataset
    from medcyclegan.training.trainer import CycleGANTrainer

    configure_tensorflow(threads or available_cores())
    with scratch_workdir(workdir, "bench_input_") as workdir:
        src_path, ct_path = workdir / "mr_train.tfrecord", workdir / "ct_train.tfrecord"
        write_slices(src_path, n_slices, "mr", seed=1)
        write_slices(ct_path, n_slices, "ct", seed=2)
        cfg = training_config(cfg_overrides)
        tf.keras.utils.set_random_seed(int(cfg["seed"]))
        trainer = CycleGANTrainer(cfg)
        data = iter(unpaired_dataset(str(src_path), str(ct_path), cfg, seed=int(cfg["seed"])))
        cached = next(data)
        cached = (tf.identity(cached[0]), tf.identity(cached[1]))

        def step(batch) -> None:
            losses = trainer.train_step(*batch)
            _ = {k: float(v) for k, v in losses.items()}  # as run_training: waits for the step

        t0 = time.perf_counter()
        step(cached)
        first_step_s = time.perf_counter() - t0
        for _ in range(warmup_steps):
            step(next(data))
            step(cached)
        rates: dict[str, list[float]] = {"tfrecords": [], "cached": []}
        for _ in range(blocks):
            for name in ("tfrecords", "cached"):
                t0 = time.perf_counter()
                for _ in range(block_steps):
                    step(next(data) if name == "tfrecords" else cached)
                rates[name].append(block_steps / (time.perf_counter() - t0))
        # each TFRecord block against the cached block right after it (same load), then the median
        pairs = [a / b for a, b in zip(rates["tfrecords"], rates["cached"])]
        ratio = median(pairs)
        return {
            "benchmark": "input_pipeline",
            "config": {
                k: cfg[k]
                for k in ("image_size", "batch_size", "n_unets", "unet_depth", "unet_filters", "shuffle_buffer")
            },
            "slices_per_domain": n_slices,
            "first_step_s": round(first_step_s, 2),
            "blocks": blocks,
            "block_steps": block_steps,
            "steps_per_s_tfrecords": rounded(rates["tfrecords"]),
            "steps_per_s_cached": rounded(rates["cached"]),
            "median_steps_per_s_tfrecords": round(median(rates["tfrecords"]), 3),
            "median_steps_per_s_cached": round(median(rates["cached"]), 3),
            "block_ratios": rounded(pairs),
            "ratio_of_medians": round(median(rates["tfrecords"]) / median(rates["cached"]), 3),
            "ratio": round(ratio, 3),
            "targets": {"min_ratio": MIN_RATIO},
            "met": ratio >= MIN_RATIO,
        }
