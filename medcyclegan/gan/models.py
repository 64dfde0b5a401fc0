"""MedCycleGAN networks (Keras 3 functional API): CasNet generator, U-Net, PatchGAN discriminator.

All layers are stock Keras layers, so a saved model needs none of this package's code to load.

* **U-Net** (pix2pix / the original project): ``depth`` encoder blocks of
  ``Conv2D(4x4, stride 2) -> norm -> LeakyReLU(0.2)`` with ``min(base * 2**i, 8 * base)`` filters
  (no norm on the first block), ``depth - 1`` decoder blocks of
  ``Conv2DTranspose(4x4, stride 2) -> norm -> [dropout] -> ReLU`` concatenated with the mirrored
  encoder output, and a final ``Conv2DTranspose(1, 4x4, stride 2) + tanh``. The defaults
  (depth 8, base 64) give the original 64-128-256-512-512-512-512-512 encoder and
  512-512-512-512-256-128-64 decoder at 256x256.
  The innermost (1x1 at full depth) encoder block has no normalisation, as in the reference
  CycleGAN/pix2pix code: instance norm of a 1x1 map, or batch norm of it at batch size 1, would
  output a constant and cut the bottleneck off.
* **CasNet** (MedGAN): ``n_unets`` U-Nets in cascade, each one's output the next one's input.
  Each U-Net is a nested model named ``unet_1`` ... ``unet_N`` (identical architecture, so the
  parameter count is exactly N times one U-Net's).
* **PatchGAN discriminator**: ``n_layers`` ``Conv2D(4x4, stride 2) -> norm -> LeakyReLU(0.2)``
  blocks (no norm on the first), then a ``Conv2D(1, 4x4, stride 1)`` emitting **logits** (no
  sigmoid; the original applied a sigmoid and then a from-logits loss). ``n_layers=2`` is the
  original's three convolutions (22x22-pixel patches); 3 -> 46x46, 4 -> 94x94.
  The model returns ``[logits, feature_1, ..., feature_n]``: the feature maps after each block
  serve MedGAN's perceptual loss.

Normalisation: ``"instance"`` (``GroupNormalization(groups=-1)``: one group per channel, i.e.
per-sample-per-channel statistics over height and width) or ``"batch"`` (the original) or
``"none"``. Training on several replicas (``tf.distribute``) builds the networks with
``sync_batch_norm=True``: batch norm then takes the statistics of the global batch over all
replicas (``BatchNormalization(synchronized=True)``); instance norm is per image and needs nothing.
"""

from __future__ import annotations

import keras
from keras import layers

from medcyclegan.config.tasks import check_unet_geometry

NORMS = ("instance", "batch", "none")


def _init():
    # pix2pix / CycleGAN initialisation: N(0, 0.02)
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def norm_layer(kind: str, name: str | None = None, synchronized: bool = False):
    """A normalisation layer, or ``None`` for ``"none"``.

    ``synchronized``: batch norm statistics over all replicas of a ``tf.distribute`` strategy
    (no effect on instance norm, whose statistics are per image).
    """
    if kind == "instance":
        return layers.GroupNormalization(
            groups=-1, epsilon=1e-5, gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02), name=name
        )
    if kind == "batch":
        extra = {"synchronized": True} if synchronized else {}
        return layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02), name=name, **extra
        )
    if kind == "none":
        return None
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def encoder_filters(depth: int, base_filters: int) -> list[int]:
    """Encoder widths: ``base * 2**i`` capped at ``8 * base`` (64 -> 512 for the original)."""
    return [min(base_filters * 2**i, 8 * base_filters) for i in range(depth)]


def unet(
    image_size: int | None = 256,
    channels: int = 1,
    depth: int = 8,
    base_filters: int = 64,
    norm: str = "batch",
    dropout: float = 0.0,
    dropout_blocks: int = 3,
    name: str = "unet",
    sync_batch_norm: bool = False,
    in_channels: int | None = None,
) -> keras.Model:
    """One U-Net: [B, S, S, C_in] in [-1, 1] -> [B, S, S, C] in [-1, 1] (tanh, float32).

    ``image_size=None`` builds it for any size divisible by ``2**depth`` (fully convolutional).
    ``in_channels``: the input's channels (2.5D context stacks), default ``channels``.
    """
    check_unet_geometry(image_size, depth)
    norm_layer(norm)  # validates the name
    enc_f = encoder_filters(depth, base_filters)
    inp = keras.Input((image_size, image_size, in_channels or channels), name=f"{name}_input")
    x = inp
    skips = []
    for i, f in enumerate(enc_f):
        innermost = i == depth - 1
        use_norm = norm != "none" and i > 0 and not innermost
        x = layers.Conv2D(
            f, 4, strides=2, padding="same", use_bias=not use_norm, kernel_initializer=_init(), name=f"down{i + 1}_conv"
        )(x)
        if use_norm:
            x = norm_layer(norm, name=f"down{i + 1}_norm", synchronized=sync_batch_norm)(x)
        x = layers.LeakyReLU(0.2, name=f"down{i + 1}_lrelu")(x)
        skips.append(x)
    # decoder: mirror of the encoder without its innermost block
    for j, (f, skip) in enumerate(zip(reversed(enc_f[:-1]), reversed(skips[:-1]))):
        use_norm = norm != "none"
        x = layers.Conv2DTranspose(
            f, 4, strides=2, padding="same", use_bias=not use_norm, kernel_initializer=_init(), name=f"up{j + 1}_deconv"
        )(x)
        if use_norm:
            x = norm_layer(norm, name=f"up{j + 1}_norm", synchronized=sync_batch_norm)(x)
        if dropout > 0 and j < dropout_blocks:
            x = layers.Dropout(dropout, name=f"up{j + 1}_dropout")(x)
        x = layers.ReLU(name=f"up{j + 1}_relu")(x)
        x = layers.Concatenate(name=f"up{j + 1}_skip")([x, skip])
    x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", kernel_initializer=_init(), name="out_deconv")(x)
    out = layers.Activation("tanh", dtype="float32", name="out_tanh")(x)
    return keras.Model(inp, out, name=name)


