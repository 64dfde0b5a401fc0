"""TFRecord schema for preprocessed slices: one ``tf.train.Example`` per volume.

The schema keeps everything needed to map a slice back to physical units and to the
canonical volume it came from, so synthetic images can be restored to Hounsfield units. A record
holds all stored (useful) slices of one volume, so that a reader can give each slice its axial
neighbours (2.5D context, ``training.context_slices``; the rule is :mod:`medcyclegan.io.context`).

Features of one volume's Example (``n`` = its number of stored slices; scalars unless noted):

============== ========= ===========================================================
``images``      bytes     float32 little-endian, row-major [n, height, width], values in [-1, 1]
``n_slices``    int64     ``n``
``height``      int64     rows (256)
``width``       int64     columns (256)
``subject``     bytes     pseudonymous subject id (split unit)
``volume``      bytes     volume id (study / session) the slices come from
``slice``       int64[n]  axial index of each slice in the canonical resampled volume
``modality``    bytes     ``ct``, ``mr`` or ``pet``
``spacing``     float[3]  (row, column, slice) spacing in mm
``z_mm``        float[n]  physical z (LPS, superior positive) of each slice's centre
``crop_offset`` int64[2]  (row, column) of the 256x256 window's top-left corner in the
                          canonical slice (negative where the window was padded)
``value_lo``    float     physical value that maps to -1
``value_hi``    float     physical value that maps to +1
``unit``        bytes     ``HU`` for CT, ``a.u.`` otherwise
============== ========= ===========================================================

Physical value = ``value_lo + (image + 1) / 2 * (value_hi - value_lo)``.

:func:`read_dataset` streams **per-slice** elements: the features above with ``slice`` and
``z_mm`` as scalars and ``image`` float32 [H, W, 2k + 1] (the slice and its ``k`` neighbours on
each side, the slice itself in channel ``k``; ``k = 0``: [H, W, 1]).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from medcyclegan.io.atomic import atomic_path, is_partial

#: the features of a per-slice element of :func:`read_dataset`
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
#: what a volume's Example stores once (the rest is per slice: ``images``, ``slice``, ``z_mm``)
VOLUME_FEATURES = (
    "height",
    "width",
    "subject",
    "volume",
    "modality",
    "spacing",
    "crop_offset",
    "value_lo",
    "value_hi",
    "unit",
)


def _tf():
    import tensorflow as tf  # imported lazily: preprocessing jobs should not pay TF start-up

    return tf


def volume_example(images: np.ndarray, meta: Mapping) -> bytes:
    """Serialise one volume's stored slices [n, H, W] and their metadata to a ``tf.train.Example``.

    ``meta``: the per-volume fields of the schema, and ``slice`` and ``z_mm`` with one value per slice.
    """
    tf = _tf()
    images = np.asarray(images, dtype="<f4")
    if images.ndim != 3:
        raise ValueError(f"a volume's slices must be [n, H, W], got shape {images.shape}")
    n = images.shape[0]
    slices, z_mm = np.atleast_1d(meta["slice"]), np.atleast_1d(meta["z_mm"])
    if slices.shape != (n,) or z_mm.shape != (n,):
        raise ValueError(f"slice and z_mm need one value per slice ({n}), got {slices.shape} and {z_mm.shape}")

    def b(v):
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[str(v).encode() if not isinstance(v, bytes) else v])
        )

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in np.atleast_1d(v)]))

    def f(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in np.atleast_1d(v)]))

    feature = {
        "images": b(np.ascontiguousarray(images).tobytes(order="C")),
        "n_slices": i(n),
        "height": i(images.shape[1]),
        "width": i(images.shape[2]),
        "subject": b(meta["subject"]),
        "volume": b(meta["volume"]),
        "slice": i(slices),
        "modality": b(meta["modality"]),
        "spacing": f(meta["spacing"]),
        "z_mm": f(z_mm),
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
        "images": tf.io.FixedLenFeature([], tf.string),
        "n_slices": tf.io.FixedLenFeature([], tf.int64),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "subject": tf.io.FixedLenFeature([], tf.string),
        "volume": tf.io.FixedLenFeature([], tf.string),
        "slice": tf.io.VarLenFeature(tf.int64),
        "modality": tf.io.FixedLenFeature([], tf.string),
        "spacing": tf.io.FixedLenFeature([3], tf.float32),
        "z_mm": tf.io.VarLenFeature(tf.float32),
        "crop_offset": tf.io.FixedLenFeature([2], tf.int64),
        "value_lo": tf.io.FixedLenFeature([], tf.float32),
        "value_hi": tf.io.FixedLenFeature([], tf.float32),
        "unit": tf.io.FixedLenFeature([], tf.string),
    }


def parse_volume(record):
    """Parse one volume's serialised example; ``images`` becomes float32 [n, H, W], ``slice`` and
    ``z_mm`` dense [n]."""
    tf = _tf()
    parsed = tf.io.parse_single_example(record, _feature_spec())
    images = tf.io.decode_raw(parsed.pop("images"), tf.float32, little_endian=True)
    parsed["images"] = tf.reshape(images, tf.stack([parsed["n_slices"], parsed["height"], parsed["width"]]))
    parsed["slice"] = tf.sparse.to_dense(parsed["slice"])
    parsed["z_mm"] = tf.sparse.to_dense(parsed["z_mm"])
    return parsed


def volume_slices(record, context_slices: int = 0):
    """The per-slice elements of one volume's record (a ``tf.data.Dataset``): ``image``
    [H, W, 2k + 1] gathered from the volume's slices by :func:`~medcyclegan.io.context.context_indices_tf`."""
    from medcyclegan.io.context import context_indices_tf

    tf = _tf()
    v = parse_volume(record)
    images = v["images"]
    per_slice = {
        "positions": context_indices_tf(v["slice"], context_slices),
        "slice": v["slice"],
        "z_mm": v["z_mm"],
    }
    fixed = {key: v[key] for key in VOLUME_FEATURES}

    def element(e):
        stack = tf.gather(images, e["positions"])  # [2k + 1, H, W]
        out = {"image": tf.transpose(stack, [1, 2, 0]), "slice": e["slice"], "z_mm": e["z_mm"], **fixed}
        return {name: out[name] for name in FEATURE_NAMES}

    return tf.data.Dataset.from_tensor_slices(per_slice).map(element)


