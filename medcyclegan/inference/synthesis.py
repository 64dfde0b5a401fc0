"""Whole-volume synthetic CT in the input's own geometry.

The generator works on 256x256 axial windows of the canonical (1 mm, LPS) volume. To give a
user a CT-like volume that overlays the MR/PET they started from, every step of the
preprocessing is undone in reverse order:

1. translate the kept (useful) slices; map the output to HU with the model's own
   ``ct_value_range`` (what training saw); voxels outside the input's head mask, and every slice
   the filter dropped, get the CT background (-1024 HU): the input holds no head there;
2. put each 256x256 window back at its place in the canonical slice (undo pad/crop);
3. resample the canonical volume onto the ORIGINAL file's voxel grid (SimpleITK, linear, with
   Gaussian anti-aliasing when the original is coarser), the grid being read from that file's
   own header;
4. write with the original file's exact affine (qform and sform, with their codes) and its spatial
   shape, through nibabel, in a fresh header (nothing else of the input's header is copied).

A volume the workflow preprocessed is synthesised by :func:`synthesize_job`; a user's own file goes
through the same preprocessing first (:mod:`medcyclegan.inference.predict`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medcyclegan.io import atomic as io
from medcyclegan.io.placeholders import write_rejected_nifti
from medcyclegan.io.slices import read_stack
from medcyclegan.preprocessing.geometry import BACKGROUND, anti_alias
from medcyclegan.preprocessing.intensity import to_physical
from medcyclegan.preprocessing.slicing import place_window
from medcyclegan.privacy import FILE_REF, referenced_paths

log = logging.getLogger("medcyclegan.synthesis")

CT_BACKGROUND = BACKGROUND["ct"]


# ----------------------------------------------------------------------------- geometry


def reference_grid(path) -> sitk.Image:
    """An empty 3D image with exactly the voxel grid of the NIfTI at ``path`` (first 3 axes).

    The grid comes from nibabel's affine of the file (converted to LPS), as ingest reads it, so
    voxel (i, j, k) here is voxel (i, j, k) of the file; a 4D PET gives its spatial grid.
    """
    import nibabel as nib

    from medcyclegan.ingest.nifti import nifti_affine_lps

    nimg = nib.load(str(path))
    origin, spacing, direction = nifti_affine_lps(path, nimg)
    ref = sitk.Image([int(v) for v in nimg.shape[:3]], sitk.sitkFloat32)
    ref.SetOrigin([float(v) for v in origin])
    ref.SetSpacing([float(v) for v in spacing])
    ref.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    return ref


def to_reference(img: sitk.Image, reference: sitk.Image, default: float, interpolator=sitk.sitkLinear) -> sitk.Image:
    """Resample ``img`` onto ``reference``'s grid; anti-aliased when the reference is coarser."""
    img = sitk.Cast(img, sitk.sitkFloat32)
    if interpolator != sitk.sitkNearestNeighbor:
        # physical spacing of the reference along x, y, z (its axes may be permuted or oblique)
        d = np.abs(np.array(reference.GetDirection()).reshape(3, 3))
        img = anti_alias(img, d @ np.array(reference.GetSpacing()))
    return sitk.Resample(img, reference, sitk.Transform(), interpolator, float(default), sitk.sitkFloat32)


def write_like(path, image: sitk.Image, original_path, dtype=np.int16) -> None:
    """Write ``image`` (on ``original_path``'s grid) with the original's exact affine and shape.

    A fresh NIfTI header: only the qform/sform (with their codes) and units come from the
    original, so no free-text header field of the input is carried over.
    """
    import nibabel as nib

    orig = nib.load(str(original_path))
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # [z, y, x] -> nibabel [i, j, k]
    if tuple(data.shape) != tuple(orig.shape[:3]):
        raise ValueError(f"image grid {data.shape} is not the original's {orig.shape[:3]}")
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    out = nib.Nifti1Image(np.ascontiguousarray(data.astype(dtype)), orig.affine)
    qform, qcode = orig.header.get_qform(coded=True)
    sform, scode = orig.header.get_sform(coded=True)
    if qform is not None and qcode:
        out.set_qform(qform, int(qcode))
    else:
        out.set_qform(None, 0)
    if sform is not None and scode:
        out.set_sform(sform, int(scode))
    else:
        out.set_sform(None, 0)
    out.header.set_xyzt_units(*orig.header.get_xyzt_units())
    out.header.set_data_dtype(dtype)
    out.header["descrip"] = b"synthetic CT (HU), medcyclegan"
    io.write_nifti(path, out)


# ----------------------------------------------------------------------------- synthesis


