"""Networks: shapes, parameter counts, normalisation, original-architecture defaults (CPU, tiny)."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from medcyclegan.gan import models  # noqa: E402

SIZE, DEPTH, BASE = 32, 5, 4


@pytest.mark.parametrize("n", [1, 3, 6])
def test_casnet_shape_and_params_scale_with_n(n):
    one = models.unet(SIZE, depth=DEPTH, base_filters=BASE, norm="instance")
    g = models.casnet(SIZE, n_unets=n, depth=DEPTH, base_filters=BASE, norm="instance")
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 1)).astype("float32")
    y = g(x).numpy()
    assert y.shape == (2, SIZE, SIZE, 1)
    assert y.dtype == np.float32
    assert np.all(np.abs(y) <= 1.0)
    assert g.count_params() == n * one.count_params()
    assert [layer.name for layer in g.layers[1:]] == [f"casnet_unet_{k + 1}" for k in range(n)]


def test_unet_param_count_by_hand():
    # depth 2, base 4, no norm, 1 channel: conv(1->4) conv(4->8) | deconv(8->4), concat -> 8, deconv(8->1)
    net = models.unet(8, depth=2, base_filters=4, norm="none")
    expected = (16 * 1 * 4 + 4) + (16 * 4 * 8 + 8) + (16 * 8 * 4 + 4) + (16 * 8 * 1 + 1)
    assert net.count_params() == expected


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_patchgan_logits_and_features(n_layers):
    d = models.patchgan(SIZE, n_layers=n_layers, base_filters=BASE, norm="instance")
    x = np.zeros((2, SIZE, SIZE, 1), "float32")
    out = d(x)
    assert len(out) == 1 + n_layers
    side = SIZE // 2**n_layers
    assert tuple(out[0].shape) == (2, side, side, 1)
    for i, f in enumerate(out[1:]):
        assert tuple(f.shape) == (2, SIZE // 2 ** (i + 1), SIZE // 2 ** (i + 1), min(BASE * 2**i, 8 * BASE))
    # logits, not probabilities: the output layer is linear (the original had a sigmoid here)
    assert d.get_layer("logits").activation.__name__ == "linear"
    assert not any(getattr(layer, "activation", None) is keras.activations.sigmoid for layer in d.layers)


def test_patchgan_param_count_does_not_depend_on_generator():
    d = models.patchgan(SIZE, n_layers=2, base_filters=BASE, norm="none")
    expected = (16 * 1 * 4 + 4) + (16 * 4 * 8 + 8) + (16 * 8 * 1 + 1)
    assert d.count_params() == expected
    assert models.receptive_field(2) == 22 and models.receptive_field(3) == 46


def test_default_unet_is_the_original():
    assert models.encoder_filters(8, 64) == [64, 128, 256, 512, 512, 512, 512, 512]
    net = models.unet()  # 256x256x1, depth 8, base 64, batch norm
    convs = [layer for layer in net.layers if type(layer).__name__ == "Conv2D"]
    deconvs = [layer for layer in net.layers if type(layer).__name__ == "Conv2DTranspose"]
    assert [c.filters for c in convs] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert all(c.kernel_size == (4, 4) and c.strides == (2, 2) for c in convs + deconvs)
    assert [d.filters for d in deconvs] == [512, 512, 512, 512, 256, 128, 64, 1]
    assert net.layers[-1].activation.__name__ == "tanh"
    assert net.output.shape == (None, 256, 256, 1)
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 6 + 7  # not on the first and innermost encoder blocks
    assert net.count_params() == 54_418_241


def test_depth_must_fit_the_image():
    with pytest.raises(ValueError, match="allows depth <= 5"):
        models.unet(32, depth=6, base_filters=BASE)
    with pytest.raises(ValueError, match="norm"):
        models.unet(32, depth=2, base_filters=BASE, norm="layer")


def test_instance_norm_is_per_sample_per_channel():
    layer = models.norm_layer("instance")
    rng = np.random.default_rng(1)
    x = (
        rng.normal(size=(3, 8, 8, 5)) * rng.uniform(1, 9, size=(3, 1, 1, 5)) + rng.normal(size=(3, 1, 1, 5)) * 4
    ).astype("float32")
    y = layer(x).numpy()
    gamma, beta = (w.numpy() for w in layer.weights)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * gamma + beta, atol=1e-4)


def test_mixed_precision_keeps_float32_outputs():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        g = models.casnet(SIZE, n_unets=1, depth=DEPTH, base_filters=BASE, norm="instance")
        d = models.patchgan(SIZE, n_layers=2, base_filters=BASE, norm="instance")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.zeros((1, SIZE, SIZE, 1), "float32")
    assert g(x).dtype == "float32"
    assert d(x)[0].dtype == "float32"


@pytest.mark.parametrize("inverse", [None, 1, 3])
def test_inverse_generator_cascade_length(inverse):
    from medcyclegan.config.tasks import task_config

    training = {"image_size": SIZE, "n_unets": 2, "unet_depth": 3, "unet_filters": BASE, "inverse_n_unets": inverse}
    cfg = task_config(training, "mr2ct")
    nets = models.build_models(cfg)
    n_inverse = sum(layer.name.startswith("g_ct2src_unet_") for layer in nets["g_ct2src"].layers)
    n_forward = sum(layer.name.startswith("g_src2ct_unet_") for layer in nets["g_src2ct"].layers)
    assert (n_forward, n_inverse) == (2, inverse or 2)
    x = np.zeros((1, SIZE, SIZE, 1), "float32")
    assert nets["g_ct2src"](x).shape == (1, SIZE, SIZE, 1)
