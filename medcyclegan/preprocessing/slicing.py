"""Axial slicing: useful-slice filter and the fixed-size window centred on the head."""

from __future__ import annotations

import numpy as np
import pandas as pd


def slice_table(
    mask: np.ndarray,
    spacing_zyx,
    *,
    min_head_area_mm2: float,
    min_head_fraction_of_max: float,
    max_depth_below_vertex_mm: float | None = None,
) -> pd.DataFrame:
    """One row per axial slice: head area, depth below the top of the head, kept or not and why.

    Canonical volumes run inferior -> superior, so the vertex is the highest slice with head in
    it. ``max_depth_below_vertex_mm`` keeps every modality to the same cranial range (a CQ500
    thin series stops at the skull base; an OASIS MR goes down to the neck), so the two domains
    of an unpaired model show the same anatomy.
    """
    pixel_area = float(spacing_zyx[1] * spacing_zyx[2])
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1) * pixel_area
    largest = float(areas.max()) if areas.size else 0.0
    occupied = np.flatnonzero(areas > 0)
    vertex = int(occupied[-1]) if occupied.size else 0
    rows = []
    for k, area in enumerate(areas):
        depth = (vertex - k) * float(spacing_zyx[0])
        if area == 0:
            reason = "no head in slice"
        elif area < min_head_area_mm2:
            reason = f"head area {area:.0f} mm2 < min_head_area_mm2 {min_head_area_mm2:g}"
        elif area < min_head_fraction_of_max * largest:
            reason = f"head area {area:.0f} mm2 < {min_head_fraction_of_max:g} x largest ({largest:.0f} mm2)"
        elif max_depth_below_vertex_mm is not None and depth > max_depth_below_vertex_mm:
            reason = (
                f"{depth:.0f} mm below the top of the head > max_depth_below_vertex_mm {max_depth_below_vertex_mm:g}"
            )
        else:
            reason = ""
        rows.append(
            {
                "slice": k,
                "head_area_mm2": round(float(area), 1),
                "depth_below_vertex_mm": round(depth, 1),
                "kept": reason == "",
                "reason": reason,
            }
        )
    return pd.DataFrame(rows, columns=["slice", "head_area_mm2", "depth_below_vertex_mm", "kept", "reason"])


def centred_window(mask: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left (row, col) of a ``size``x``size`` window centred on the mask's bounding box.

    ``mask`` is 2D or 3D (``[z, y, x]``; the union over slices is used, so every slice of a
    volume shares one window and the volume can be rebuilt). Offsets may be negative or run
    past the image: that part of the window is padding.
    """
    plane = mask.any(axis=0) if mask.ndim == 3 else mask
    rows = np.flatnonzero(plane.any(axis=1))
    cols = np.flatnonzero(plane.any(axis=0))
    if rows.size == 0:
        centre = np.array(plane.shape) / 2.0
    else:
        centre = np.array([(rows[0] + rows[-1] + 1) / 2.0, (cols[0] + cols[-1] + 1) / 2.0])
    top_left = np.floor(centre - size / 2.0).astype(int)
    return int(top_left[0]), int(top_left[1])


def extract_window(image: np.ndarray, top_left: tuple[int, int], size: int, fill: float) -> np.ndarray:
    """Crop/pad the last two axes of ``image`` to ``size``x``size`` starting at ``top_left``."""
    r0, c0 = top_left
    h, w = image.shape[-2:]
    out = np.full(image.shape[:-2] + (size, size), fill, dtype=image.dtype)
    src_r = slice(max(r0, 0), min(r0 + size, h))
    src_c = slice(max(c0, 0), min(c0 + size, w))
    if src_r.start < src_r.stop and src_c.start < src_c.stop:
        dst_r = slice(src_r.start - r0, src_r.stop - r0)
        dst_c = slice(src_c.start - c0, src_c.stop - c0)
        out[..., dst_r, dst_c] = image[..., src_r, src_c]
    return out


def place_window(window: np.ndarray, top_left: tuple[int, int], shape: tuple[int, int], fill: float) -> np.ndarray:
    """Inverse of :func:`extract_window`: put a window back into an image of ``shape``."""
    size = window.shape[-1]
    r0, c0 = top_left
    h, w = shape
    out = np.full(window.shape[:-2] + (h, w), fill, dtype=window.dtype)
    dst_r = slice(max(r0, 0), min(r0 + size, h))
    dst_c = slice(max(c0, 0), min(c0 + size, w))
    if dst_r.start < dst_r.stop and dst_c.start < dst_c.stop:
        out[..., dst_r, dst_c] = window[..., dst_r.start - r0 : dst_r.stop - r0, dst_c.start - c0 : dst_c.stop - c0]
    return out
