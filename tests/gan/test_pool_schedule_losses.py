"""The GAN building blocks that training uses: image pool, learning-rate schedule, losses."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from medcyclegan.gan import image_pool, losses, schedules  # noqa: E402

# ----------------------------------------------------------------------------- image pool


def test_image_pool_fills_then_swaps_with_p_half():
    pool = image_pool.ImagePool(50, (2, 2, 1), seed=3)
    imgs = [np.full((1, 2, 2, 1), float(i), np.float32) for i in range(1000)]
    for i in range(50):  # filling: the new image comes back and is stored
        out = pool.query(imgs[i]).numpy()
        assert out[0, 0, 0, 0] == i
        assert int(pool.count.numpy()) == i + 1
    np.testing.assert_array_equal(pool.stored.numpy()[:, 0, 0, 0], np.arange(50))
    old = 0
    for i in range(50, 1000):
        before = set(pool.stored.numpy()[:, 0, 0, 0].tolist())
        out = float(pool.query(imgs[i]).numpy()[0, 0, 0, 0])
        after = pool.stored.numpy()[:, 0, 0, 0].tolist()
        assert int(pool.count.numpy()) == 50
        if out == i:  # new image returned, pool unchanged
            assert set(after) == before
        else:  # an older image returned and replaced by the new one
            old += 1
            assert out in before and out < i
            assert i in after and out not in after
    assert 0.44 < old / 950 < 0.56
    # seeded: the same seed gives the same choices
    a = image_pool.ImagePool(5, (1,), seed=9)
    b = image_pool.ImagePool(5, (1,), seed=9)
    xs = [np.array([[float(i)]], np.float32) for i in range(40)]
    assert [float(a.query(x)[0, 0]) for x in xs] == [float(b.query(x)[0, 0]) for x in xs]


def test_image_pool_batch_and_disabled():
    pool = image_pool.ImagePool(3, (1,), seed=0)
    out = pool.query(np.array([[1.0], [2.0]], np.float32)).numpy()
    np.testing.assert_array_equal(out[:, 0], [1, 2])
    assert int(pool.count.numpy()) == 2
    off = image_pool.ImagePool(0, (1,))
    x = np.array([[5.0]], np.float32)
    assert off.query(x) is x


# ----------------------------------------------------------------------------- LR schedule


def test_lr_schedule_constant_then_linear_to_zero():
    s = schedules.ConstantThenLinearDecay(2e-4, constant_steps=100, decay_steps=50)
    lr = lambda k: float(s(k))  # noqa: E731
    approx = lambda v: pytest.approx(v, rel=1e-5)  # noqa: E731 (float32)
    assert lr(0) == approx(2e-4) and lr(99) == approx(2e-4) and lr(100) == approx(2e-4)
    assert lr(101) == approx(2e-4 * 49 / 50)
    assert lr(125) == approx(1e-4)
    assert lr(149) == approx(2e-4 / 50)
    assert lr(150) == 0.0 and lr(1000) == 0.0
    assert float(schedules.ConstantThenLinearDecay(1e-3, 10, 0)(10**6)) == pytest.approx(1e-3)
    cfg = {"steps": 10, "lr_decay_steps": 4, "learning_rate": 1.0}
    s2 = schedules.from_config(cfg)
    assert [round(float(s2(k)), 6) for k in range(12)] == [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0, 0]
    # serialisable, and driven by the optimizer's iteration counter
    again = schedules.ConstantThenLinearDecay.from_config(s.get_config())
    assert float(again(125)) == pytest.approx(1e-4)
    import keras

    opt = keras.optimizers.Adam(learning_rate=s2)
    v = keras.Variable(1.0)
    opt.build([v])
    opt.iterations.assign(8)
    assert float(opt.learning_rate) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- losses


def test_losses():
    ones, zeros = tf.ones([1, 4, 4, 1]), tf.zeros([1, 4, 4, 1])
    assert float(losses.discriminator_loss(ones, zeros, "lsgan")) == 0.0
    assert float(losses.discriminator_loss(zeros, ones, "lsgan")) == pytest.approx(1.0)
    assert float(losses.generator_adversarial_loss(ones, "lsgan")) == 0.0
    assert float(losses.generator_adversarial_loss(zeros, "bce")) == pytest.approx(np.log(2))
    big = 20 * ones
    assert float(losses.discriminator_loss(big, -big, "bce")) < 1e-6
    assert float(losses.l1(ones, zeros)) == 1.0
    assert float(losses.perceptual_loss([ones, zeros], [zeros, zeros])) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        losses.discriminator_loss(ones, zeros, "wgan")
    # shape consistency: head masks of input and translation (background exactly -1)
    head = -tf.ones([1, 4, 4, 1]) + tf.pad(tf.ones([1, 2, 2, 1]) * 1.5, [[0, 0], [1, 1], [1, 1], [0, 0]])
    assert float(losses.outline_loss(head, head * 0.5 - 0.5)) == 0.0  # same outline, other values
    assert float(losses.outline_loss(head, -tf.ones_like(head))) == pytest.approx(4 / 16)  # head erased


def test_mind_structure_loss_sees_edges_not_contrast():
    # a head-like square with a dark ring (T1 bone) and its "CT" with the ring bright
    mr = np.full((1, 32, 32, 1), -1.0, np.float32)
    mr[0, 6:26, 6:26] = 0.4
    mr[0, 10:22, 10:22] = -0.8
    mr[0, 12:20, 12:20] = 0.2
    ct = np.where(mr == -0.8, 0.0, np.where(mr > -1, -0.45, -1.0)).astype(np.float32)
    d = losses.mind_descriptor(mr).numpy()
    assert d.shape == (1, 32, 32, 4) and d.min() > 0 and np.allclose(d.max(axis=-1), 1.0)
    assert np.allclose(d[0, 0, 0], 1.0) and np.allclose(d[0, 16, 16], 1.0)  # flat regions: no direction
    # invariant to inverting and rescaling the contrast of the same edges
    assert float(losses.structure_loss(mr, -mr)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.structure_loss(mr, ct)) < 0.02
    # but not to moving them: a ring 2 px off costs much more
    moved = np.roll(ct, 2, axis=2)
    assert float(losses.structure_loss(mr, moved)) > 5 * float(losses.structure_loss(mr, ct))


@pytest.mark.slow
def test_vgg_loss_from_local_weights_file(tmp_path):
    import keras

    path = tmp_path / "vgg19_notop.weights.h5"
    keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(path)
    vgg = losses.VGGLoss(str(path), 32)
    x = tf.random.uniform([1, 32, 32, 1], -1, 1, seed=1)
    c, s = vgg(x, x)
    assert float(c) == 0.0 and float(s) == 0.0
    c, s = vgg(x, -x)
    assert float(c) > 0 and float(s) > 0


def test_depth_rings_follow_the_outline_not_the_window_border():
    img = -np.ones((1, 12, 12, 1), np.float32)
    img[0, 2:10, 2:12] = 0.5  # a head that runs off the window's right edge
    rings = losses.depth_rings(tf.constant(img), 4).numpy()[0]
    depth = np.full((12, 12), -1)
    for k in range(4):
        depth[rings[..., k] > 0.5] = k
    assert set(np.unique(rings)) <= {0.0, 1.0}
    assert (depth[img[0, ..., 0] < 0] == -1).all()  # background belongs to no ring
    assert depth[2, 5] == 0 and depth[3, 5] == 1 and depth[5, 5] == 3 and depth[5, 2] == 0
    assert depth[5, 11] == 3  # the window border is not an outline: no ring 0 along it
    assert depth[6, 11] == 3 and depth[2, 11] == 0


def test_depth_profile_loss_tells_swapped_rings():
    img = -np.ones((1, 16, 16, 1), np.float32)
    img[0, 2:14, 2:14] = 0.0
    rings = losses.depth_rings(tf.constant(img), 3)
    right = img.copy()
    right[0, 3:13, 3:13] = 0.8  # a bright ring one pixel below the outline
    right[0, 4:12, 4:12] = 0.0
    swapped = img.copy()
    swapped[0, 2:14, 2:14] = 0.8  # the bright ring on the outline
    swapped[0, 3:13, 3:13] = 0.0
    target, weight = losses.depth_profile(tf.constant(right), rings)
    np.testing.assert_allclose(target.numpy(), [0.0, 0.8, 0.0], atol=1e-6)
    assert float(losses.depth_profile_loss(target, target, weight)) == 0.0
    got, _ = losses.depth_profile(tf.constant(swapped), rings)
    assert float(losses.depth_profile_loss(got, target, weight)) == pytest.approx((0.8 + 0.8 + 0.0) / 3, rel=1e-5)
    # rings absent from a batch do not count
    assert float(losses.depth_profile_loss(got, target, tf.constant([0.0, 0.0, 10.0]))) == pytest.approx(0.0)
