"""Mixed precision as config/full.yaml trains on GPUs: float16 with loss scaling, and bfloat16,
run a few finite steps (on the CPU here: the same graph, slower) and keep float32 weights."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from medcyclegan.config.tasks import task_config  # noqa: E402
from medcyclegan.testing.slice_phantoms import TINY_NETWORKS, write_domain  # noqa: E402
from medcyclegan.training.data import unpaired_dataset  # noqa: E402
from medcyclegan.training.trainer import CycleGANTrainer  # noqa: E402


@pytest.mark.parametrize("precision, policy", [("float16", "mixed_float16"), ("bfloat16", "mixed_bfloat16")])
def test_mixed_precision_steps_are_finite_with_float32_weights(tmp_path, precision, policy):
    cfg = task_config(
        {
            **TINY_NETWORKS,
            "steps": 4,
            "lr_decay_steps": 2,
            "pool_size": 2,
            "shuffle_buffer": 8,
            "mixed_precision": precision,
        },
        "mr2ct",
    )
    mr, ct = write_domain(tmp_path / "mr.tfrecord", "mr"), write_domain(tmp_path / "ct.tfrecord", "ct")
    trainer = CycleGANTrainer(cfg)
    assert trainer.policy == policy
    assert (type(trainer.opt_g).__name__ == "LossScaleOptimizer") == (precision == "float16")
    before = [w.numpy().copy() for w in trainer.g_src2ct.trainable_weights]
    weights = trainer.g_src2ct.trainable_weights
    data = iter(unpaired_dataset(mr, ct, cfg, seed=1))
    # dynamic loss scaling starts high and skips the steps whose scaled gradients overflow while
    # it lowers the scale: within a few steps the weights must move
    for _ in range(20):
        losses = trainer.train_step(*next(data))
        assert all(np.isfinite(float(v)) for v in losses.values()), losses
        if any(not np.array_equal(b, w.numpy()) for b, w in zip(before, weights)):
            break
    else:
        pytest.fail("20 mixed-precision steps left the generator's weights unchanged")
    assert all(w.dtype == "float32" for w in weights)
    out = trainer.g_src2ct(next(data)[0], training=False)
    assert out.dtype == tf.float32
