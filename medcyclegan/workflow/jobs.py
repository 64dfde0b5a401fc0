"""Job-level functions behind each Snakemake rule.

Each takes plain paths and config values (what the rule passes through ``params``) so it is
testable without Snakemake. The scripts in ``workflow_scripts/`` only unpack arguments.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import SimpleITK as sitk

from medcyclegan.errors import BadInput
from medcyclegan.ingest.discovery import is_pseudonym, subject_of
from medcyclegan.io import atomic as io
from medcyclegan.io import tfrecords
from medcyclegan.preprocessing.geometry import BACKGROUND, to_canonical, whole_hu
from medcyclegan.preprocessing.split import assign_split
from medcyclegan.workflow import rejection as reject

# qc (matplotlib) and preprocess (scikit-image) are imported where used: ingest, split and
# reject-table jobs start faster without them

log = logging.getLogger("medcyclegan")


def _geometry(img: sitk.Image) -> dict:
    return {
        "size": list(img.GetSize()),
        "spacing": list(img.GetSpacing()),
        "origin": list(img.GetOrigin()),
        "direction": list(img.GetDirection()),
    }


def ingest(
    modality: str,
    source: str,
    volume: str,
    out_volume: str,
    out_info: str,
    *,
    spacing_mm,
    ct_series: dict | None = None,
    pet: dict | None = None,
    reject_cfg: dict | None = None,
) -> None:
    """Read one raw study/session, bring it to the canonical grid, write NIfTI + info JSON.

    Known-bad input (:class:`~medcyclegan.errors.BadInput`) does not fail the job: the outputs
    become rejection placeholders carrying the reason (see :mod:`medcyclegan.reject`). Any other
    exception is a bug and propagates.
    """
    hide = is_pseudonym(volume)
    try:
        img, info = _read_volume(modality, source, ct_series, pet)
        fixes = check_plausible(modality, img, info, reject_cfg or {}, where=str(source))
    except BadInput as exc:
        row = reject.row_from_error(
            exc, modality=modality, volume=volume, rule="ingest", source=source, hide_source=hide
        )
        reject.log_rejection(row)
        reject.write_rejected_nifti(out_volume, row)
        io.write_json(
            out_info,
            {
                "volume": volume,
                "subject": subject_of(volume),
                "modality": modality,
                "status": "rejected",
                "rejection": row,
            },
        )
        return
    info["fixes"] = list(info.get("fixes", [])) + fixes
    if hide:
        info = reject.scrub_obj(info, source, volume, True)
    log.info("%s %s: native grid %s", modality, volume, _geometry(img))
    for key, value in info.items():
        if key != "fixes":
            log.info("%s %s: %s = %s", modality, volume, key, value)
    for fix in info["fixes"]:
        log.warning("%s %s: FIXED (documented rule): %s", modality, volume, fix)
    canonical = to_canonical(img, spacing_mm, default_value=BACKGROUND[modality])
    if modality == "ct":
        canonical = whole_hu(canonical)
    log.info("%s %s: canonical grid %s", modality, volume, _geometry(canonical))
    io.write_image(out_volume, canonical)
    io.write_json(
        out_info,
        {
            "volume": volume,
            "subject": subject_of(volume),
            "modality": modality,
            "status": "ok",
            "ingest": info,
            "native": _geometry(img),
            "canonical": _geometry(canonical),
        },
    )


def _read_volume(modality, source, ct_series, pet):
    from medcyclegan.ingest import ct as ct_ingest
    from medcyclegan.ingest import oasis
    from medcyclegan.ingest import pet as pet_ingest
    from medcyclegan.ingest.synthrad import ingest as synthrad_ingest
    from medcyclegan.ingest.synthrad import is_patient_folder

    if modality in ("ct", "mr") and is_patient_folder(source):  # SynthRAD2023 Task1 (data.synthrad_dir)
        return synthrad_ingest(source, modality)
    if modality == "ct":
        return ct_ingest.ingest_ct_study(source, ct_series)
    if modality == "mr":
        return oasis.ingest_mr_session(source)
    if modality == "pet":
        return pet_ingest.ingest_pet_session(
            source,
            windows_min=pet["windows_min"],
            fallback_frames=pet["fallback_frames"],
            min_window_coverage=pet["min_window_coverage"],
        )
    raise ValueError(f"unknown modality {modality!r}")


def check_plausible(modality: str, img: sitk.Image, info: dict, cfg: dict, *, where: str) -> list[str]:
    """Checks every modality passes before anything is written; returns notes of documented fixes.

    A volume whose field of view is smaller than ``reject.min_extent_mm`` along an axis cannot
    hold a head; a constant volume (e.g. all zero) holds no image; CT values must be Hounsfield
    units (:func:`medcyclegan.ingest.ct.check_hu_plausible`).
    """
    from medcyclegan.ingest.ct import check_hu_plausible

    extent = np.array(img.GetSize(), dtype=float) * np.array(img.GetSpacing(), dtype=float)
    min_extent = float(cfg.get("min_extent_mm", 0.0))
    if np.any(extent < min_extent):
        raise BadInput(
            f"{where}: the image covers only {' x '.join(f'{e:.0f}' for e in extent)} mm, less than "
            f"reject.min_extent_mm = {min_extent:g} mm along an axis: far too small to contain a head. "
            f"Check that the right file was exported, or lower reject.min_extent_mm."
        )
    arr = sitk.GetArrayViewFromImage(img)
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        raise BadInput(
            f"{where}: every voxel of the image is {lo:g}: there is no image in it (empty export or "
            f"failed conversion). Re-export or re-convert the scan, or leave it out."
        )
    notes = []
    if modality == "ct":
        series = str(info.get("series_folder", ""))
        check_hu_plausible(img, f"{where}/{series}" if series else where, info)
        if any("absent" in r for r in info.get("rescale", [])):
            notes.append(
                "RescaleSlope/RescaleIntercept absent: stored values used as HU (they show air at "
                "about -1000 HU, so they already are HU)"
            )
    return notes


def preprocess(
    modality: str,
    volume: str,
    volume_path: str,
    out_npz: str,
    out_table: str,
    out_mask: str,
    *,
    mask_cfg: dict,
    slicing_cfg: dict,
    intensity_cfg: dict,
    reject_cfg: dict | None = None,
) -> None:
    """Mask, slice and scale one canonical volume; rejection placeholders pass their row on, and
    a head mask that is empty or smaller than ``reject.min_head_volume_ml`` rejects the volume."""
    from medcyclegan.preprocessing.volume import mask_image, preprocess_volume

    row = reject.read_rejection(volume_path)
    if row is None:
        img = sitk.ReadImage(str(volume_path), sitk.sitkFloat32)
        result = preprocess_volume(
            img,
            modality=modality,
            volume=volume,
            subject=subject_of(volume),
            mask_cfg=mask_cfg,
            slicing_cfg=slicing_cfg,
            intensity_cfg=intensity_cfg,
        )
        log.info("%s %s: mask %s", modality, volume, result.mask_info)
        head_ml = float(result.mask.sum() * np.prod(img.GetSpacing()) / 1000.0)
        min_ml = float((reject_cfg or {}).get("min_head_volume_ml", 0.0))
        if head_ml < max(min_ml, 1e-9):
            exc = BadInput(
                f"the automatic head mask holds {head_ml:.0f} ml (less than reject.min_head_volume_ml = {min_ml:g} ml): "
                f"{'empty' if head_ml == 0 else 'implausibly small for a head'} (no head in the image, wrong "
                f"intensities, or masking.{modality} settings that do not fit this scan). Check "
                f"results/qc/{modality}_preview.png and the volume, adjust masking.{modality} or leave the volume out.",
                file=f"{volume_path}",
            )
            row = reject.row_from_error(exc, modality=modality, volume=volume, rule="preprocess_volume", source=None)
    if row is not None:
        reject.log_rejection(row)
        size = int(slicing_cfg["size"])
        io.write_npz(out_npz, **reject.rejected_npz_arrays(row, subject=subject_of(volume), size=size))
        io.write_csv(
            out_table,
            pd.DataFrame(
                columns=[
                    "volume",
                    "subject",
                    "modality",
                    "slice",
                    "head_area_mm2",
                    "depth_below_vertex_mm",
                    "kept",
                    "reason",
                ]
            ),
        )
        reject.write_rejected_nifti(out_mask, row)
        return
    log.info(
        "%s %s: kept %d of %d slices, window top-left %s, intensity [%g, %g]",
        modality,
        volume,
        len(result.slices),
        len(result.table),
        result.top_left,
        result.value_lo,
        result.value_hi,
    )
    if len(result.slices) == 0:
        log.warning("%s %s: no useful slice kept; see %s for the reasons", modality, volume, out_table)
    io.write_image(out_mask, mask_image(result.mask, img))
    io.write_csv(out_table, result.table)
    io.write_npz(out_npz, **result.npz_arrays())


def rejected_table(
    npz_paths: list[str], out_csv: str, *, info_paths: list[str] | None = None, out_fixes: str | None = None
) -> int:
    """``results/qc/rejected.csv`` from the per-volume slice stacks (rejected ones carry their row)
    and, with ``out_fixes``, ``fixes.csv`` from the volumes' info JSONs (documented fixes)."""
    if out_fixes is not None:
        reject.write_fixes(info_paths or [], out_fixes)
    return reject.write_table(npz_paths, out_csv)