def translate(
    generator,
    images: np.ndarray,
    ct_value_range,
    batch_size: int = 8,
    flip_average: bool = True,
    *,
    slice_index=None,
    context_slices: int = 0,
) -> np.ndarray:
    """[n, H, W] source slices in [-1, 1] -> [n, H, W] synthetic CT in HU.

    ``flip_average``: also translate the left-right mirrored slices, mirror the result back and
    average the two (test-time augmentation). The generators are trained with random left-right
    flips, so both passes are equally valid predictions; their mean damps the errors the two
    do not share (on the demo: MR 191 -> 174 HU MAE, PET 296 -> 288) at twice the cost.

    ``context_slices`` = k > 0 (a model whose manifest says so): each slice goes in with its k
    neighbours on each side, [n, H, W, 2k + 1], by :func:`medcyclegan.io.context.context_indices`
    over ``slice_index`` (the slices' axial indices in their volume, [n]; None: ``images`` are
    consecutive slices of one volume); the mirrored pass mirrors the whole stack.
    """
    images = np.asarray(images, np.float32)
    if images.shape[0] == 0:
        return np.zeros(images.shape, np.float32)
    x = context_input(images, slice_index, context_slices)
    out = np.asarray(generator(x, batch_size=batch_size))[..., 0]
    if flip_average:
        mirrored = np.ascontiguousarray(x[:, :, ::-1, :])
        out = 0.5 * (out + np.asarray(generator(mirrored, batch_size=batch_size))[:, :, ::-1, 0])
    lo, hi = (float(v) for v in ct_value_range)
    return to_physical(np.clip(out, -1.0, 1.0), lo, hi)


def context_input(images: np.ndarray, slice_index=None, context_slices: int = 0) -> np.ndarray:
    """The generator's input for [n, H, W] slices: [n, H, W, 1], or the [n, H, W, 2k + 1] context
    stacks for ``context_slices`` = k > 0 (see :func:`translate`)."""
    from medcyclegan.io.context import context_stacks

    images = np.asarray(images, np.float32)
    if int(context_slices) == 0:
        return images[..., None]
    return np.ascontiguousarray(context_stacks(images, slice_index, int(context_slices)))


def canonical_volume(
    windows_hu: np.ndarray, slices, top_left, canonical_shape, head_mask=None, background: float = CT_BACKGROUND
) -> np.ndarray:
    """Stack translated windows back into the canonical [z, y, x] array (undo the pad/crop).

    Slices not in ``slices`` (dropped by the useful-slice filter) and voxels outside
    ``head_mask`` (the input's head, canonical grid) are ``background``.
    """
    nz, ny, nx = (int(v) for v in canonical_shape)
    vol = np.full((nz, ny, nx), background, dtype=np.float32)
    slices = np.asarray(slices, dtype=np.int64)
    if slices.size:
        vol[slices] = place_window(
            np.asarray(windows_hu, np.float32), tuple(int(v) for v in top_left), (ny, nx), background
        )
    if head_mask is not None:
        vol[~np.asarray(head_mask, bool)] = background
    return vol


