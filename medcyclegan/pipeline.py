"""Job-level functions behind each Snakemake rule.

Each takes plain paths and config values (what the rule passes through ``params``) so it is
testable without Snakemake. The scripts in ``workflow_scripts/`` only unpack arguments.
"""

from __future__ import annotations

import logging
import numpy as np
import SimpleITK as sitk

from . import io, qc, tfrecords
from .discovery import subject_of
from .geometry import BACKGROUND, to_canonical
from .preprocess import ground_truth_slices, mask_image, preprocess_volume
from .split import assign_split

log = logging.getLogger("medcyclegan")


def _geometry(img: sitk.Image) -> dict:
    return {"size": list(img.GetSize()), "spacing": list(img.GetSpacing()), "origin": list(img.GetOrigin()), "direction": list(img.GetDirection())}


def ingest(modality: str, source: str, volume: str, out_volume: str, out_info: str, *, spacing_mm, ct_series: dict | None = None, pet: dict | None = None) -> None:
    """Read one raw study/session, bring it to the canonical grid, write NIfTI + info JSON."""
    from .ingest import ct as ct_ingest
    from .ingest import oasis, pet as pet_ingest

    if modality == "ct":
        img, info = ct_ingest.ingest_ct_study(source, ct_series)
    elif modality == "mr":
        img, info = oasis.ingest_mr_session(source)
    elif modality == "pet":
        img, info = pet_ingest.ingest_pet_session(source, windows_min=pet["windows_min"], fallback_frames=pet["fallback_frames"], min_window_coverage=pet["min_window_coverage"])
    else:
        raise ValueError(f"unknown modality {modality!r}")
    log.info("%s %s: native grid %s", modality, volume, _geometry(img))
    for key, value in info.items():
        log.info("%s %s: %s = %s", modality, volume, key, value)
    canonical = to_canonical(img, spacing_mm, default_value=BACKGROUND[modality])
    log.info("%s %s: canonical grid %s", modality, volume, _geometry(canonical))
    io.write_image(out_volume, canonical)
    io.write_json(out_info, {"volume": volume, "subject": subject_of(volume), "modality": modality, "ingest": info, "native": _geometry(img), "canonical": _geometry(canonical)})


def preprocess(modality: str, volume: str, volume_path: str, out_npz: str, out_table: str, out_mask: str, *, mask_cfg: dict, slicing_cfg: dict, intensity_cfg: dict) -> None:
    img = sitk.ReadImage(str(volume_path), sitk.sitkFloat32)
    result = preprocess_volume(img, modality=modality, volume=volume, subject=subject_of(volume), mask_cfg=mask_cfg, slicing_cfg=slicing_cfg, intensity_cfg=intensity_cfg)
    log.info("%s %s: mask %s", modality, volume, result.mask_info)
    log.info("%s %s: kept %d of %d slices, window top-left %s, intensity [%g, %g]", modality, volume, len(result.slices), len(result.table), result.top_left, result.value_lo, result.value_hi)
    if len(result.slices) == 0:
        log.warning("%s %s: no useful slice kept; see %s for the reasons", modality, volume, out_table)
    io.write_image(out_mask, mask_image(result.mask, img))
    io.write_csv(out_table, result.table)
    io.write_npz(out_npz, **result.npz_arrays())


def ground_truth(gt_path: str, volume_path: str, npz_path: str, out_npz: str, *, ct_mask_cfg: dict) -> None:
    canonical = sitk.ReadImage(str(volume_path), sitk.sitkFloat32)
    with np.load(npz_path) as f:
        sliced = {key: f[key] for key in f.files}
    gt = sitk.ReadImage(str(gt_path), sitk.sitkFloat32)
    size = int(sliced["images"].shape[-1])
    arrays = ground_truth_slices(gt, canonical, sliced["slice"], tuple(sliced["top_left"]), size, ct_mask_cfg)
    log.info("%s: %d ground-truth slices, %.0f%% of window pixels in the true head mask", out_npz, len(arrays["slice"]), 100 * arrays["mask"].mean() if arrays["mask"].size else 0)
    io.write_npz(out_npz, **arrays, volume=sliced["volume"])


def split(volumes: list[str], out_csv: str, *, seed: int, test_fraction: float) -> None:
    table = assign_split(volumes, seed=seed, test_fraction=test_fraction)
    log.info("split: %s", table.groupby("split").subject.nunique().to_dict())
    io.write_csv(out_csv, table)


def _examples(npz_paths):
    for path in npz_paths:
        with np.load(path) as npz:
            data = {key: npz[key] for key in npz.files}  # NpzFile decompresses on every access
        for i in range(data["images"].shape[0]):
            yield tfrecords.slice_example(
                data["images"][i],
                {
                    "subject": str(data["subject"]),
                    "volume": str(data["volume"]),
                    "slice": int(data["slice"][i]),
                    "modality": str(data["modality"]),
                    "spacing": data["spacing"],
                    "z_mm": float(data["z_mm"][i]),
                    "crop_offset": data["top_left"],
                    "value_lo": float(data["value_lo"]),
                    "value_hi": float(data["value_hi"]),
                    "unit": str(data["unit"]),
                },
            )


def write_tfrecords(npz_paths: list[str], out_path: str) -> int:
    n = tfrecords.write_tfrecord(out_path, _examples(npz_paths))
    log.info("%s: %d slices from %d volumes", out_path, n, len(npz_paths))
    return n


def qc_table(table_paths: list[str], split_csv: str, out_csv: str) -> None:
    import pandas as pd

    table = qc.concat_tables(table_paths)
    if not table.empty:
        splits = pd.read_csv(split_csv)[["volume", "split"]]
        table = table.merge(splits, on="volume", how="left")
        log.info("slices kept: %d of %d", int(table.kept.sum()), len(table))
    io.write_csv(out_csv, table)


def qc_preview(modality: str, volume_paths: list[str], mask_paths: list[str], npz_paths: list[str], out_png: str, *, n_slices: int) -> None:
    items = []
    for vol, msk, npz in zip(volume_paths, mask_paths, npz_paths):
        with np.load(npz) as f:
            data = {key: f[key] for key in f.files}
        items.append(
            {
                "volume": str(data["volume"]),
                "raw": sitk.GetArrayFromImage(sitk.ReadImage(str(vol))),
                "mask": sitk.GetArrayFromImage(sitk.ReadImage(str(msk))).astype(bool),
                "images": data["images"],
                "slice": data["slice"],
            }
        )
    fig = qc.preview_figure(modality, items, n_slices)
    with io.atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
