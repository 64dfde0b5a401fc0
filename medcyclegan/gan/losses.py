"""CycleGAN / MedGAN losses (TensorFlow ops; all computed in float32).

* adversarial: ``"lsgan"`` (least squares, reference CycleGAN default) or ``"bce"``
  (sigmoid cross-entropy **from logits**: the discriminator emits logits, there is no sigmoid
  layer, fixing the original's double sigmoid);
* cycle-consistency and identity: mean absolute error;
* perceptual (MedGAN): L1 between the discriminator's feature maps of a real image and of its
  reconstruction, averaged over the feature layers;
* optional VGG-19 content / style loss (MedGAN), only from a user-supplied weights file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

ADVERSARIAL = ("lsgan", "bce")


def _f32(x):
    return tf.cast(x, tf.float32)


def discriminator_loss(real_logits, fake_logits, kind: str = "lsgan"):
    """0.5 * (loss(real -> 1) + loss(fake -> 0)), as in the reference (halved D objective)."""
    real_logits, fake_logits = _f32(real_logits), _f32(fake_logits)
    if kind == "lsgan":
        real = tf.reduce_mean(tf.square(real_logits - 1.0))
        fake = tf.reduce_mean(tf.square(fake_logits))
    elif kind == "bce":
        real = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real_logits), real_logits))
        fake = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits), fake_logits))
    else:
        raise ValueError(f"adversarial loss must be one of {ADVERSARIAL}, got {kind!r}")
    return 0.5 * (real + fake)


def generator_adversarial_loss(fake_logits, kind: str = "lsgan"):
    """The generator wants the discriminator to call its output real (target 1)."""
    fake_logits = _f32(fake_logits)
    if kind == "lsgan":
        return tf.reduce_mean(tf.square(fake_logits - 1.0))
    if kind == "bce":
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(fake_logits), fake_logits))
    raise ValueError(f"adversarial loss must be one of {ADVERSARIAL}, got {kind!r}")


def l1(a, b):
    return tf.reduce_mean(tf.abs(_f32(a) - _f32(b)))


def perceptual_loss(real_features, fake_features):
    """MedGAN perceptual loss: mean over layers of L1(features(real), features(fake))."""
    if not real_features:
        return tf.constant(0.0)
    return tf.add_n([l1(r, f) for r, f in zip(real_features, fake_features)]) / float(len(real_features))


def head_mask(x, tau: float = 0.02):
    """Soft head mask of an image whose background is exactly -1: 0 at -1, 1 from -1 + tau."""
    return tf.clip_by_value((_f32(x) + 1.0) / tau, 0.0, 1.0)


def outline_loss(real, translated, tau: float = 0.02):
    """Shape consistency: L1 between the head masks of an image and of its translation.

    Both domains' slices are masked to the background value -1 outside the head, so a
    translation must keep the head where it is (cf. the shape-consistency loss of Zhang et al.,
    CVPR 2018); it stops the generator from redrawing the head outline.
    """
    return l1(head_mask(real, tau), head_mask(translated, tau))


def depth_rings(x, n_rings: int, tau: float = 0.02):
    """[B, H, W, n_rings] masks of the head's pixels at depth 0, 1, ... n_rings - 1 px from its outline.

    Depth is the chessboard distance to the background, by repeated 3x3 erosions of the soft head
    mask (``head_mask``). The erosion ignores what lies beyond the image border, so a window cut
    out of a slice gets rings only along the head's own outline.
    """
    mask = head_mask(x, tau)
    rings = []
    for _ in range(n_rings):
        eroded = -tf.nn.max_pool2d(-mask, 3, 1, "SAME")
        rings.append(mask - eroded)
        mask = eroded
    return tf.concat(rings, axis=-1)


def depth_profile(x, rings):
    """(mean of ``x`` over each ring [n], pixels per ring [n]) over the whole batch."""
    weight = tf.reduce_sum(rings, axis=[0, 1, 2])
    total = tf.reduce_sum(_f32(x) * rings, axis=[0, 1, 2])
    return total / tf.maximum(weight, 1e-6), weight


def depth_profile_loss(profile, target, weight):
    """L1 between a translation's depth profile and the target domain's, over the rings present."""
    present = tf.cast(weight > 0.5, tf.float32)
    return tf.reduce_sum(tf.abs(profile - target) * present) / tf.maximum(tf.reduce_sum(present), 1.0)


# 4-neighbourhood of the 2D MIND descriptor and the Gaussian that weights its patch distances
_MIND_SHIFTS = ((0, 1), (1, 0), (0, -1), (-1, 0))
_MIND_KERNEL = np.outer(*(2 * [np.array([0.27901, 0.44198, 0.27901], np.float32)]))  # sigma 0.8 px, sum 1


def mind_descriptor(x, eps: float = 1e-3):
    """2D MIND self-similarity descriptor [B, H, W, 4] of a [B, H, W, 1] image (Heinrich et al. 2012).

    Channel r is exp(-D_r / V): D_r the Gaussian-weighted squared difference between the patch
    around a pixel and the patch one pixel away in direction r, V their mean (the local
    variance), so the descriptor says where the edges are and in which direction, whatever the
    contrast that makes them. ``eps`` (in squared [-1, 1] units) keeps flat regions, and edges
    weaker than about sqrt(eps), from being amplified into structure.
    """
    x = _f32(x)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    kernel = tf.constant(_MIND_KERNEL[:, :, None, None])
    dists = []
    for dy, dx in _MIND_SHIFTS:
        shifted = padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w, :]
        sq = tf.pad(tf.square(x - shifted), [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        dists.append(tf.nn.conv2d(sq, kernel, strides=1, padding="VALID"))
    d = tf.concat(dists, axis=-1)
    v = tf.reduce_mean(d, axis=-1, keepdims=True) + eps
    desc = tf.exp(-d / v)
    return desc / tf.reduce_max(desc, axis=-1, keepdims=True)


def structure_loss(real, translated, eps: float = 1e-3):
    """Structure consistency: L1 between the MIND descriptors of an image and of its translation.

    Unpaired MR -> CT has no target to say where the skull's edges are; MIND is the same for
    both modalities wherever they show an edge in the same place, whatever its contrast (dark
    bone in T1, bright in CT), so this keeps the synthetic skull on the input's skull instead
    of the whole dark band of bone plus CSF (cf. the structure-constrained CycleGAN of Yang et
    al., DLMIA 2018).
    """
    return l1(mind_descriptor(real, eps), mind_descriptor(translated, eps))


# ----------------------------------------------------------------------------- VGG-19 (optional)

VGG_CONTENT_LAYERS = ("block4_conv2",)
VGG_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


def check_vgg_weights(path: str) -> Path:
    """Resolve ``training.vgg_weights``; raise ``FileNotFoundError`` naming the key if it is missing."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise FileNotFoundError(
            f"training.vgg_weights = {str(path)!r}: file not found ({p.resolve()}). The VGG-19 style/content "
            "loss needs a local Keras VGG-19 'notop' weights file (e.g. "
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5); nothing is downloaded. Set "
            "training.vgg_weights to '' to disable this loss."
        )
    return p