def ground_truth(gt_path: str, volume_path: str, npz_path: str, out_npz: str, *, ct_mask_cfg: dict) -> None:
    with np.load(npz_path) as f:
        sliced = {key: f[key] for key in f.files}
    if "rejected" in sliced:  # a rejected input volume has no slice to score
        log.warning("%s: input volume rejected (%s); no ground-truth slice", out_npz, sliced.get("reject_reason"))
        io.write_npz(
            out_npz,
            hu=np.zeros((0, *sliced["images"].shape[1:]), np.float32),
            mask=np.zeros((0, *sliced["images"].shape[1:]), bool),
            slice=np.zeros(0, np.int64),
            volume=sliced["volume"],
            rejected=np.array(True),
        )
        return
    from medcyclegan.preprocessing.volume import ground_truth_slices

    canonical = sitk.ReadImage(str(volume_path), sitk.sitkFloat32)
    gt = sitk.ReadImage(str(gt_path), sitk.sitkFloat32)
    size = int(sliced["images"].shape[-1])
    arrays = ground_truth_slices(gt, canonical, sliced["slice"], tuple(sliced["top_left"]), size, ct_mask_cfg)
    log.info(
        "%s: %d ground-truth slices, %.0f%% of window pixels in the true head mask",
        out_npz,
        len(arrays["slice"]),
        100 * arrays["mask"].mean() if arrays["mask"].size else 0,
    )
    io.write_npz(out_npz, **arrays, volume=sliced["volume"])


