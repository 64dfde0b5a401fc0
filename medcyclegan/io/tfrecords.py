"""TFRecord schema for preprocessed slices: one ``tf.train.Example`` per axial slice.

The schema keeps everything needed to map a slice back to physical units and to the
canonical volume it came from, so synthetic images can be restored to Hounsfield units.

Features (all scalars unless noted):

============== ========= ===========================================================
``image``       bytes     float32 little-endian, row-major, ``height*width`` values in [-1, 1]
``height``      int64     rows (256)
``width``       int64     columns (256)
``subject``     bytes     pseudonymous subject id (split unit)
``volume``      bytes     volume id (study / session) the slice comes from
``slice``       int64     axial index in the canonical resampled volume
``modality``    bytes     ``ct``, ``mr`` or ``pet``
``spacing``     float[3]  (row, column, slice) spacing in mm
``z_mm``        float     physical z (LPS, superior positive) of the slice centre
``crop_offset`` int64[2]  (row, column) of the 256x256 window's top-left corner in the
                          canonical slice (negative where the window was padded)
``value_lo``    float     physical value that maps to -1
``value_hi``    float     physical value that maps to +1
``unit``        bytes     ``HU`` for CT, ``a.u.`` otherwise
============== ========= ===========================================================

Physical value = ``value_lo + (image + 1) / 2 * (value_hi - value_lo)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from medcyclegan.io.atomic import atomic_path, is_partial

FEATURE_NAMES = (
    "image",
    "height",
    "width",
    "subject",
    "volume",
    "slice",
    "modality",
    "spacing",
    "z_mm",
    "crop_offset",
    "value_lo",
    "value_hi",
    "unit",
)


def _tf():
    import tensorflow as tf  # imported lazily: preprocessing jobs should not pay TF start-up

    return tf


def slice_example(image: np.ndarray, meta: Mapping) -> bytes:
    """Serialise one 2D float slice and its metadata to a ``tf.train.Example``."""
    tf = _tf()
    image = np.asarray(image, dtype="<f4")
    if image.ndim != 2:
        raise ValueError(f"slice must be 2D, got shape {image.shape}")

    def b(v):
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[str(v).encode() if not isinstance(v, bytes) else v])
        )

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in np.atleast_1d(v)]))

    def f(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in np.atleast_1d(v)]))

    feature = {
        "image": b(image.tobytes(order="C")),
        "height": i(image.shape[0]),
        "width": i(image.shape[1]),
        "subject": b(meta["subject"]),
        "volume": b(meta["volume"]),
        "slice": i(meta["slice"]),
        "modality": b(meta["modality"]),
        "spacing": f(meta["spacing"]),
        "z_mm": f(meta["z_mm"]),
        "crop_offset": i(meta["crop_offset"]),
        "value_lo": f(meta["value_lo"]),
        "value_hi": f(meta["value_hi"]),
        "unit": b(meta["unit"]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfrecord(path: str | os.PathLike, examples: Iterable[bytes]) -> int:
    """Write serialised examples atomically (:func:`~medcyclegan.io.atomic.atomic_path`); return the count."""
    tf = _tf()
    n = 0
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for record in examples:
            writer.write(record)
            n += 1
    return n


def _feature_spec():
    tf = _tf()
    return {
        "image": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "subject": tf.io.FixedLenFeature([], tf.string),
        "volume": tf.io.FixedLenFeature([], tf.string),
        "slice": tf.io.FixedLenFeature([], tf.int64),
        "modality": tf.io.FixedLenFeature([], tf.string),
        "spacing": tf.io.FixedLenFeature([3], tf.float32),
        "z_mm": tf.io.FixedLenFeature([], tf.float32),
        "crop_offset": tf.io.FixedLenFeature([2], tf.int64),
        "value_lo": tf.io.FixedLenFeature([], tf.float32),
        "value_hi": tf.io.FixedLenFeature([], tf.float32),
        "unit": tf.io.FixedLenFeature([], tf.string),
    }


def parse_example(record):
    """Parse one serialised example; ``image`` becomes a float32 tensor [H, W, 1]."""
    tf = _tf()
    parsed = tf.io.parse_single_example(record, _feature_spec())
    image = tf.io.decode_raw(parsed["image"], tf.float32, little_endian=True)
    parsed["image"] = tf.reshape(image, tf.stack([parsed["height"], parsed["width"], 1]))
    return parsed


def tfrecord_files(path: str | os.PathLike | Sequence) -> list[str]:
    """Expand a file, a folder of ``*.tfrecord`` shards or a list of either into sorted file names."""
    if isinstance(path, (list, tuple)):
        return [f for p in path for f in tfrecord_files(p)]
    p = Path(path)
    if p.is_dir():
        return sorted(str(x) for x in p.glob("*.tfrecord") if not is_partial(x))  # unfinished shards aside
    return [str(p)]


def read_dataset(path, *, image_only: bool = False, num_parallel_reads=None):
    """Return a ``tf.data.Dataset`` over slices of one or more TFRecord files.

    Elements are dicts of the schema's features (``image`` as [H, W, 1] float32), or just the
    image tensor when ``image_only``. Files are streamed, never loaded whole.
    """
    tf = _tf()
    files = tfrecord_files(path)
    if not files:
        raise FileNotFoundError(f"no TFRecord files at {path}")
    autotune = tf.data.AUTOTUNE
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=num_parallel_reads or autotune)
    ds = ds.map(parse_example, num_parallel_calls=autotune)
    if image_only:
        ds = ds.map(lambda e: e["image"], num_parallel_calls=autotune)
    return ds
