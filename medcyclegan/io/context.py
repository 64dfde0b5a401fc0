"""2.5D context (``training.context_slices: k``): which stored slices form each slice's stack.

A slice is translated together with its ``k`` neighbours on each side, as ``2k + 1`` input
channels with the slice itself in the middle channel (channel ``k``). The neighbours come from
the same volume; the rule, for the slice at axial index ``s`` and the channel of offset ``d``
(``-k <= d <= k``): take the stored slice ``s + d``; where there is none (past the volume's edge,
or a slice the useful-slice filter dropped) take the nearest stored one toward the centre,
``s + d - sign(d)``, ``s + d - 2 sign(d)``, ... down to ``s`` itself (edge repeat).

:func:`context_indices` is the rule in numpy (inference, figures, evaluation);
:func:`context_indices_tf` is the same rule in TensorFlow (the TFRecord reader). Both return
*positions* into the volume's stored slices, not axial indices.
"""

from __future__ import annotations

import numpy as np


def context_channels(k: int) -> int:
    """Number of input channels of the source->CT generator: ``2k + 1``."""
    return 2 * int(k) + 1


def context_indices(slice_index, k: int) -> np.ndarray:
    """``[n, 2k + 1]`` positions into ``slice_index`` (the stored slices' axial indices, [n]):
    row ``i`` lists the slices of slice ``i``'s stack, offset ``-k`` first; see the module docstring."""
    s = np.asarray(slice_index, np.int64).reshape(-1)
    k = int(k)
    if k < 0:
        raise ValueError(f"context_slices must be >= 0, got {k}")
    n = s.size
    centre = np.arange(n, dtype=np.int64)
    out = np.repeat(centre[:, None], 2 * k + 1, axis=1)
    if n == 0 or k == 0:
        return out
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    for d in range(-k, k + 1):
        step = 1 if d > 0 else -1
        for j in range(1, abs(d) + 1):  # nearest first: a farther stored slice overrides a nearer one
            target = s + step * j
            p = np.clip(np.searchsorted(sorted_s, target), 0, n - 1)
            found = sorted_s[p] == target
            out[found, d + k] = order[p[found]]
    return out


def context_indices_tf(slice_index, k: int):
    """:func:`context_indices` in TensorFlow: ``slice_index`` int64 [n] -> int64 [n, 2k + 1]."""
    import tensorflow as tf

    s = tf.reshape(tf.cast(slice_index, tf.int64), [-1])
    n = tf.shape(s, out_type=tf.int64)[0]
    centre = tf.range(n, dtype=tf.int64)
    columns = []
    for d in range(-int(k), int(k) + 1):
        step = 1 if d > 0 else -1
        col = centre
        for j in range(1, abs(d) + 1):
            eq = tf.equal((s + step * j)[:, None], s[None, :])  # [n, n]: which stored slice is the target
            col = tf.where(
                tf.reduce_any(eq, axis=1), tf.argmax(tf.cast(eq, tf.int32), axis=1, output_type=tf.int64), col
            )
        columns.append(col)
    return tf.stack(columns, axis=1)


def context_stacks(images: np.ndarray, slice_index, k: int) -> np.ndarray:
    """``[n, H, W]`` stored slices -> ``[n, H, W, 2k + 1]`` stacks (centre in channel ``k``)."""
    images = np.asarray(images)
    if slice_index is None:
        slice_index = np.arange(images.shape[0])
    pos = context_indices(slice_index, k)
    return np.moveaxis(images[pos], 1, -1)
