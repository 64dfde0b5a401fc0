"""Tiny head-like phantoms in the project's TFRecord schema, for the training, evaluation and
figure tests: a disc with a bright (CT) or dark (MR) rim on the background -1."""

from __future__ import annotations

import numpy as np

from medcyclegan.io.tfrecords import volume_example, write_tfrecord

SIZE = 32

#: the networks the training tests train on these slices: one small U-Net, a small discriminator
TINY_NETWORKS = {
    "image_size": SIZE,
    "n_unets": 1,
    "unet_depth": 3,
    "unet_filters": 4,
    "disc_layers": 2,
    "disc_filters": 4,
}


def phantom(modality, k, size=SIZE):
    """A head-like disc: CT has a bright rim (skull), MR a dark rim; background -1."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5) / (size / 2)
    r = r * (1.0 + 0.05 * (k % 3))
    img = np.full((size, size), -1.0, np.float32)
    if modality == "ct":
        img[r < 0.8] = -0.45  # ~ +0 HU on [-1024, 3000]
        img[(r >= 0.65) & (r < 0.8)] = 0.0  # ~ 1000 HU skull
    else:
        img[r < 0.8] = 0.4
        img[(r >= 0.65) & (r < 0.8)] = -0.8
    return img


def write_domain(path, modality, n_volumes=2, n_slices=4, size=SIZE):
    """``n_volumes`` x ``n_slices`` phantom slices of ``modality`` (slice indices from 10) at ``path``,
    one record per volume."""
    lo, hi = (-1024.0, 3000.0) if modality == "ct" else (0.0, 1000.0)
    recs = []
    for v in range(n_volumes):
        meta = dict(
            subject=f"{modality}S{v}",
            volume=f"{modality}V{v}",
            slice=[10 + s for s in range(n_slices)],
            modality=modality,
            spacing=[1, 1, 1],
            z_mm=[float(s) for s in range(n_slices)],
            crop_offset=[0, 0],
            value_lo=lo,
            value_hi=hi,
            unit="HU" if modality == "ct" else "a.u.",
        )
        images = np.stack([phantom(modality, v * n_slices + s, size) for s in range(n_slices)])
        recs.append(volume_example(images, meta))
    write_tfrecord(path, recs)
    return path
