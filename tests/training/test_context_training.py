"""2.5D context (``training.context_slices``): input stacks, the train step, the fingerprint, export
and translation with a model that takes 2k + 1 slices."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from medcyclegan.config.tasks import task_config  # noqa: E402
from medcyclegan.inference.runtime import generator_path, load_generator, load_manifest  # noqa: E402
from medcyclegan.inference.synthesis import translate  # noqa: E402
from medcyclegan.io.context import context_stacks  # noqa: E402
from medcyclegan.io.tfrecords import volume_example, write_tfrecord  # noqa: E402
from medcyclegan.testing.slice_phantoms import SIZE, TINY_NETWORKS, write_domain  # noqa: E402
from medcyclegan.training.checkpoints import run_fingerprint  # noqa: E402
from medcyclegan.training.data import make_dataset, unpaired_dataset  # noqa: E402
from medcyclegan.training.loop import run_training  # noqa: E402
from medcyclegan.training.trainer import CycleGANTrainer  # noqa: E402


def tiny_config(**over):
    base = {**TINY_NETWORKS, "steps": 2, "lr_decay_steps": 1, "pool_size": 2, "shuffle_buffer": 4}
    return task_config({**base, "log_every": 1, "checkpoint_every": 2, "batch_size": 2, **over}, "mr2ct")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ctx")
    return {"mr": write_domain(d / "mr.tfrecord", "mr"), "ct": write_domain(d / "ct.tfrecord", "ct")}


def _same_slice_volume(path, size):
    """One volume whose 4 slices are the same asymmetric image: every channel of a stack is equal."""
    img = np.random.default_rng(3).uniform(-1, 1, (size, size)).astype(np.float32)
    meta = dict(subject="S", volume="V", slice=[1, 2, 3, 5], modality="mr", spacing=[1, 1, 1], z_mm=[1, 2, 3, 5])
    meta.update(crop_offset=[0, 0], value_lo=0.0, value_hi=1.0, unit="a.u.")
    write_tfrecord(path, [volume_example(np.stack([img] * 4), meta)])
    return path


@pytest.mark.parametrize("patches", [False, True])
def test_stacks_are_cropped_and_flipped_as_one(tmp_path, patches):
    path = _same_slice_volume(tmp_path / "same.tfrecord", 2 * SIZE)
    cfg = tiny_config(context_slices=1, patches=patches, flip_up_down=True, batch_size=4)
    for batch in make_dataset(str(path), cfg, seed=2).take(3):
        x = batch.numpy()
        assert x.shape == (4, SIZE, SIZE, 3)
        np.testing.assert_array_equal(x[..., 0], x[..., 1])
        np.testing.assert_array_equal(x[..., 2], x[..., 1])


def test_unpaired_stacks_and_train_step(data):
    import keras

    cfg = tiny_config(context_slices=1, lambda_identity=0.5, structure_weight=1.0, perceptual_weight=1.0)
    src, ct = next(iter(unpaired_dataset(data["mr"], data["ct"], cfg, seed=1)))
    assert src.shape == (2, SIZE, SIZE, 3) and ct.shape == (2, SIZE, SIZE, 3)
    keras.utils.set_random_seed(0)
    trainer = CycleGANTrainer(cfg)
    assert trainer.g_src2ct.input_shape[-1] == 3 and trainer.g_src2ct.output_shape[-1] == 1
    assert trainer.g_ct2src.input_shape[-1] == 1 and trainer.d_src.input_shape[-1] == 1
    before = [w.copy() for w in trainer.g_src2ct.get_weights()]
    losses = {k: float(v) for k, v in trainer.train_step(src, ct).items()}
    assert all(np.isfinite(v) for v in losses.values()) and "identity" in losses
    assert any(not np.array_equal(a, b) for a, b in zip(before, trainer.g_src2ct.get_weights()))


def test_context_slices_changes_the_fingerprint(data):
    inputs = {"src_train": data["mr"], "ct_train": data["ct"]}
    fp0 = run_fingerprint(tiny_config(), inputs)["fingerprint"]
    assert fp0 == run_fingerprint(tiny_config(context_slices=0), inputs)["fingerprint"]
    assert fp0 != run_fingerprint(tiny_config(context_slices=1), inputs)["fingerprint"]


def test_context_run_exports_a_three_channel_model_and_translates(tmp_path, data):
    out = tmp_path / "mr2ct"
    run_training(
        tiny_config(context_slices=1),
        task="mr2ct",
        src_train=data["mr"],
        ct_train=data["ct"],
        model_dir=out / "model",
        summary_path=out / "summary.json",
        checkpoint_dir=out / "checkpoints",
    )
    manifest = load_manifest(out / "model")
    assert manifest["context_slices"] == 1 and "[batch, H, W, 3]" in manifest["generators"]["to_ct"]["doc"]
    to_ct = load_generator(generator_path(out / "model", "to_ct"))
    from_ct = load_generator(generator_path(out / "model", "from_ct"))
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (4, SIZE, SIZE)).astype(np.float32)
    slices = np.array([7, 8, 9, 11])
    stacks = context_stacks(images, slices, 1)
    assert to_ct(stacks).shape == (4, SIZE, SIZE, 1)
    assert from_ct(images[..., None]).shape == (4, SIZE, SIZE, 1)
    with pytest.raises((ValueError, TypeError)):  # the exported to_ct takes 3 channels, not 1
        to_ct(images[..., None])
    lo, hi = manifest["ct_value_range"]
    hu = translate(to_ct, images, (lo, hi), flip_average=False, slice_index=slices, context_slices=1)
    expected = lo + (np.clip(to_ct(stacks)[..., 0], -1, 1) + 1) / 2 * (hi - lo)
    np.testing.assert_allclose(hu, expected, rtol=1e-5, atol=1e-2)
    # flip averaging mirrors the whole stack
    hu2 = translate(to_ct, images, (lo, hi), flip_average=True, slice_index=slices, context_slices=1)
    mirrored = to_ct(np.ascontiguousarray(stacks[:, :, ::-1]))[:, :, ::-1, 0]
    both = 0.5 * (to_ct(stacks)[..., 0] + mirrored)
    np.testing.assert_allclose(hu2, lo + (np.clip(both, -1, 1) + 1) / 2 * (hi - lo), rtol=1e-5, atol=1e-2)
    # the gap at slice 10: slice 9's stack repeats slice 9 where 10 is missing
    np.testing.assert_array_equal(stacks[2, ..., 2], images[2])


def test_tiled_export_takes_stacks_and_returns_one_slice(tmp_path):
    import keras

    from medcyclegan.gan.models import build_models
    from medcyclegan.inference.export import export_generator

    keras.utils.set_random_seed(1)
    g = build_models(tiny_config(patches=True, context_slices=1))["g_src2ct"]  # 32 px windows, 3 channels in
    export_generator(g, tmp_path / "g", SIZE, tiled=True)
    serve = load_generator(tmp_path / "g")
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 48, 3)).astype(np.float32)
    assert serve(x).shape == (2, 64, 48, 1)
    window = x[:, :SIZE, :SIZE]
    np.testing.assert_allclose(serve(window), np.asarray(g(window, training=False)), atol=1e-5)
