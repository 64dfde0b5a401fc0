"""Job-level functions behind each Snakemake rule.

Each takes plain paths and config values (what the rule passes through ``params``) so it is
testable without Snakemake. The scripts in ``workflow_scripts/`` only unpack arguments. The work
itself is in the stage packages (``ingest.volume``, ``preprocessing.volume``, which
``medcyclegan predict`` calls too); a job adds what only a job needs: rejection placeholders for
bad input, logging, writing its outputs.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import SimpleITK as sitk

from medcyclegan import privacy
from medcyclegan.errors import BadInput
from medcyclegan.ingest.discovery import subject_of
from medcyclegan.ingest.volume import read_plausible_volume
from medcyclegan.io import atomic as io
from medcyclegan.io import placeholders, tfrecords
from medcyclegan.io.slices import read_stack
from medcyclegan.preprocessing.split import assign_split
from medcyclegan.preprocessing.volume import canonical_image, ground_truth_slices, mask_image, preprocess_plausible
from medcyclegan.workflow import rejection as reject

# qc (matplotlib) and masking (scikit-image) are imported where used: ingest, split and
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
    id_key: str = "",
    tracer: str | None = None,
) -> None:
    """Read one raw study/session, bring it to the canonical grid, write NIfTI + info JSON.
    ``tracer``: the PET tracer a sample sheet names (else the file name or sidecar tells it).

    Everything written or logged passes the volume's privacy boundary
    (:func:`medcyclegan.privacy.boundary`, keyed by ``id_key``): paths, file names and free text
    of the input become pseudonymous references. Known-bad input
    (:class:`~medcyclegan.errors.BadInput`) does not fail the job: the outputs become rejection
    placeholders carrying the reason (see :mod:`medcyclegan.workflow.rejection`). Any other
    exception is a bug and fails the job, with its message and traceback passed through the
    boundary too.
    """
    tracers = set((pet or {}).get("windows_min", {}))
    with privacy.boundary(volume, source, id_key, codes=tracers) as boundary, privacy.public_errors(boundary):
        try:
            img, info = read_plausible_volume(
                modality, source, ct_series=ct_series, pet=pet, reject_cfg=reject_cfg, tracer=tracer
            )
        except BadInput as exc:
            row = reject.row_from_error(exc, modality=modality, volume=volume, rule="ingest", source=source)
            _write_rejected_volume(boundary.public(row), modality, volume, out_volume, out_info)
            return
        info = boundary.public(info)
        _log_ingested(modality, volume, img, info)
        canonical = canonical_image(img, modality, spacing_mm)
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


def _write_rejected_volume(row: dict, modality: str, volume: str, out_volume: str, out_info: str) -> None:
    reject.log_rejection(row)
    placeholders.write_rejected_nifti(out_volume, row)
    io.write_json(
        out_info,
        {"volume": volume, "subject": subject_of(volume), "modality": modality, "status": "rejected", "rejection": row},
    )


def _log_ingested(modality: str, volume: str, img: sitk.Image, info: dict) -> None:
    log.info("%s %s: native grid %s", modality, volume, _geometry(img))
    for key, value in info.items():
        if key != "fixes":
            log.info("%s %s: %s = %s", modality, volume, key, value)
    for fix in info["fixes"]:
        log.warning("%s %s: FIXED (documented rule): %s", modality, volume, fix)


SLICE_TABLE_COLUMNS = [
    "volume",
    "subject",
    "modality",
    "slice",
    "head_area_mm2",
    "depth_below_vertex_mm",
    "kept",
    "reason",
]


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
    row = placeholders.read_rejection(volume_path)
    if row is None:
        img = sitk.ReadImage(str(volume_path), sitk.sitkFloat32)
        try:
            result = preprocess_plausible(
                img,
                modality=modality,
                volume=volume,
                subject=subject_of(volume),
                mask_cfg=mask_cfg,
                slicing_cfg=slicing_cfg,
                intensity_cfg=intensity_cfg,
                reject_cfg=reject_cfg,
                where=volume_path,
            )
        except BadInput as exc:
            row = reject.row_from_error(exc, modality=modality, volume=volume, rule="preprocess_volume", source=None)
    if row is not None:
        _write_rejected_slices(row, volume, out_npz, out_table, out_mask, size=int(slicing_cfg["size"]))
        return
    _write_slices(result, img, out_npz, out_table, out_mask)


def _write_rejected_slices(row: dict, volume: str, out_npz: str, out_table: str, out_mask: str, *, size: int) -> None:
    reject.log_rejection(row)
    io.write_npz(out_npz, **placeholders.rejected_npz_arrays(row, subject=subject_of(volume), size=size))
    io.write_csv(out_table, pd.DataFrame(columns=SLICE_TABLE_COLUMNS))
    placeholders.write_rejected_nifti(out_mask, row)


def _write_slices(result, img: sitk.Image, out_npz: str, out_table: str, out_mask: str) -> None:
    log.info(
        "%s %s: kept %d of %d slices, window top-left %s, intensity [%g, %g]",
        result.modality,
        result.volume,
        len(result.slices),
        len(result.table),
        result.top_left,
        result.value_lo,
        result.value_hi,
    )
    if len(result.slices) == 0:
        log.warning("%s %s: no useful slice kept; see %s for the reasons", result.modality, result.volume, out_table)
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
    sliced, rejection = read_stack(npz_path)
    if rejection is not None:  # a rejected input volume has no slice to score
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


def split(
    volumes: list[str],
    out_csv: str,
    *,
    seed: int,
    test_fraction: float,
    val_fraction: float = 0.0,
    pinned: dict | None = None,
) -> None:
    table = assign_split(volumes, seed=seed, test_fraction=test_fraction, val_fraction=val_fraction, pinned=pinned)
    log.info("split: %s", table.groupby("split").subject.nunique().to_dict())
    io.write_csv(out_csv, table)


def _examples(npz_paths, counts: list):
    """One Example per volume (``io.tfrecords`` schema); appends each written volume's slice count to ``counts``."""
    for path in npz_paths:
        data, rejection = read_stack(path)
        if rejection is not None:  # placeholder of a rejected volume (see results/qc/rejected.csv)
            log.warning("%s: volume rejected in rule %s, no slice written", str(data["volume"]), rejection["rule"])
            continue
        n = int(data["images"].shape[0])
        if n == 0:  # no useful slice: nothing to write
            continue
        counts.append(n)
        yield tfrecords.volume_example(
            data["images"],
            {
                "subject": str(data["subject"]),
                "volume": str(data["volume"]),
                "slice": np.asarray(data["slice"], np.int64),
                "modality": str(data["modality"]),
                "spacing": data["spacing"],
                "z_mm": np.asarray(data["z_mm"], np.float64),
                "crop_offset": data["top_left"],
                "value_lo": float(data["value_lo"]),
                "value_hi": float(data["value_hi"]),
                "unit": str(data["unit"]),
            },
        )


def write_tfrecords(npz_paths: list[str], out_path: str) -> int:
    """Write the split's TFRecord (one Example per volume); return the number of slices in it."""
    counts: list[int] = []
    tfrecords.write_tfrecord(out_path, _examples(npz_paths, counts))
    n = sum(counts)
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
    from medcyclegan.figures.qc_preview import preview_figure

    items = []
    for vol, msk, npz in zip(volume_paths, mask_paths, npz_paths):
        data, rejection = read_stack(npz)
        if rejection is not None:  # placeholder of a rejected volume: nothing to show
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
    io.write_figure(out_png, preview_figure(modality, items, n_slices), dpi=80)
