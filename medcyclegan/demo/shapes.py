"""Shapes for building the demo phantom: signed-distance fields (ellipsoids, smooth unions,
distance maps of masks), smooth noise, and a painter that writes labels into a volume only inside
each shape's bounding box, so the phantom builds in seconds."""

from __future__ import annotations

import numpy as np


def smin(a, b, k):
    """Polynomial smooth minimum (smooth union of signed distance fields)."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def ellipsoid_sdf(x, y, z, c, r):
    """Approximate signed distance to an ellipsoid (negative inside), broadcasting coords."""
    px, py, pz = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    k0 = np.sqrt(px * px + py * py + pz * pz)
    k1 = np.sqrt((px / r[0]) ** 2 + (py / r[1]) ** 2 + (pz / r[2]) ** 2)
    return (k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)).astype(np.float32)


def smooth_noise(shape, seed, sigma):
    """Gaussian-smoothed white noise of unit standard deviation, from its own seed."""
    from scipy import ndimage as ndi

    n = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    n = ndi.gaussian_filter(n, sigma)
    return n / (n.std() + 1e-12)


def signed_distance(mask: np.ndarray, spacing: float = 1.0) -> np.ndarray:
    """Signed Euclidean distance (mm, negative inside) of a boolean volume of isotropic spacing."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing((spacing,) * 3)
    d = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return sitk.GetArrayViewFromImage(d).astype(np.float32)


def upsample(a: np.ndarray, shape) -> np.ndarray:
    """Linear upsampling with aligned corners (SimpleITK: multithreaded, faster than ndi.zoom)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(a, dtype=np.float32))
    img.SetSpacing([(n - 1) / (m - 1) for n, m in zip(shape[::-1], a.shape[::-1])])
    ref = sitk.Image([int(v) for v in shape[::-1]], sitk.sitkFloat32)
    out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


class Painter:
    """Paints labels on a 1 mm grid whose first voxel is at ``origin`` (RAS mm), evaluating shapes
    only inside their bounding boxes."""

    def __init__(self, label, shape, origin):
        self.label = label
        self.shape = shape
        self.x0, self.y0, self.z0 = origin

    def box(self, lo, hi):
        """Index slices and broadcast coordinates of the RAS box [lo, hi] (clipped to the grid)."""
        sl, coords = [], []
        for ax, (a, b) in enumerate(zip(lo, hi)):
            g0 = (self.x0, self.y0, self.z0)[ax]
            n = self.shape[ax]
            i0 = int(np.clip(np.floor(a - g0), 0, n))
            i1 = int(np.clip(np.ceil(b - g0) + 1, 0, n))
            sl.append(slice(i0, i1))
            c = np.arange(i0, i1, dtype=np.float32) + g0
            shp = [1, 1, 1]
            shp[ax] = -1
            coords.append(c.reshape(shp))
        return tuple(sl), coords

    def ellipsoid(self, c, r, value, where=None, shell=None):
        """Paint an ellipsoid (or, with ``shell``, a shell of that thickness around it)."""
        pad = (shell or 0) + 1
        sl, (x, y, z) = self.box(np.subtract(c, r) - pad, np.add(c, r) + pad)
        d = ellipsoid_sdf(x, y, z, c, r)
        m = (d <= 0) if shell is None else ((d > 0) & (d <= shell))
        if where is not None:
            m &= where(x, y, z, sl)
        self.label[sl][m] = value
        return sl, m
