"""Head phantoms with a known geometry (any axis order, spacing, obliquity) as NIfTI files, and
a stand-in generator: what the synthesis and predict tests need to check where a voxel ends up."""

from __future__ import annotations

import nibabel as nib
import numpy as np

AXES = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}
MARKER_RAS = np.array([28.0, 22.0, 35.0])  # off-centre: right, anterior, superior of the head centre
HEAD_RAS = np.array([3.0, -8.0, 15.0])


def affine_for(codes, shape, zooms, centre):
    a = np.eye(4)
    a[:3, :3] = np.array([AXES[c] for c in codes], float).T * np.asarray(zooms, float)
    a[:3, 3] = np.asarray(centre, float) - a[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return a


def phantom(path, codes="PIL", shape=(150, 170, 130), zooms=(1.3, 1.1, 1.4), marker=True, oblique_deg=0.0):
    """A head-like ellipsoid with a smooth intensity gradient and (optionally) a bright sphere."""
    affine = affine_for(codes, shape, zooms, (0.0, 0.0, 10.0))
    if oblique_deg:
        t = np.deg2rad(oblique_deg)
        rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
        affine[:3, :] = rot @ affine[:3, :]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    d = (ras - HEAD_RAS) / np.array([70.0, 88.0, 75.0])
    head = (d**2).sum(1) <= 1
    values = np.where(head, 90.0 + 0.4 * (ras[:, 2] - HEAD_RAS[2]) + 0.2 * ras[:, 0], 0.0)
    if marker:
        values[np.linalg.norm(ras - MARKER_RAS, axis=1) <= 5.0] = 400.0
    img = nib.Nifti1Image(values.reshape(shape).astype(np.float32), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return affine


def model_folder(path, task: str, modality: str, context_slices: int = 0):
    """A model folder with a manifest (2.5D context of ``context_slices``) and the shipped config's
    preprocessing record of ``modality`` but no SavedModel: for predict tests that pass
    :func:`identity_generator`."""
    import json
    from pathlib import Path

    import yaml

    from medcyclegan.config.settings import modality_settings
    from medcyclegan.config.validation import validate_config
    from medcyclegan.inference.export import write_preprocessing
    from medcyclegan.testing.workflow import ROOT

    path = Path(path)
    path.mkdir()
    manifest = {
        "task": task,
        "source_modality": modality,
        "step": 0,
        "ct_value_range": [-1024.0, 3000.0],
        "context_slices": int(context_slices),
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    config = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    write_preprocessing(path, modality_settings(config, modality))
    return path


def identity_generator(x, batch_size: int = 8):
    """Stands in for a trained generator: output = input, so HU follow the input's intensities."""
    return np.asarray(x, np.float32)


def marker_world(path, reference=None):
    """World (RAS) position of the marker: weighted centroid of the voxels it brightens."""
    img = nib.load(str(path))
    data = np.asarray(img.dataobj, np.float64)
    if reference is not None:
        data = data - np.asarray(nib.load(str(reference)).dataobj, np.float64)
    sel = data > 0.5 * data.max()
    ijk = np.argwhere(sel)
    w = data[sel]
    c = (ijk * w[:, None]).sum(0) / w.sum()
    return img.affine[:3, :3] @ c + img.affine[:3, 3]
