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
