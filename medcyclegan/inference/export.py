"""Exporting trained generators as SavedModels that load without this package.

A model folder gets one SavedModel per direction (``{src}2ct``, ``ct2{src}``), each with a
``serve`` endpoint that takes slices of any size, ``manifest.json`` describing them, and, when
the workflow passes it, ``preprocessing.json``: the settings the training slices were made with,
so the folder alone is enough to translate a new volume.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medcyclegan.config.tasks import TASKS
from medcyclegan.inference.runtime import MANIFEST_FILE, PREPROCESSING_FILE
from medcyclegan.io import atomic as io


def export_generator(model, path, image_size: int, tiled: bool = False) -> None:
    """Write ``model`` as a TF SavedModel with endpoint ``serve``.

    ``serve(x)``: ``x`` float32 [B, H, W, C] in [-1, 1] of any size, ``C`` the model's input
    channels (1, or ``2k + 1`` for a source->CT generator with 2.5D context); returns [B, H, W, 1].
    A model trained on whole resized slices resizes ``x`` to the training size (area averaging
    down, bilinear up), translates, and resizes back. A model trained on patches (``tiled``)
    translates at the input's own resolution, in ``image_size`` windows at half-window steps
    (the slice padded with the background -1 to fit) blended with a Hann window: each window is
    normalised like the training patches, which a whole-slice pass through instance norm is not.
    Loads with ``tf.saved_model.load(path).serve`` or ``keras.layers.TFSMLayer(path,
    call_endpoint="serve")``: no custom classes, no medcyclegan import.
    """
    size = int(image_size)
    channels = int(model.input_shape[-1])
    serve = _serve_tiled(model, size) if tiled else _serve_resized(model, size, channels)
    with io.atomic_dir(path) as tmp:
        _write_saved_model(model, serve, tmp, channels)


def _serve_resized(model, size: int, channels: int = 1):
    """``serve`` of a whole-slice model: resize to ``size``, translate, resize back."""
    import tensorflow as tf

    def serve(x):
        x = tf.cast(x, tf.float32)
        hw = tf.shape(x)[1:3]
        same = tf.reduce_all(tf.equal(hw, size))
        down = tf.reduce_all(hw >= size)
        xi = tf.cond(
            same,
            lambda: x,
            lambda: tf.cond(
                down,
                lambda: tf.image.resize(x, [size, size], method="area"),
                lambda: tf.image.resize(x, [size, size], method="bilinear"),
            ),
        )
        xi = tf.ensure_shape(xi, [None, size, size, channels])
        y = tf.cast(model(xi, training=False), tf.float32)
        y = tf.cond(same, lambda: y, lambda: tf.image.resize(y, hw, method="bilinear"))
        return tf.clip_by_value(y, -1.0, 1.0)

    return serve


def _serve_tiled(model, size: int):
    """``serve`` of a patch-trained model: Hann-blended ``size`` windows at half-window steps."""
    import tensorflow as tf

    hann = np.hanning(size + 2)[1:-1]
    tile_weight = np.outer(hann, hann).astype(np.float32)  # > 0 everywhere: every pixel gets a weight

    def serve(x):
        x = tf.cast(x, tf.float32)
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        stride = size // 2
        # pad (background -1) so that windows at multiples of the stride cover the slice exactly
        hp = size + tf.cast(tf.math.ceil(tf.maximum(h - size, 0) / stride), tf.int32) * stride
        wp = size + tf.cast(tf.math.ceil(tf.maximum(w - size, 0) / stride), tf.int32) * stride
        top, left = (hp - h) // 2, (wp - w) // 2
        xp = tf.pad(x, [[0, 0], [top, hp - h - top], [left, wp - w - left], [0, 0]], constant_values=-1.0)
        weight = tf.constant(tile_weight[None, :, :, None])
        n_cols = (wp - size) // stride + 1

        def add_window(k, out, acc):
            r, c = (k // n_cols) * stride, (k % n_cols) * stride
            y = tf.cast(model(xp[:, r : r + size, c : c + size, :], training=False), tf.float32)
            pads = [[0, 0], [r, hp - r - size], [c, wp - c - size], [0, 0]]
            return k + 1, out + tf.pad(y * weight, pads), acc + tf.pad(weight, pads)

        n_windows = ((hp - size) // stride + 1) * n_cols
        _, out, acc = tf.while_loop(
            lambda k, *_: k < n_windows,
            add_window,
            (0, tf.zeros_like(xp[..., :1]), tf.zeros([1, hp, wp, 1], tf.float32)),
        )
        y = (out / acc)[:, top : top + h, left : left + w, :]
        return tf.clip_by_value(y, -1.0, 1.0)

    return serve


def _write_saved_model(model, serve, path: Path, channels: int = 1) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)])
    archive.write_out(str(path), verbose=False)


def export_models(
    g_src2ct,
    g_ct2src,
    model_dir,
    task: str,
    image_size: int,
    step: int,
    ct_value_range,
    fingerprint: str = "",
    tiled: bool = False,
    preprocessing: dict | None = None,
    context_slices: int = 0,
) -> dict:
    """Export both generators to ``model_dir/{src}2ct`` and ``model_dir/ct2{src}`` plus ``manifest.json``.

    ``tiled`` (patch-trained models): translate at the input's resolution in overlapping windows.
    ``preprocessing``: the record of how the training slices were made, written as
    ``model_dir/preprocessing.json``.
    ``context_slices``: k of a 2.5D-context ``g_src2ct`` (input [B, H, W, 2k + 1]), kept in the manifest.
    """
    src = TASKS[task]
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    names = {"to_ct": f"{src}2ct", "from_ct": f"ct2{src}"}
    export_generator(g_src2ct, model_dir / names["to_ct"], image_size, tiled)
    export_generator(g_ct2src, model_dir / names["from_ct"], image_size, tiled)
    if preprocessing is not None:
        write_preprocessing(model_dir, preprocessing)
    manifest = model_manifest(task, names, image_size, step, ct_value_range, fingerprint, tiled, context_slices)
    io.write_text(model_dir / MANIFEST_FILE, json.dumps(manifest, indent=2))
    return manifest


def model_manifest(
    task: str,
    names: dict,
    image_size: int,
    step: int,
    ct_value_range,
    fingerprint: str,
    tiled: bool,
    context_slices: int = 0,
):
    """What ``manifest.json`` says: the task, each generator's folder and I/O, the CT value range,
    ``context_slices`` (k: ``to_ct`` takes each slice with its k neighbours on each side)."""
    src = TASKS[task]
    lo, hi = (float(v) for v in ct_value_range)
    how = (
        f"resized internally to {image_size}x{image_size} and back"
        if not tiled
        else f"translated at its own resolution in overlapping {image_size}x{image_size} windows (the training "
        "patch size) at half-window steps, blended with a Hann window"
    )
    k = int(context_slices)

    def io_doc(channels: int) -> str:
        what = (
            f"x float32 [batch, H, W, {channels}]: each slice with its {k} neighbours on each side "
            f"(slice i-{k} first, the slice itself in channel {k}; at the volume's edges the nearest "
            "stored slice toward the centre repeats, medcyclegan.io.context.context_indices)"
            if channels > 1
            else "x float32 [batch, H, W, 1]"
        )
        return f"serve(x): {what}, scaled to [-1, 1] like the TFRecord 'image' feature; {how}; returns [batch, H, W, 1] in [-1, 1]"

    return {
        "task": task,
        "source_modality": src,
        "image_size": int(image_size),
        "patches": bool(tiled),
        "context_slices": k,
        "step": int(step),
        "fingerprint": fingerprint,
        "ct_value_range": [lo, hi],
        "ct_unit": "HU",
        "to_hu": "HU = ct_value_range[0] + (y + 1) / 2 * (ct_value_range[1] - ct_value_range[0])",
        "generators": {
            "to_ct": {
                "path": names["to_ct"],
                "input": src,
                "output": "ct",
                "endpoint": "serve",
                "doc": io_doc(2 * k + 1),
            },
            "from_ct": {"path": names["from_ct"], "input": "ct", "output": src, "endpoint": "serve", "doc": io_doc(1)},
        },
        "load_with": "tf.saved_model.load(path).serve(x)  or  keras.layers.TFSMLayer(path, call_endpoint='serve')",
    }


def write_preprocessing(model_dir, record: dict) -> Path:
    """Keep ``record`` (:func:`~medcyclegan.config.settings.modality_settings`) in the model folder."""
    path = Path(model_dir) / PREPROCESSING_FILE
    io.write_json(path, record)
    return path