def casnet(
    image_size: int | None = 256,
    channels: int = 1,
    n_unets: int = 3,
    depth: int = 8,
    base_filters: int = 64,
    norm: str = "batch",
    dropout: float = 0.0,
    dropout_blocks: int = 3,
    name: str = "casnet",
    sync_batch_norm: bool = False,
    in_channels: int | None = None,
) -> keras.Model:
    """CasNet generator: ``n_unets`` U-Nets in cascade (MedGAN uses 6, the original project 3).

    ``image_size=None``: for any size divisible by ``2**depth`` (trained on patches, run on whole slices).
    ``in_channels``: channels of the input (2.5D context: ``2k + 1`` slices), default ``channels``;
    the first U-Net maps them to ``channels``, the others ``channels`` to ``channels``.
    """
    if n_unets < 1:
        raise ValueError(f"n_unets must be >= 1, got {n_unets}")
    inp = keras.Input((image_size, image_size, in_channels or channels), name=f"{name}_input")
    x = inp
    for k in range(n_unets):
        net = unet(
            image_size,
            channels,
            depth=depth,
            base_filters=base_filters,
            norm=norm,
            dropout=dropout,
            dropout_blocks=dropout_blocks,
            name=f"{name}_unet_{k + 1}",
            sync_batch_norm=sync_batch_norm,
            in_channels=in_channels if k == 0 else None,
        )
        x = net(x)
    return keras.Model(inp, x, name=name)


def patchgan(
    image_size: int = 256,
    channels: int = 1,
    n_layers: int = 2,
    base_filters: int = 64,
    norm: str = "batch",
    name: str = "patchgan",
    sync_batch_norm: bool = False,
) -> keras.Model:
    """PatchGAN discriminator returning ``[logits, feature_1, ..., feature_n_layers]``.

    ``logits`` is [B, S / 2**n, S / 2**n, 1] float32 (no sigmoid); feature ``i`` is the block-``i``
    output (after LeakyReLU) used for the perceptual loss.
    """
    if n_layers < 1:
        raise ValueError(f"discriminator n_layers must be >= 1, got {n_layers}")
    if image_size % (2**n_layers) != 0:
        raise ValueError(
            f"discriminator with {n_layers} stride-2 layers needs an image size divisible by {2**n_layers}"
        )
    norm_layer(norm)
    inp = keras.Input((image_size, image_size, channels), name=f"{name}_input")
    x = inp
    feats = []
    for i in range(n_layers):
        f = min(base_filters * 2**i, 8 * base_filters)
        use_norm = norm != "none" and i > 0
        x = layers.Conv2D(
            f, 4, strides=2, padding="same", use_bias=not use_norm, kernel_initializer=_init(), name=f"conv{i + 1}"
        )(x)
        if use_norm:
            x = norm_layer(norm, name=f"norm{i + 1}", synchronized=sync_batch_norm)(x)
        x = layers.LeakyReLU(0.2, name=f"lrelu{i + 1}")(x)
        feats.append(x)
    x = layers.Conv2D(1, 4, strides=1, padding="same", kernel_initializer=_init(), name="logits_conv")(x)
    logits = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inp, [logits, *feats], name=name)


def receptive_field(n_layers: int) -> int:
    """Receptive field (pixels) of one logit of :func:`patchgan` with ``n_layers`` stride-2 blocks."""
    r = 4  # final 4x4 stride-1 convolution
    for _ in range(n_layers):
        r = (r - 1) * 2 + 4
    return r


def build_models(cfg: dict, channels: int = 1, sync_batch_norm: bool = False) -> dict:
    """The four CycleGAN networks from a (merged, per-task) ``training`` config dict.

    Returns ``{"g_src2ct", "g_ct2src", "d_ct", "d_src"}``. ``sync_batch_norm``: see the module docstring.
    ``training.context_slices`` = k > 0 (2.5D context): ``g_src2ct`` takes ``channels * (2k + 1)``
    input channels (the slice and its neighbours) and outputs ``channels``; the others are unchanged.
    ``training.inverse_n_unets``: the cascade length of ``g_ct2src`` (default ``n_unets``).
    """
    gen_kw = dict(
        # patch training: the generators see image_size patches, and translate whole slices afterwards
        image_size=None if cfg.get("patches") else cfg["image_size"],
        channels=channels,
        n_unets=cfg["n_unets"],
        depth=cfg["unet_depth"],
        base_filters=cfg["unet_filters"],
        norm=cfg["norm"],
        dropout=cfg["unet_dropout"],
        sync_batch_norm=sync_batch_norm,
    )
    disc_kw = dict(
        image_size=cfg["image_size"],
        channels=channels,
        n_layers=cfg["disc_layers"],
        base_filters=cfg["disc_filters"],
        norm=cfg.get("disc_norm") or cfg["norm"],
        sync_batch_norm=sync_batch_norm,
    )
    k = int(cfg.get("context_slices", 0))
    src_in = {"in_channels": channels * (2 * k + 1)} if k > 0 else {}
    return {
        "g_src2ct": casnet(name="g_src2ct", **gen_kw, **src_in),
        "g_ct2src": casnet(name="g_ct2src", **{**gen_kw, "n_unets": cfg.get("inverse_n_unets") or cfg["n_unets"]}),
        "d_ct": patchgan(name="d_ct", **disc_kw),
        "d_src": patchgan(name="d_src", **disc_kw),
    }