class VGGLoss:
    """VGG-19 content (feature L1) and style (Gram-matrix L1) loss between two image batches.

    Images are single-channel in [-1, 1]; they are repeated to RGB and mapped to VGG's
    caffe-style input (0..255, BGR mean subtracted).
    """

    def __init__(
        self, weights_path: str, image_size: int, content_layers=VGG_CONTENT_LAYERS, style_layers=VGG_STYLE_LAYERS
    ):
        import keras

        path = check_vgg_weights(weights_path)
        vgg = keras.applications.VGG19(include_top=False, weights=str(path), input_shape=(image_size, image_size, 3))
        vgg.trainable = False
        self.content_layers = tuple(content_layers)
        self.style_layers = tuple(style_layers)
        names = list(dict.fromkeys(self.content_layers + self.style_layers))
        self.model = keras.Model(vgg.input, [vgg.get_layer(n).output for n in names], name="vgg19_features")
        self.model.trainable = False
        self._names = names

    def _features(self, x):
        x = (_f32(x) + 1.0) * 127.5
        x = tf.concat([x, x, x], axis=-1) - tf.constant([103.939, 116.779, 123.68])
        outs = self.model(x, training=False)
        return {n: _f32(o) for n, o in zip(self._names, outs)}

    @staticmethod
    def gram(f):
        b, h, w, c = tf.unstack(tf.shape(f))
        flat = tf.reshape(f, [b, h * w, c])
        return tf.matmul(flat, flat, transpose_a=True) / tf.cast(h * w * c, tf.float32)

    def __call__(self, real, fake):
        """Return ``(content_loss, style_loss)``."""
        fr, ff = self._features(real), self._features(fake)
        content = tf.add_n([l1(fr[n], ff[n]) for n in self.content_layers]) / len(self.content_layers)
        style = tf.add_n([l1(self.gram(fr[n]), self.gram(ff[n])) for n in self.style_layers]) / len(self.style_layers)
        return content, style

    @property
    def variables(self):
        return self.model.weights