def tfrecord_files(path: str | os.PathLike | Sequence) -> list[str]:
    """Expand a file, a folder of ``*.tfrecord`` shards or a list of either into sorted file names."""
    if isinstance(path, (list, tuple)):
        return [f for p in path for f in tfrecord_files(p)]
    p = Path(path)
    if p.is_dir():
        return sorted(str(x) for x in p.glob("*.tfrecord") if not is_partial(x))  # unfinished shards aside
    return [str(p)]


def read_dataset(
    path, *, image_only: bool = False, context_slices: int = 0, num_parallel_reads=None, cycle_length: int = 1
):
    """Return a ``tf.data.Dataset`` over the slices of one or more TFRecord files.

    Elements are dicts of :data:`FEATURE_NAMES` (``image`` float32 [H, W, 2k + 1], ``k`` =
    ``context_slices``, the slice itself in channel ``k``), or just the image tensor when
    ``image_only``. ``cycle_length`` > 1 interleaves the slices of that many volumes (one slice
    of each in turn, deterministic), to mix volumes before a shuffle buffer; 1 gives the slices
    volume after volume, in the files' order. Files are streamed, never loaded whole: at most
    ``cycle_length`` volumes are held at once.
    """
    tf = _tf()
    files = tfrecord_files(path)
    if not files:
        raise FileNotFoundError(f"no TFRecord files at {path}")
    autotune = tf.data.AUTOTUNE
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=num_parallel_reads or autotune)
    k = int(context_slices)
    if int(cycle_length) > 1:
        ds = ds.interleave(lambda r: volume_slices(r, k), cycle_length=int(cycle_length), block_length=1)
    else:
        ds = ds.flat_map(lambda r: volume_slices(r, k))
    if image_only:
        ds = ds.map(lambda e: e["image"], num_parallel_calls=autotune)
    return ds
