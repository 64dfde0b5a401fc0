"""Whole-mask synthesis of SynthRAD2023 volumes: the challenge scores the sCT over the patient's
whole ``mask.nii.gz``, so besides the slices the useful-slice filter kept, every canonical slice
holding any mask (or input head) voxel is translated, and the sCT is kept wherever the input's head
or the given mask is.

The extra slices are cut and scaled exactly as ``medcyclegan predict --full-head`` cuts them
(:func:`medcyclegan.inference.predict.slices_to_translate`, which calls
:func:`medcyclegan.preprocessing.volume.head_slices_beyond`), with "head" the union of the input's
head mask and the given mask. The evaluation (:mod:`medcyclegan.evaluation.volume`) builds the
baselines on the same slices, so all methods are scored on the same voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import SimpleITK as sitk


@dataclass
class WholeMaskSlices:
    arrays: dict  #: ``images``, ``slice``, ``top_left`` of every slice to translate (sorted)
    head: np.ndarray  #: canonical [z, y, x] bool: the input's head mask or the given mask
    n_added: int  #: slices translated beyond those the useful-slice filter kept


def given_mask_on(mask_path, canonical: sitk.Image) -> np.ndarray:
    """The given mask (e.g. SynthRAD's ``mask.nii.gz``) on the canonical grid, nearest neighbour."""
    from medcyclegan.inference.synthesis import to_reference

    img = sitk.Cast(sitk.ReadImage(str(mask_path)), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(to_reference(img, canonical, 0.0, sitk.sitkNearestNeighbor)) > 0.5


def whole_mask_slices(arrays: dict, canonical: sitk.Image, head: np.ndarray, given_mask=None) -> WholeMaskSlices:
    """The kept slices of a preprocessed stack (``arrays``: its ``.npz``) plus every other canonical
    slice holding ``head`` (the input's head mask) or ``given_mask`` (canonical bool, or None)."""
    from medcyclegan.inference.predict import PreparedInput, slices_to_translate

    union = np.asarray(head, bool).copy()
    if given_mask is not None:
        union |= np.asarray(given_mask, bool)
    prepared = PreparedInput(image=None, canonical=canonical, sliced=_slice_set(arrays, canonical, union), info={})
    translated, n_added = slices_to_translate(prepared, full_head=True)
    return WholeMaskSlices(translated, union, n_added)


def _slice_set(arrays: dict, canonical: sitk.Image, union: np.ndarray):
    """The stack as the :class:`~medcyclegan.preprocessing.volume.SliceSet` the predict path works on,
    with ``union`` as its head mask (its table: which slices were kept, which hold ``union``)."""
    from medcyclegan.preprocessing.volume import SliceSet

    kept = np.asarray(arrays["slice"], np.int64)
    nz = union.shape[0]
    sx, sy, _ = canonical.GetSpacing()
    table = pd.DataFrame(
        {
            "slice": np.arange(nz, dtype=np.int64),
            "kept": np.isin(np.arange(nz), kept),
            "head_area_mm2": union.reshape(nz, -1).sum(1) * float(sx * sy),
        }
    )
    return SliceSet(
        volume=str(arrays.get("volume", "")),
        subject=str(arrays.get("subject", "")),
        modality=str(arrays["modality"]),
        images=np.asarray(arrays["images"], np.float32),
        slices=kept,
        z_mm=np.asarray(arrays.get("z_mm", np.zeros(kept.size)), np.float64),
        top_left=tuple(int(v) for v in arrays["top_left"]),
        value_lo=float(arrays["value_lo"]),
        value_hi=float(arrays["value_hi"]),
        spacing=tuple(float(v) for v in arrays.get("spacing", (sy, sx, canonical.GetSpacing()[2]))),
        canonical_shape=tuple(int(v) for v in union.shape),
        canonical_origin=tuple(float(v) for v in canonical.GetOrigin()),
        table=table,
        mask=union,
    )
