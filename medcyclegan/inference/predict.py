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

from pathlib import Path

import numpy as np

from medcyclegan.config.settings import ingest_settings, preprocess_settings
from medcyclegan.inference.runtime import load_preprocessing
from medcyclegan.inference.synthesis import synthesize_preprocessed
from medcyclegan.ingest.volume import read_plausible_volume
from medcyclegan.preprocessing.volume import canonical_image, preprocess_plausible


def preprocess_input(input_path, settings: dict, tracer: str | None = None):
    """(canonical image, :class:`~medcyclegan.preprocessing.volume.SliceSet`) of one input file,
    made as the workflow's ``ingest`` and ``preprocess_volume`` jobs make them, in memory."""
    modality = settings["modality"]
    ingest = ingest_settings(settings)
    spacing_mm = ingest.pop("spacing_mm")
    img, _ = read_plausible_volume(modality, input_path, tracer=tracer, **ingest)
    canonical = canonical_image(img, modality, spacing_mm)
    name = Path(str(input_path)).name.split(".")[0] or "input"
    sliced = preprocess_plausible(
        canonical, modality=modality, volume=name, subject=name, where=input_path, **preprocess_settings(settings)
    )
    if len(sliced.slices) == 0:
        raise ValueError(f"{input_path}: no useful axial slice (no head found with the model's masking settings)")
    return canonical, sliced


def predict(
    model_dir,
    input_path,
    output_path,
    *,
    preprocessing=None,
    tracer: str | None = None,
    batch_size: int = 8,
    flip_average: bool = True,
    generator=None,
) -> dict:
    """Preprocess ``input_path`` as the training data were, translate it, write the sCT.

    ``preprocessing``: path of a record to use instead of ``model_dir/preprocessing.json``.
    ``generator``: an already loaded generator (tests); default: the model's source->CT one.
    """
    from medcyclegan.inference.runtime import generator_path, load_generator, load_manifest

    manifest = load_manifest(model_dir)
    settings = load_preprocessing(model_dir, preprocessing)
    modality = settings["modality"]
    if modality != manifest["source_modality"]:
        raise ValueError(f"preprocessing record is for {modality}, the model translates {manifest['source_modality']}")
    canonical, sliced = preprocess_input(input_path, settings, tracer)
    if generator is None:
        generator = load_generator(generator_path(model_dir, "to_ct"))
    arrays = {"images": sliced.images, "slice": sliced.slices, "top_left": np.array(sliced.top_left)}
    info = synthesize_preprocessed(
        generator,
        manifest["ct_value_range"],
        arrays,
        canonical,
        sliced.mask,
        input_path,
        output_path,
        batch_size,
        flip_average,
    )
    return {"task": manifest["task"], "model_step": manifest.get("step"), "modality": modality, **info}
