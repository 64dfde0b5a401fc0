"""The training input: endless, shuffled, augmented batches of each domain's TFRecord slices.

The two domains are streamed independently (unpaired training); the stream never holds more than
the shuffle buffer (and, with 2.5D context, :data:`VOLUME_CYCLE` volumes) in memory.
"""

from __future__ import annotations

#: with 2.5D context (``context_slices`` > 0) the slices of this many volumes are interleaved
#: before the shuffle buffer; without, the slices come volume after volume as they always did
VOLUME_CYCLE = 4


def make_dataset(path, cfg: dict, seed: int):
    """Endless, shuffled, augmented batches [B, S, S, 2k + 1] of one domain's training slices
    (``k`` = ``cfg['context_slices']``: each slice with its k neighbours on each side, the
    slice itself in channel k; :mod:`medcyclegan.io.context`).

    Streams the TFRecords (shuffle buffer ``cfg['shuffle_buffer']``), resizes to
    ``cfg['image_size']`` (area averaging) when the stored slices differ, or with
    ``cfg['patches']`` cuts a seeded random ``image_size`` window at the stored resolution, applies
    seeded random flips and prefetches; crops and flips are the same for all channels of a
    slice. Never holds more than the shuffle buffer in memory.
    """
    import tensorflow as tf

    from medcyclegan.io.tfrecords import read_dataset

    size = int(cfg["image_size"])
    flip_lr = bool(cfg["flip_left_right"])
    flip_ud = bool(cfg["flip_up_down"])
    patches = bool(cfg.get("patches"))
    k = int(cfg.get("context_slices", 0))
    channels = 2 * k + 1

    def prep(i, image):
        hw = tf.shape(image)[:2]
        if patches:  # a random size x size window at the stored resolution
            tf.debugging.assert_greater_equal(
                tf.reduce_min(hw), size, message=f"training.patches needs stored slices of at least {size} px"
            )
            image = tf.image.stateless_random_crop(
                image, [size, size, channels], seed=tf.stack([tf.cast(seed, tf.int64) + 2, i])
            )
        else:
            image = tf.cond(
                tf.reduce_all(tf.equal(hw, size)),
                lambda: image,
                lambda: tf.image.resize(image, [size, size], method="area"),
            )
        image = tf.ensure_shape(tf.clip_by_value(image, -1.0, 1.0), [size, size, channels])
        if flip_lr:
            image = tf.image.stateless_random_flip_left_right(image, seed=tf.stack([tf.cast(seed, tf.int64), i]))
        if flip_ud:
            image = tf.image.stateless_random_flip_up_down(image, seed=tf.stack([tf.cast(seed, tf.int64) + 1, i]))
        return image

    cycle = VOLUME_CYCLE if k > 0 else 1
    ds = read_dataset(path, image_only=True, context_slices=k, num_parallel_reads=1, cycle_length=cycle)
    ds = ds.shuffle(int(cfg["shuffle_buffer"]), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate().map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(int(cfg["batch_size"]), drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def unpaired_dataset(src_path, ct_path, cfg: dict, seed: int):
    """Zip of independently shuffled source and CT streams: ``(src_batch, ct_batch)``."""
    import tensorflow as tf

    return tf.data.Dataset.zip((make_dataset(src_path, cfg, seed), make_dataset(ct_path, cfg, seed + 7919)))


def ct_value_range(ct_path) -> tuple[float, float]:
    """The HU range that the CT slices' [-1, 1] stands for (what the exported model outputs)."""
    from medcyclegan.io.tfrecords import read_dataset

    for e in read_dataset(ct_path).take(1):
        return float(e["value_lo"].numpy()), float(e["value_hi"].numpy())
    raise ValueError(f"no CT slices in {ct_path}")
