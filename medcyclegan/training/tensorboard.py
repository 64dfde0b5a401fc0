"""TensorBoard summaries of a training run: losses, learning rate, speed, example translations.

Written with core TensorFlow ops, so the ``tensorboard`` package is needed only to view them.
"""

from __future__ import annotations

import numpy as np


def _summary_metadata(plugin: str, description: str = ""):
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin, content=b""),
        summary_description=description,
    )


def tb_scalar(tag: str, value, step: int) -> None:
    """A TensorBoard scalar (same format as ``tf.summary.scalar``)."""
    import tensorflow as tf

    tf.summary.write(tag, tf.cast(value, tf.float32), step=step, metadata=_summary_metadata("scalars"))


def tb_images(tag: str, images, step: int, max_outputs: int = 3) -> None:
    """TensorBoard images from float [B, H, W, 1] in [0, 1] (same format as ``tf.summary.image``)."""
    import tensorflow as tf

    images = tf.image.convert_image_dtype(
        tf.clip_by_value(tf.cast(images[:max_outputs], tf.float32), 0.0, 1.0), tf.uint8
    )
    pngs = tf.map_fn(tf.image.encode_png, images, fn_output_signature=tf.string)
    dims = tf.strings.as_string(tf.shape(images)[1:3])
    tensor = tf.concat([tf.stack([dims[1], dims[0]]), pngs], axis=0)  # width, height, png...
    tf.summary.write(tag, tensor, step=step, metadata=_summary_metadata("images"))


def write_progress(writer, losses: dict, lr: float, steps_per_s: float, step: int) -> None:
    """The mean losses since the last summary, the learning rate and (when known) steps/s."""
    with writer.as_default():
        for k, v in losses.items():
            tb_scalar(f"loss/{k}", v, step)
        tb_scalar("learning_rate", lr, step)
        if np.isfinite(steps_per_s):
            tb_scalar("steps_per_second", steps_per_s, step)


def write_translations(writer, trainer, src_batch, ct_batch, src: str, step: int) -> None:
    """Source, its translation to CT, CT, its translation to the source, side by side."""
    import tensorflow as tf

    with writer.as_default():
        g_src2ct, g_ct2src = trainer.export_generators()
        fake_ct = tf.cast(g_src2ct(src_batch, training=False), tf.float32)
        k = int(getattr(trainer, "context", 0))  # 2.5D context stacks: show their centre slices
        src_batch, ct_batch = src_batch[..., k : k + 1], ct_batch[..., k : k + 1]
        fake_src = tf.cast(g_ct2src(ct_batch, training=False), tf.float32)
        grid = tf.concat([src_batch, fake_ct, ct_batch, fake_src], axis=2)
        tb_images(f"{src}_to_ct_and_back/{src}|{src}2ct|ct|ct2{src}", (grid + 1) / 2, step, max_outputs=2)
