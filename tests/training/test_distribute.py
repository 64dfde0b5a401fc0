"""Training on several replicas: ``tf.distribute.MirroredStrategy`` over logical CPU devices
(``training.distribute: mirrored``, ``training.cpu_replicas: 2``), tiny 32x32 networks.

Logical devices can be set only once per process, before TensorFlow initialises: every
multi-replica scenario runs in one fresh Python process (:func:`scenarios`, started by the
``runs`` fixture) that writes each trainer's variables (``CycleGANTrainer.all_variables``) and
per-step losses to a folder; the tests compare them. The pytest process's TensorFlow is never
configured, so the file runs alongside any other test.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from medcyclegan.config.tasks import task_config  # noqa: E402
from medcyclegan.training import distribute  # noqa: E402
from medcyclegan.training.checkpoints import run_fingerprint  # noqa: E402

#: 1 vs 2 replicas of the same global batch: equal up to float summation order (measured after 3
#: steps: losses 1.2e-7 relative; weights and their averages 4e-7, Adam moments 1.4e-6 absolute,
#: at most 5% of this tolerance)
RTOL, ATOL = 1e-4, 1e-5

BASE = dict(
    image_size=32,
    n_unets=1,
    unet_depth=3,
    unet_filters=4,
    disc_layers=2,
    disc_filters=4,
    steps=6,
    lr_decay_steps=3,
    shuffle_buffer=8,
    outline_weight=1.0,
    src_cycle_factor=0.5,
    batch_size=2,
    # batch norm in the generators (synchronised over the replicas), instance norm in the discriminators
    norm="batch",
    disc_norm="instance",
    ema_decay=0.9,
    cpu_replicas=2,
    distribute="mirrored",
)


def config(**over):
    return task_config({**BASE, **over}, "mr2ct")


# ----------------------------------------------------------------------------- the subprocess


def scenarios(out: Path) -> None:
    """All multi-replica runs, in a fresh process: ``python -c`` imports this module and calls it."""
    t_start = time.perf_counter()
    distribute.configure_devices(config())
    distribute.configure_devices(config())  # idempotent
    import keras

    from medcyclegan.testing.slice_phantoms import phantom
    from medcyclegan.training.trainer import CycleGANTrainer

    rng = np.random.default_rng(7)

    def batch(modality, step):
        imgs = np.stack([phantom(modality, 2 * step + i) for i in range(2)])[..., None]
        noise = rng.normal(0.0, 0.05, imgs.shape).astype(np.float32) * (imgs > -1)
        return tf.constant(np.clip(imgs + noise, -1, 1))

    batches = [(batch("mr", i), batch("ct", i)) for i in range(6)]  # the global batch of each step
    result = {"seconds": {}}

    def train(trainer, steps, name=None):
        t = time.perf_counter()
        losses = []
        for _ in range(steps):
            out_ = trainer.train_step(*batches[int(trainer.step.numpy())])
            losses.append({k: float(v) for k, v in out_.items()})
        if name:
            result["seconds"][name] = round(time.perf_counter() - t, 2)
        return losses

    def save_vars(trainer, name):
        np.savez(out / f"{name}.npz", **{k.replace("/", "|"): v for k, v in trainer.all_variables().items()})

    one = distribute.make_strategy(config(distribute="auto"))  # no GPU: the default strategy
    two = distribute.make_strategy(config())
    result["describe"] = {
        "auto": distribute.describe(one),
        "mirrored": distribute.describe(two),
        "mirrored_1": distribute.describe(distribute.make_strategy(config(cpu_replicas=1))),
    }
    result["errors"] = {}
    for what, fn in {
        "strategy": lambda: distribute.make_strategy(config(batch_size=3)),
        "trainer": lambda: CycleGANTrainer(config(batch_size=3), strategy=two),
        "devices": lambda: distribute.configure_devices(config(cpu_replicas=4)),  # TF is initialised by now
    }.items():
        try:
            fn()
            result["errors"][what] = None
        except (ValueError, RuntimeError) as e:
            result["errors"][what] = f"{type(e).__name__}: {e}"

    # (a) one device vs two replicas: same global batches, same seed, no pool
    keras.utils.set_random_seed(0)
    t1 = CycleGANTrainer(config(pool_size=0), strategy=one)
    result["a1"] = train(t1, 3, "one_device")
    save_vars(t1, "a1")
    keras.utils.set_random_seed(0)
    t2 = CycleGANTrainer(config(pool_size=0), strategy=two)
    result["a2"] = train(t2, 3, "two_replicas")
    save_vars(t2, "a2")
    result["same_hash"] = t1.architecture_hash() == t2.architecture_hash()
    unet = t2.g_src2ct.get_layer("g_src2ct_unet_1")
    result["synchronized"] = [
        bool(getattr(layer, "synchronized", False)) for layer in unet.layers if "norm" in layer.name
    ]

    # (b) a pool per replica; (c) checkpoint after 3 steps, restore into a fresh trainer, 2 more
    # steps; both with the depth-profile loss, whose running profiles are replica-mean variables
    pooled = dict(pool_size=3, depth_profile_weight=1.0, depth_profile_rings=6)
    keras.utils.set_random_seed(1)
    t3 = CycleGANTrainer(config(**pooled), strategy=two)
    train(t3, 3, "pools")
    result["counts"] = {
        n: [int(p.count.numpy()) for p in pool.replicas] for n, pool in (("ct", t3.pool_ct), ("src", t3.pool_src))
    }
    manager = tf.train.CheckpointManager(t3.checkpoint, str(out / "ck2"), max_to_keep=1)
    manager.save(checkpoint_number=3)
    save_vars(t3, "b_saved")
    result["b_after"] = train(t3, 2)
    save_vars(t3, "b_after")
    keras.utils.set_random_seed(99)  # another initialisation: the restore must overwrite all of it
    t4 = CycleGANTrainer(config(**pooled), strategy=two)
    save_vars(t4, "c_fresh")
    t4.checkpoint.restore(manager.latest_checkpoint).assert_consumed()
    save_vars(t4, "c_restored")
    result["c_after"] = train(t4, 2, "resumed")
    save_vars(t4, "c_after")

    # (e) another number of replicas, as loop.py restores (assert_existing_objects_matched)
    t5 = CycleGANTrainer(config(**pooled), strategy=one)
    t5.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()  # 2 -> 1
    save_vars(t5, "e_one")
    one_device_ck = tf.train.CheckpointManager(t5.checkpoint, str(out / "ck1"), max_to_keep=1).save(3)
    save_vars(t4, "e_two_before")
    t4.checkpoint.restore(one_device_ck).assert_existing_objects_matched()  # 1 -> 2
    save_vars(t4, "e_two")
    result["e_step"] = int(t4.step.numpy())
    result["e_after"] = train(t4, 1)
    result["seconds"]["total"] = round(time.perf_counter() - t_start, 2)
    (out / "result.json").write_text(json.dumps(result, indent=1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("replicas")
    here = Path(__file__).resolve()
    paths = [str(here.parent), str(here.parents[2])]  # this module, the checkout's package
    code = f"import sys; sys.path[:0] = {paths!r}; import test_distribute as t; t.scenarios(t.Path({str(out)!r}))"
    # hide any GPU: the replicas here are logical CPUs
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    variables = {p.stem: {k.replace("|", "/"): v for k, v in np.load(p).items()} for p in out.glob("*.npz")}
    return json.loads((out / "result.json").read_text()), variables


def pool_keys(variables: dict) -> list:
    return sorted(k for k in variables if k.startswith("pool_"))


# ----------------------------------------------------------------------------- the tests


def test_config_keys_defaults_and_resumable():
    cfg = task_config({}, "mr2ct")
    assert (cfg["distribute"], cfg["cpu_replicas"]) == ("auto", 1)
    with pytest.raises(ValueError, match=r"training\.distribute"):
        task_config({"distribute": "horovod"}, "mr2ct")
    with pytest.raises(ValueError, match=r"training\.cpu_replicas"):
        task_config({"cpu_replicas": 0}, "mr2ct")
    # a run begun on one device resumes on several: the checkpoint fingerprint ignores both keys
    a = run_fingerprint(config(distribute="none", cpu_replicas=1), {})
    b = run_fingerprint(config(), {})
    assert a["fingerprint"] == b["fingerprint"] and "distribute" not in a["config"]


def test_batch_size_must_split_over_the_replicas(runs):
    with pytest.raises(ValueError, match=r"batch_size \(3\) must be divisible by the number of replicas \(2\)"):
        distribute.check_batch_size(3, 2)
    distribute.check_batch_size(4, 2)
    result, _ = runs
    for what in ("strategy", "trainer"):
        assert result["errors"][what].startswith("ValueError: training.batch_size (3)"), result["errors"][what]
        assert "number of replicas (2)" in result["errors"][what]
    # logical devices are fixed once TensorFlow runs: a different count fails and says why
    assert (
        "cpu_replicas = 4" in result["errors"]["devices"]
        and "already initialised with 2" in result["errors"]["devices"]
    )


def test_strategies(runs):
    result, _ = runs
    d = result["describe"]
    assert d["auto"]["strategy"] == "none" and d["auto"]["replicas"] == 1  # auto without GPUs
    assert d["mirrored"]["strategy"] == "MirroredStrategy" and d["mirrored"]["replicas"] == 2
    assert [x.rsplit("/", 1)[-1] for x in d["mirrored"]["devices"]] == ["device:CPU:0", "device:CPU:1"]
    assert d["mirrored_1"]["replicas"] == 1  # mirrored on one device is valid


def test_two_replicas_train_as_one_device(runs):
    result, v = runs
    one, two = v["a1"], v["a2"]
    assert result["same_hash"]  # synchronised batch norm does not change the checkpoint fingerprint
    assert result["synchronized"] and all(result["synchronized"])
    for step, (l1, l2) in enumerate(zip(result["a1"], result["a2"]), start=1):
        assert l1.keys() == l2.keys()
        for k in l1:
            np.testing.assert_allclose(l2[k], l1[k], rtol=RTOL, atol=ATOL, err_msg=f"step {step} {k}")
    # every weight, batch-norm statistic, weight average and Adam moment; counters exactly
    assert set(one) <= set(two) and set(two) - set(one) == {k for k in two if "_replica1/" in k}
    assert any(k.startswith("ema_") for k in one) and int(two["step"]) == 3
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=RTOL, atol=ATOL, err_msg=k)
        if one[k].dtype.kind in "iu":
            np.testing.assert_array_equal(two[k], one[k], err_msg=k)
    assert int(two["opt_g/0"]) == int(two["opt_d/0"]) == 3  # iterations: once per global step


def test_each_replica_keeps_its_own_pool(runs):
    result, v = runs
    # 3 steps of 1 image per replica each: each replica's pool holds its own 3 (one shared pool: 3 of 6)
    assert result["counts"] == {"ct": [3, 3], "src": [3, 3]}
    saved = v["b_saved"]
    for name in ("pool_ct", "pool_src"):
        mine, other = saved[f"{name}/images:0"], saved[f"{name}_replica1/images:0"]
        assert mine.shape == other.shape == (3, 32, 32, 1)
        assert not np.array_equal(mine, other)  # the fakes of different shards
        assert not np.array_equal(saved[f"{name}/rng"], saved[f"{name}_replica1/rng"])  # own random streams


def test_resume_on_two_replicas_continues_exactly(runs):
    result, v = runs
    saved, fresh, restored = v["b_saved"], v["c_fresh"], v["c_restored"]
    assert saved.keys() == restored.keys() and len(pool_keys(saved)) == 12
    # the running depth profiles: learnt from the real batches (CT: air outside, tissue within)
    assert {k for k in saved if k.startswith("profile_")} == {
        f"profile_{d}/{s}" for d in ("ct", "src") for s in ("mean", "seen")
    }
    for domain in ("ct", "src"):
        assert saved[f"profile_{domain}/seen"].sum() >= 3 and np.abs(saved[f"profile_{domain}/mean"]).max() > 0.05
        assert not np.array_equal(v["b_after"][f"profile_{domain}/mean"], saved[f"profile_{domain}/mean"])
    assert sum(not np.array_equal(fresh[k], saved[k]) for k in saved) > 10
    for k in saved:  # weights, EMA, Adam, BN statistics, every replica's pool and its RNG, the step
        np.testing.assert_array_equal(restored[k], saved[k], err_msg=k)
    # the same device layout sums in the same order: the resumed run is the uninterrupted one, bit for bit
    assert result["c_after"] == result["b_after"]
    for k in v["b_after"]:
        np.testing.assert_array_equal(v["c_after"][k], v["b_after"][k], err_msg=k)


def test_resume_on_another_number_of_replicas(runs):
    result, v = runs
    saved, one = v["b_saved"], v["e_one"]
    # 2 -> 1: the single-device pool is replica 0's
    assert pool_keys(one) == [k for k in pool_keys(saved) if "_replica" not in k]
    for k in one:
        np.testing.assert_array_equal(one[k], saved[k], err_msg=k)
    # 1 -> 2: replica 0 (and everything else) from the checkpoint, replica 1's pool left as it was
    before, two = v["e_two_before"], v["e_two"]
    for k in two:
        np.testing.assert_array_equal(two[k], one[k] if k in one else before[k], err_msg=k)
    assert result["e_step"] == 3 and np.isfinite(result["e_after"][0]["g_total"])


def test_training_run_on_two_replicas_records_them_and_exports(tmp_path):
    """The whole run (loop.py: devices, strategy, checkpoints, export, summary) on 2 logical CPUs."""
    from medcyclegan.testing.slice_phantoms import write_domain

    mr, ct = write_domain(tmp_path / "mr.tfrecord", "mr"), write_domain(tmp_path / "ct.tfrecord", "ct")
    cfg = {**BASE, "steps": 2, "lr_decay_steps": 1, "pool_size": 2, "log_every": 1, "checkpoint_every": 1}
    code = (
        "import json, sys; from medcyclegan.config.tasks import task_config; "
        "from medcyclegan.training.loop import run_training; "
        f"s = run_training(task_config({cfg!r}, 'mr2ct'), 'mr2ct', {str(mr)!r}, {str(ct)!r}, "
        f"{str(tmp_path / 'model')!r}, {str(tmp_path / 'summary.json')!r}, {str(tmp_path / 'ck')!r}, threads=2); "
        "print(json.dumps(s['distribute']))"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["distribute"]["replicas"] == 2 and summary["distribute"]["strategy"] == "MirroredStrategy"
    assert summary["steps_this_run"] == 2 and (tmp_path / "model" / "manifest.json").exists()
