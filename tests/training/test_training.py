"""Training pieces on tiny 32x32 images: config, input, steps, checkpoints, resume, metrics, export."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from medcyclegan.config.tasks import TASKS, TaskConfigs, default_config, task_config, training_only  # noqa: E402
from medcyclegan.evaluation import slice_eval  # noqa: E402
from medcyclegan.gan import losses, schedules  # noqa: E402
from medcyclegan.inference.export import export_models  # noqa: E402
from medcyclegan.inference.runtime import load_generator, load_manifest  # noqa: E402
from medcyclegan.testing.slice_phantoms import SIZE, TINY_NETWORKS, phantom, write_domain  # noqa: E402
from medcyclegan.training.checkpoints import prepare_checkpoint_dir, run_fingerprint  # noqa: E402
from medcyclegan.training.data import make_dataset, unpaired_dataset  # noqa: E402
from medcyclegan.training.loop import run_training  # noqa: E402
from medcyclegan.training.trainer import CycleGANTrainer  # noqa: E402


def tiny_config(**over):
    cfg = task_config(
        {
            **TINY_NETWORKS,
            "steps": 6,
            "lr_decay_steps": 3,
            "pool_size": 3,
            "shuffle_buffer": 8,
            "log_every": 1,
            "checkpoint_every": 2,
            "outline_weight": 1.0,
            "src_cycle_factor": 0.5,
            **over,
        },
        "mr2ct",
    )
    return cfg


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfr")
    return {
        "mr": write_domain(d / "mr_train.tfrecord", "mr"),
        "ct": write_domain(d / "ct_train.tfrecord", "ct"),
        "mr_test": write_domain(d / "mr_test.tfrecord", "mr", n_volumes=1, n_slices=3),
        "ct64": write_domain(d / "ct64.tfrecord", "ct", n_volumes=1, n_slices=2, size=64),
    }


def test_vgg_missing_file_names_key_and_path(tmp_path):
    missing = tmp_path / "nope" / "vgg19_notop.h5"
    with pytest.raises(FileNotFoundError) as e:
        losses.VGGLoss(str(missing), 32)
    assert "training.vgg_weights" in str(e.value) and str(missing) in str(e.value)
    with pytest.raises(FileNotFoundError, match="training.vgg_weights"):
        CycleGANTrainer(tiny_config(vgg_weights=str(missing)))


# ----------------------------------------------------------------------------- config


def test_task_config_defaults_overrides_and_errors():
    base = task_config({}, "mr2ct")
    assert base == {**default_config()}
    assert base["pool_size"] == 50 and base["lambda_cycle"] == 10 and base["learning_rate"] == 2e-4
    cfg = {"steps": 100, "lr_decay_steps": 50, "tasks": {"pet2ct": {"steps": 60, "examples": {"n_inputs": 2}}}}
    mr, pet = task_config(cfg, "mr2ct"), task_config(cfg, "pet2ct")
    assert mr["steps"] == 100 and pet["steps"] == 60
    assert mr["examples"]["n_inputs"] == 4 and pet["examples"]["n_inputs"] == 2
    assert pet["examples"]["hu_window"] == mr["examples"]["hu_window"]
    assert "tasks" not in mr and "examples" not in training_only(mr)
    per_task = TaskConfigs(cfg)  # what the workflow asks for, merged once per task
    assert per_task("pet2ct") == pet and per_task("mr2ct") == mr
    per_task("pet2ct")["steps"] = 1  # callers get a copy
    assert per_task("pet2ct")["steps"] == 60
    with pytest.raises(ValueError, match=r"training\.tasks\.mr2ct: unknown key"):
        TaskConfigs({"tasks": {"mr2ct": {"n_unet": 3}}})("mr2ct")
    with pytest.raises(ValueError, match=r"training\.tasks\.mr2ct: unknown key\(s\) \['n_unet'\]"):
        task_config({"tasks": {"mr2ct": {"n_unet": 3}}}, "mr2ct")
    with pytest.raises(ValueError, match=r"training\.tasks\.pet2ct\.norm"):
        task_config({"tasks": {"pet2ct": {"norm": "layer"}}}, "pet2ct")
    with pytest.raises(ValueError, match="depth"):
        task_config({"image_size": 64, "unet_depth": 7}, "mr2ct")
    with pytest.raises(ValueError, match="unknown task"):
        task_config({}, "ct2ct")


def test_config_file_validates_with_snakemake_schema():
    import yaml

    from medcyclegan.config.validation import validate_config
    from medcyclegan.testing.workflow import ROOT as root

    for name in ("config.yaml", "config/full.yaml"):
        cfg = yaml.safe_load((root / "config.yaml").read_text())
        if name != "config.yaml":
            from medcyclegan.config.validation import deep_update

            deep_update(cfg, yaml.safe_load((root / name).read_text()))
        validate_config(cfg)
        for task in TASKS:
            task_config(cfg["training"], task)
    # `--configfile config/full.yaml` on top of config.yaml: no demo setting, shared or per task, leaks in
    from medcyclegan.config.validation import deep_update

    merged = deep_update(
        yaml.safe_load((root / "config.yaml").read_text()), yaml.safe_load((root / "config/full.yaml").read_text())
    )
    for task in TASKS:
        full = task_config(merged["training"], task)
        assert (full["image_size"], full["unet_depth"], full["unet_filters"], full["norm"]) == (256, 8, 64, "batch")
        assert full["patches"] is False and (full["steps"], full["disc_layers"]) == (320000, 2)
        assert full["inverse_n_unets"] is None and full["depth_profile_weight"] == 0


# ----------------------------------------------------------------------------- input


def test_unpaired_dataset_shapes_resize_and_independence(data):
    cfg = tiny_config(batch_size=2)
    src, ct = next(iter(unpaired_dataset(data["mr"], data["ct"], cfg, seed=1)))
    assert src.shape == (2, SIZE, SIZE, 1) and ct.shape == (2, SIZE, SIZE, 1)
    assert float(tf.reduce_min(src)) >= -1 and float(tf.reduce_max(ct)) <= 1
    # 64x64 slices are resized to image_size
    (x,) = list(make_dataset(data["ct64"], tiny_config(), seed=0).take(1))
    assert x.shape == (1, SIZE, SIZE, 1)
    # seeded: same seed -> same stream; the two domains are shuffled with different seeds
    a = [b.numpy() for b in make_dataset(data["mr"], cfg, seed=5).take(3)]
    b = [b.numpy() for b in make_dataset(data["mr"], cfg, seed=5).take(3)]
    np.testing.assert_array_equal(np.stack(a), np.stack(b))


def test_patch_windows_are_native_resolution_crops(data):
    # 64x64 slices, 32 px patches: every batch is an exact window of a stored slice, not a resize
    cfg = tiny_config(patches=True)
    stored = [slice_eval.read_volume_slices(data["ct64"], ["ctV0"])["ctV0"][k][0] for k in (10, 11)]
    stored += [np.fliplr(s) for s in stored]  # random left-right flips are on
    offsets = set()
    for (x,) in make_dataset(data["ct64"], cfg, seed=3).take(12).map(lambda b: (b[0, ..., 0],)):
        x = x.numpy()
        assert x.shape == (SIZE, SIZE)
        hits = [
            (i, r, c)
            for i, s in enumerate(stored)
            for r in range(64 - SIZE + 1)
            for c in range(64 - SIZE + 1)
            if np.array_equal(s[r : r + SIZE, c : c + SIZE], x)
        ]
        assert hits, "a patch is not a window of a stored slice"
        offsets.add(hits[0][1:])
    assert len(offsets) > 1, "patch positions do not vary"
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 64 px"):
        next(iter(make_dataset(data["ct"], tiny_config(patches=True, image_size=64), seed=0)))


def _tiled_reference(g, x, size):
    """Numpy reference of the tiled translation: Hann-blended windows at half-window steps."""
    stride = size // 2
    n, h, w, _ = x.shape
    hp = size + int(np.ceil(max(h - size, 0) / stride)) * stride
    wp = size + int(np.ceil(max(w - size, 0) / stride)) * stride
    top, left = (hp - h) // 2, (wp - w) // 2
    xp = np.pad(x, [(0, 0), (top, hp - h - top), (left, wp - w - left), (0, 0)], constant_values=-1.0)
    hann = np.hanning(size + 2)[1:-1]
    wt = np.outer(hann, hann)[None, :, :, None]
    out, acc = np.zeros_like(xp, np.float64), np.zeros((1, hp, wp, 1))
    for r in range(0, hp - size + 1, stride):
        for c in range(0, wp - size + 1, stride):
            out[:, r : r + size, c : c + size] += np.asarray(g(xp[:, r : r + size, c : c + size], training=False)) * wt
            acc[:, r : r + size, c : c + size] += wt
    return (out / acc)[:, top : top + h, left : left + w]


def test_patch_trained_generator_translates_whole_slices_in_windows(tmp_path):
    import keras

    from medcyclegan.gan.models import build_models

    keras.utils.set_random_seed(1)
    g = build_models(tiny_config(patches=True))["g_src2ct"]  # trained on 32 px windows
    export_models(g, g, tmp_path / "m", "mr2ct", SIZE, 0, (-1024, 3000), tiled=True)
    manifest = load_manifest(tmp_path / "m")
    assert manifest["patches"] is True and "own resolution" in manifest["generators"]["to_ct"]["doc"]
    serve = load_generator(tmp_path / "m" / "mr2ct")
    # a 64x64 slice: 3 x 3 windows of 32 px at the stored resolution, no resize
    x = np.stack([phantom("mr", k, 64) for k in (1, 2)])[..., None]
    y = serve(x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, _tiled_reference(g, x, SIZE), atol=1e-5)
    # a window-sized input is one plain pass of the network
    np.testing.assert_allclose(serve(x[:, :SIZE, :SIZE]), np.asarray(g(x[:, :SIZE, :SIZE], training=False)), atol=1e-5)
    # odd sizes, and one smaller than a window: padded with background and cropped back
    for odd in (x[:, 3:45, 5:58], x[:, 10:30, 7:31]):
        y = serve(odd)
        assert y.shape == odd.shape
        np.testing.assert_allclose(y, _tiled_reference(g, odd, SIZE), atol=1e-5)


# ----------------------------------------------------------------------------- train step


@pytest.fixture(scope="module")
def trainer():
    import keras

    keras.utils.set_random_seed(0)
    # batch norm (moving statistics), dropout and generator weight averaging: all must checkpoint
    return CycleGANTrainer(tiny_config(norm="batch", unet_dropout=0.5, ema_decay=0.9, structure_weight=1.0))


def test_train_steps_change_every_model(trainer, data):
    before = {k: [w.numpy().copy() for w in m.trainable_weights] for k, m in trainer.models.items()}
    ema_before = [w.numpy().copy() for w in trainer.ema["g_src2ct"].trainable_weights]
    it = iter(unpaired_dataset(data["mr"], data["ct"], trainer.cfg, seed=0))
    for _ in range(3):
        out = trainer.train_step(*next(it))
    assert set(out) >= {
        "g_adv_ct",
        "g_adv_src",
        "cycle_src",
        "cycle_ct",
        "outline",
        "structure",
        "identity",
        "perceptual",
        "g_total",
        "d_ct",
        "d_src",
    }
    assert all(np.isfinite(float(v)) for v in out.values())
    for k, m in trainer.models.items():
        after = [w.numpy() for w in m.trainable_weights]
        changed = sum(not np.array_equal(a, b) for a, b in zip(before[k], after))
        assert changed == len(after), f"{k}: only {changed}/{len(after)} weight tensors changed"
    # the exported (averaged) generator moved too, but lags behind the live weights
    ema_after = [w.numpy() for w in trainer.ema["g_src2ct"].trainable_weights]
    live = [w.numpy() for w in trainer.g_src2ct.trainable_weights]
    assert all(not np.array_equal(a, b) for a, b in zip(ema_before, ema_after))
    assert all(not np.array_equal(a, b) for a, b in zip(ema_after, live))
    assert trainer.export_generators()[0] is trainer.ema["g_src2ct"]
    assert int(trainer.step.numpy()) == 3
    assert int(trainer.opt_g.iterations.numpy()) == 3 and int(trainer.opt_d.iterations.numpy()) == 3
    assert int(trainer.pool_ct.count.numpy()) == 3


def test_depth_profile_tracks_real_images_and_checkpoints(tmp_path, data):
    tr = CycleGANTrainer(tiny_config(depth_profile_weight=1.0, depth_profile_rings=5, lambda_identity=0.0))
    src, ct = next(iter(unpaired_dataset(data["mr"], data["ct"], tr.cfg, seed=0)))
    expected, weight = losses.depth_profile(ct, losses.depth_rings(ct, 5))
    out = tr.train_step(src, ct)
    assert float(out["depth_profile"]) > 0
    mean, seen = (v.numpy() for v in tr.profiles["ct"])
    present = weight.numpy() > 0.5
    assert present.any() and (seen == present).all()
    np.testing.assert_allclose(mean[present], expected.numpy()[present], atol=1e-6)  # the first batch as it is
    tr.train_step(src, ct)  # the same batch again: the running mean stays
    np.testing.assert_allclose(tr.profiles["ct"][0].numpy()[present], expected.numpy()[present], atol=1e-5)
    path = tr.checkpoint.save(str(tmp_path / "ckpt"))
    again = CycleGANTrainer(tiny_config(depth_profile_weight=1.0, depth_profile_rings=5, lambda_identity=0.0))
    again.checkpoint.restore(path).assert_consumed()
    np.testing.assert_array_equal(again.profiles["ct"][0].numpy(), tr.profiles["ct"][0].numpy())


def test_checkpoint_restore_is_exact(tmp_path, data, trainer):
    import keras

    t1, cfg = trainer, trainer.cfg  # already trained a few steps by the test above
    it = iter(unpaired_dataset(data["mr"], data["ct"], cfg, seed=1))
    t1.train_step(*next(it))
    k = int(t1.step.numpy())
    mgr = tf.train.CheckpointManager(t1.checkpoint, str(tmp_path / "ck"), max_to_keep=2)
    mgr.save(checkpoint_number=k)
    saved = t1.all_variables()
    t1.train_step(*next(it))  # a step after the checkpoint, then "killed"
    assert int(t1.step.numpy()) == k + 1

    keras.utils.set_random_seed(123)  # different init: restore must overwrite everything
    t2 = CycleGANTrainer(cfg)
    fresh = t2.all_variables()
    t2.checkpoint.restore(
        tf.train.CheckpointManager(t2.checkpoint, str(tmp_path / "ck"), 2).latest_checkpoint
    ).assert_consumed()
    restored = t2.all_variables()
    assert restored.keys() == saved.keys()
    assert sum(not np.array_equal(fresh[n], saved[n]) for n in saved) > 10
    assert any(n.startswith("ema_g_src2ct/") for n in saved)
    for n in saved:  # weights, BN moving statistics, EMA weights, Adam moments, iterations, pools, pool RNG
        np.testing.assert_array_equal(restored[n], saved[n], err_msg=n)
    assert int(t2.step.numpy()) == k and int(t2.opt_g.iterations.numpy()) == k
    assert t2.learning_rate() == pytest.approx(float(schedules.from_config(cfg)(k)))
    out = t2.train_step(*next(it))  # and training continues
    assert int(t2.step.numpy()) == k + 1 and np.isfinite(float(out["g_total"]))


# ----------------------------------------------------------------------------- whole run


@pytest.mark.slow
def test_run_training_resume_and_export(tmp_path, data, caplog):
    caplog.set_level(logging.INFO, logger="medcyclegan.training")
    cfg = tiny_config()
    paths = dict(
        task="mr2ct",
        src_train=data["mr"],
        ct_train=data["ct"],
        model_dir=tmp_path / "mr2ct" / "model",
        summary_path=tmp_path / "mr2ct" / "training_summary.json",
        checkpoint_dir=tmp_path / "mr2ct" / "checkpoints",
        tensorboard_dir=tmp_path / "mr2ct" / "tensorboard",
        metrics_path=tmp_path / "mr2ct" / "training_metrics.jsonl",
    )
    record = {"modality": "mr", "spacing_mm": [1.0, 1.0, 1.0], "masking": {"threshold": "otsu"}}
    # "killed" after 3 steps: checkpoint at step 2 only, no export
    r = run_training(cfg, stop_after=3, **paths)
    assert r == {"stopped_at": 3, "resumed_from": 0}
    assert not paths["model_dir"].exists() and not paths["metrics_path"].exists()
    ck = tf.train.latest_checkpoint(str(paths["checkpoint_dir"]))
    assert ck.endswith("ckpt-2")
    running = paths["checkpoint_dir"] / "metrics.jsonl"  # resumable, not a workflow output
    assert [json.loads(line)["step"] for line in running.read_text().splitlines()] == [1, 2, 3]

    # rerun: resumes from step 2 with the saved weights, finishes, exports
    caplog.clear()
    summary = run_training(cfg, preprocessing=record, **paths)
    assert "resuming from step 2" in caplog.text
    # metrics: cut back to the checkpoint's step on resume, then one line per logged step
    metrics = [json.loads(line) for line in paths["metrics_path"].read_text().splitlines()]
    assert paths["metrics_path"].read_text() == running.read_text()
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert metrics[0]["steps_per_s"] is None and metrics[-1]["steps_per_s"] > 0
    assert metrics[-1]["lr"] == 0.0 and set(metrics[-1]) == {"step", "losses", "lr", "steps_per_s"}
    assert {"G_mr2ct_adv", "cycle_mr", "G_total", "D_ct", "D_mr"} <= set(metrics[-1]["losses"])
    assert metrics[-1]["losses"]["G_total"] == summary["final_losses"]["g_total"]
    step6 = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("step 6/6"))
    assert f"G_total={metrics[-1]['losses']['G_total']:.4f}" in step6
    # the model folder carries the preprocessing it was trained with
    assert json.loads((paths["model_dir"] / "preprocessing.json").read_text()) == record
    assert summary["resumed_from"] == 2 and summary["steps_this_run"] == 4 and summary["steps"] == 6
    assert summary["learning_rate_final"] == 0.0
    assert json.loads(paths["summary_path"].read_text())["resumed_from"] == 2
    assert tf.train.latest_checkpoint(str(paths["checkpoint_dir"])).endswith("ckpt-6")
    assert any(paths["tensorboard_dir"].iterdir())
    manifest = json.loads((paths["model_dir"] / "manifest.json").read_text())
    assert manifest["generators"]["to_ct"]["path"] == "mr2ct" and manifest["step"] == 6
    assert manifest["ct_value_range"] == [-1024.0, 3000.0]

    # the exported generator loads in a fresh interpreter that never imports medcyclegan
    x = np.stack([phantom("mr", k, 64) for k in range(2)])[..., None].astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    here = load_generator(paths["model_dir"] / "mr2ct")(x)
    assert here.shape == (2, 64, 64, 1)
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, tensorflow as tf, keras
        m = tf.saved_model.load({str(paths["model_dir"] / "mr2ct")!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "y.npy")!r}, m.serve(tf.constant(x)).numpy())
        layer = keras.layers.TFSMLayer({str(paths["model_dir"] / "ct2mr")!r}, call_endpoint="serve")
        assert tuple(layer(x).shape) == x.shape
        assert not any(k.startswith("medcyclegan") for k in sys.modules), "medcyclegan was imported"
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), here, atol=1e-6)


def test_checkpoint_dir_is_tied_to_config_and_data(tmp_path, data, caplog):
    caplog.set_level(logging.INFO, logger="medcyclegan.training")
    cfg = tiny_config()
    inputs = {"src_train": data["mr"], "ct_train": data["ct"]}
    fp = run_fingerprint(cfg, inputs)
    ck = prepare_checkpoint_dir(tmp_path / "checkpoints", fp)
    (ck / "ckpt-5.index").write_text("x")
    # same setup (logging cadence does not count): kept
    same = run_fingerprint({**cfg, "log_every": 7, "checkpoint_every": 9, "examples": {}}, inputs)
    assert same["fingerprint"] == fp["fingerprint"]
    prepare_checkpoint_dir(ck, same)
    assert (ck / "ckpt-5.index").exists()
    # architecture changed: moved to checkpoints.previous with a message naming the key
    other = run_fingerprint({**cfg, "unet_filters": 8}, inputs)
    prepare_checkpoint_dir(ck, other)
    assert "unet_filters" in caplog.text and "starting from step 0" in caplog.text
    assert not (ck / "ckpt-5.index").exists()
    assert (tmp_path / "checkpoints.previous" / "ckpt-5.index").exists()
    assert json.loads((ck / "run.json").read_text())["fingerprint"] == other["fingerprint"]
    # input data changed: also a fresh start
    caplog.clear()
    (ck / "ckpt-7.index").write_text("x")
    moved = run_fingerprint({**cfg, "unet_filters": 8}, {"src_train": data["mr_test"], "ct_train": data["ct"]})
    prepare_checkpoint_dir(ck, moved)
    assert "input data (src_train)" in caplog.text and not (ck / "ckpt-7.index").exists()
    # same config but different network code (architecture hash): also a fresh start
    caplog.clear()
    (ck / "ckpt-8.index").write_text("x")
    code = run_fingerprint({**cfg, "unet_filters": 8}, {"src_train": data["mr_test"], "ct_train": data["ct"]}, "abc")
    prepare_checkpoint_dir(ck, code)
    assert "code (architecture)" in caplog.text and not (ck / "ckpt-8.index").exists()