def as_image(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(np.asarray(array, np.float32))
    img.CopyInformation(like)
    return img


def on_input_grid(
    canonical_hu: np.ndarray, canonical_like: sitk.Image, original, hu_range=(CT_BACKGROUND, 3000.0)
) -> sitk.Image:
    """Canonical HU array -> the input's voxel grid: ``original`` is the input NIfTI's path (its
    header gives the grid) or an image on the input's grid (a DICOM series, read in memory).

    Clamped to ``hu_range`` after resampling: the anti-aliasing filter rings by a few HU at the
    head's edge, and the model cannot produce values outside its range anyway.
    """
    ref = original if isinstance(original, sitk.Image) else reference_grid(original)
    out = to_reference(as_image(canonical_hu, canonical_like), ref, CT_BACKGROUND)
    return sitk.Clamp(out, sitk.sitkFloat32, float(hu_range[0]), float(hu_range[1]))


def write_synthetic_ct(out_path, image: sitk.Image, original) -> None:
    """Write the sCT (int16 HU): with the input NIfTI's exact affine and shape when ``original`` is
    its path, else with ``original``'s grid (an image: NIfTI through SimpleITK, LPS -> RAS)."""
    if isinstance(original, sitk.Image):  # rounded as write_like and the DICOM writer round (half to even)
        info = np.iinfo(np.int16)
        rounded = np.clip(np.rint(sitk.GetArrayFromImage(image)), info.min, info.max).astype(np.int16)
        out = sitk.GetImageFromArray(rounded)
        out.CopyInformation(image)
        io.write_image(out_path, out)
    else:
        write_like(out_path, image, original)


def synthesize_image(
    generator,
    ct_value_range,
    sliced: dict,
    canonical_like: sitk.Image,
    head_mask,
    original,
    batch_size: int = 8,
    flip_average: bool = True,
    context_slices: int = 0,
) -> tuple[sitk.Image, dict]:
    """(sCT on the input's grid, info) of a preprocessed volume (``sliced``: its slices' arrays;
    ``context_slices``: the model's 2.5D context, from its manifest)."""
    hu = translate(
        generator,
        sliced["images"],
        ct_value_range,
        batch_size,
        flip_average,
        slice_index=sliced["slice"],
        context_slices=context_slices,
    )
    vol = canonical_volume(hu, sliced["slice"], sliced["top_left"], canonical_like.GetSize()[::-1], head_mask)
    image = on_input_grid(vol, canonical_like, original, ct_value_range)
    info = {
        "n_slices_translated": int(len(sliced["slice"])),
        "n_canonical_slices": int(canonical_like.GetSize()[2]),
        "ct_value_range": [float(v) for v in ct_value_range],
        "flip_average": bool(flip_average),
    }
    return image, info


def synthesize_preprocessed(
    generator,
    ct_value_range,
    sliced: dict,
    canonical_like: sitk.Image,
    head_mask,
    original_path,
    out_path,
    batch_size: int = 8,
    flip_average: bool = True,
    context_slices: int = 0,
) -> dict:
    """sCT for a volume the workflow already preprocessed, written to ``out_path``."""
    image, info = synthesize_image(
        generator,
        ct_value_range,
        sliced,
        canonical_like,
        head_mask,
        original_path,
        batch_size,
        flip_average,
        context_slices,
    )
    write_synthetic_ct(out_path, image, original_path)
    log.info(
        "%s: %d of %d canonical slices translated, written on the grid of the input file",
        out_path,
        info["n_slices_translated"],
        info["n_canonical_slices"],
    )
    return info


def original_input(info_json, source, id_key: str = "") -> Path:
    """The raw file a volume was ingested from: ``ingest.file`` of its info JSON under ``source``,
    a pseudonymous reference (:mod:`medcyclegan.privacy`) resolved on this machine with ``id_key``."""
    source = Path(source)
    if source.is_file():
        return source
    ref = str(json.loads(Path(info_json).read_text()).get("ingest", {}).get("file") or "")
    if ref and not FILE_REF.fullmatch(ref):  # a layout name (mr.nii.gz) is written as it is
        found = [str(source / ref)] if (source / ref).is_file() else []
    else:
        found = [p for p in referenced_paths(source, ref, id_key) if Path(p).is_file()]
    if len(found) != 1:
        raise ValueError(
            f"{info_json}: ingest.file {ref or '(none)'} names {len(found)} files under the volume's input, not one; "
            f"was the input changed, or privacy.id_key, since it was ingested?"
        )
    return Path(found[0])


def synthesize_job(
    model_dir,
    npz_path,
    mask_path,
    canonical_path,
    info_json,
    source,
    out_path,
    batch_size: int = 8,
    flip_average: bool = True,
    id_key: str = "",
    whole_mask: bool = False,
    given_mask_path=None,
) -> dict:
    """Workflow job: sCT of one preprocessed test volume, on its original file's grid.

    ``whole_mask`` (SynthRAD2023): also translate every slice holding the input's head or the
    given mask (``given_mask_path``, SynthRAD's ``mask.nii.gz``), and keep the sCT inside either
    (:mod:`medcyclegan.inference.whole_mask`); else only the kept slices, inside the input's head.
    """
    from medcyclegan.inference.runtime import generator_path, load_generator, load_manifest

    manifest = load_manifest(model_dir)
    arrays, rejection = read_stack(npz_path)
    if rejection is not None:  # the input was rejected upstream: a placeholder carries the reason
        write_rejected_nifti(out_path, rejection)
        log.warning("%s: input volume rejected upstream, placeholder written", out_path)
        return {"rejected": True}
    sliced = {k: arrays[k] for k in ("images", "slice", "top_left")}
    canonical = sitk.ReadImage(str(canonical_path), sitk.sitkFloat32)
    head = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))) > 0
    n_added = 0
    if whole_mask:
        from medcyclegan.inference.whole_mask import given_mask_on, whole_mask_slices

        given = given_mask_on(given_mask_path, canonical) if given_mask_path else None
        extended = whole_mask_slices(arrays, canonical, head, given)
        sliced, head, n_added = extended.arrays, extended.head, extended.n_added
        log.info("%s: whole mask: %d slice(s) beyond the useful-slice slab translated", out_path, n_added)
    original = original_input(info_json, source, id_key)
    gen = load_generator(generator_path(model_dir, "to_ct"))
    info = synthesize_preprocessed(
        gen,
        manifest["ct_value_range"],
        sliced,
        canonical,
        head,
        original,
        out_path,
        batch_size,
        flip_average,
        manifest["context_slices"],
    )
    return {**info, "whole_mask": bool(whole_mask), "n_slices_beyond_slab": int(n_added)}
