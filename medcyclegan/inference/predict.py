"""Bring your own volume: synthetic CT from one MR or PET file (``medcyclegan predict``, rule
``predict_volume``).

The input goes through the workflow's own path, with the settings the training volumes were made
with (``preprocessing.json`` in the model folder, see :mod:`medcyclegan.config.settings`):
ingest (read, plausibility check), canonical grid, preprocessing (head mask, useful slices,
window, head-volume check); then the slices are translated and put back on the input's grid
(:mod:`medcyclegan.inference.synthesis`). A volume the workflow would reject is refused with the
same message (:class:`~medcyclegan.errors.BadInput`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medcyclegan.config.settings import ingest_settings, preprocess_settings
from medcyclegan.inference.runtime import load_preprocessing
from medcyclegan.inference.synthesis import synthesize_image, write_synthetic_ct
from medcyclegan.ingest.dicom_series import is_dicom_folder
from medcyclegan.ingest.volume import read_plausible_volume
from medcyclegan.preprocessing.volume import SliceSet, canonical_image, head_slices_beyond, preprocess_plausible

log = logging.getLogger("medcyclegan.predict")


@dataclass
class PreparedInput:
    """One input, read and preprocessed as the workflow's ingest and preprocess_volume jobs do."""

    image: sitk.Image  #: on the input's own grid (the sCT's grid)
    canonical: sitk.Image
    sliced: SliceSet
    info: dict  #: what ingest recorded (for a DICOM series: which series, its orientation)


def preprocess_input(input_path, settings: dict, tracer: str | None = None) -> PreparedInput:
    """Read and preprocess one input file or DICOM folder, in memory."""
    modality = settings["modality"]
    ingest = ingest_settings(settings)
    spacing_mm = ingest.pop("spacing_mm")
    img, info = read_plausible_volume(modality, input_path, tracer=tracer, **ingest)
    canonical = canonical_image(img, modality, spacing_mm)
    name = Path(str(input_path)).name.split(".")[0] or "input"
    sliced = preprocess_plausible(
        canonical, modality=modality, volume=name, subject=name, where=input_path, **preprocess_settings(settings)
    )
    if len(sliced.slices) == 0:
        raise ValueError(f"{input_path}: no useful axial slice (no head found with the model's masking settings)")
    return PreparedInput(img, canonical, sliced, info)


def slices_to_translate(prepared: PreparedInput, full_head: bool) -> tuple[dict, int]:
    """The arrays to translate and how many of their slices lie outside the trained range
    (``full_head``: every slice holding head, not only those the useful-slice filter kept)."""
    sliced = prepared.sliced
    images, slices = sliced.images, sliced.slices
    extra = np.zeros(0, np.int64)
    if full_head:
        extra_images, extra = head_slices_beyond(sliced, prepared.canonical)
        order = np.argsort(np.concatenate([slices, extra]), kind="stable")
        images = np.concatenate([images, extra_images])[order]
        slices = np.concatenate([slices, extra])[order]
    return {"images": images, "slice": slices, "top_left": np.array(sliced.top_left)}, int(extra.size)


def predict(
    model_dir,
    input_path,
    output_path=None,
    *,
    output_dicom=None,
    full_head: bool = False,
    patient: dict | None = None,
    preprocessing=None,
    tracer: str | None = None,
    batch_size: int = 8,
    flip_average: bool = True,
    generator=None,
) -> dict:
    """Preprocess ``input_path`` as the training data were, translate it, write the sCT as NIfTI
    (``output_path``) and/or as a DICOM CT series (``output_dicom``, :mod:`medcyclegan.inference.dicom_sct`).

    ``input_path``: a NIfTI file, or a folder of DICOM files (a series, or a study).
    ``full_head``: also translate the slices outside the trained cranial range (counted in the
    result and stated in the DICOM comments). ``patient``: ``patient_id`` / ``patient_name`` for
    the DICOM series of a NIfTI input (a DICOM input's own patient and study are used).
    ``preprocessing``: path of a record to use instead of ``model_dir/preprocessing.json``.
    ``generator``: an already loaded generator (tests); default: the model's source->CT one.
    """
    from medcyclegan.inference.runtime import generator_path, load_generator, load_manifest

    if output_path is None and output_dicom is None:
        raise ValueError("predict needs an output: a NIfTI file, a DICOM folder, or both")
    manifest = load_manifest(model_dir)
    settings = load_preprocessing(model_dir, preprocessing)
    modality = settings["modality"]
    if modality != manifest["source_modality"]:
        raise ValueError(f"preprocessing record is for {modality}, the model translates {manifest['source_modality']}")
    prepared = preprocess_input(input_path, settings, tracer)
    arrays, n_outside = slices_to_translate(prepared, full_head)
    if n_outside:
        log.warning("%d slice(s) outside the trained cranial range translated (--full-head)", n_outside)
    if generator is None:
        generator = load_generator(generator_path(model_dir, "to_ct"))
    dicom_input = is_dicom_folder(input_path)
    original = prepared.image if dicom_input else input_path
    image, info = synthesize_image(
        generator,
        manifest["ct_value_range"],
        arrays,
        prepared.canonical,
        prepared.sliced.mask,
        original,
        batch_size,
        flip_average,
        manifest["context_slices"],
    )
    info["n_slices_outside_trained_range"] = n_outside
    if output_path is not None:
        write_synthetic_ct(output_path, image, original)
    if output_dicom is not None:
        info["dicom"] = _write_dicom(
            image, output_dicom, input_path, prepared, dicom_input, patient, n_outside, manifest
        )
    return {"task": manifest["task"], "model_step": manifest.get("step"), "modality": modality, **info}


def _write_dicom(image, out_dir, input_path, prepared, dicom_input, patient, n_outside, manifest) -> dict:
    from medcyclegan.inference import dicom_sct
    from medcyclegan.ingest.dicom_series import choose_series

    if dicom_input:
        reference = dicom_sct.reference_from_dicom(choose_series(input_path, prepared.sliced.modality).header)
    else:
        reference = dicom_sct.pseudonymous_reference(**(patient or {}))
    coverage = (
        f"{n_outside} slice(s) outside the trained cranial range were translated (--full-head)."
        if n_outside
        else "Slices outside the trained cranial range and voxels outside the head are air (-1024 HU)."
    )
    written = dicom_sct.write_ct_series(
        image,
        Path(out_dir),
        reference=reference,
        description=f"Synthetic CT from {manifest['source_modality'].upper()} (MedCycleGAN)",
        comments=f"{dicom_sct.RESEARCH_ONLY} {coverage}",
    )
    log.info("DICOM CT series: %d files in %s (%s grid)", written["n_files"], out_dir, written["grid"])
    return {k: v for k, v in written.items() if k != "files"}