def split(volumes: list[str], out_csv: str, *, seed: int, test_fraction: float) -> None:
    table = assign_split(volumes, seed=seed, test_fraction=test_fraction)
    log.info("split: %s", table.groupby("split").subject.nunique().to_dict())
    io.write_csv(out_csv, table)


def _examples(npz_paths):
    for path in npz_paths:
        with np.load(path) as npz:
            data = {key: npz[key] for key in npz.files}  # NpzFile decompresses on every access
        if "rejected" in data:  # placeholder of a rejected volume (see results/qc/rejected.csv)
            log.warning(
                "%s: volume rejected in rule %s, no slice written", str(data["volume"]), str(data["reject_rule"])
            )
            continue
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
    if n == 0:
        log.warning("%s: no slice at all (every volume of this split rejected or without useful slices)", out_path)
    return n


def qc_table(table_paths: list[str], split_csv: str, out_csv: str) -> None:
    from medcyclegan.preprocessing import qc

    table = qc.concat_tables(table_paths)
    if not table.empty:
        splits = pd.read_csv(split_csv)[["volume", "split"]]
        table = table.merge(splits, on="volume", how="left")
        log.info("slices kept: %d of %d", int(table.kept.sum()), len(table))
    io.write_csv(out_csv, table)


def qc_preview(
    modality: str, volume_paths: list[str], mask_paths: list[str], npz_paths: list[str], out_png: str, *, n_slices: int
) -> None:
    from medcyclegan.preprocessing import qc

    items = []
    for vol, msk, npz in zip(volume_paths, mask_paths, npz_paths):
        with np.load(npz) as f:
            data = {key: f[key] for key in f.files}
        if "rejected" in data:  # placeholder of a rejected volume: nothing to show
            log.info("%s: rejected, not in the preview", str(data["volume"]))
            continue
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
