"""OASIS-3 PET: tracer, frame window, summed static image in LPS space.

OASIS-3 PET files are raw dynamic 4D NIfTI (``petN/[NIFTI/]sub-..._acq-PIB_pet.nii.gz``). A static
image is made by summing the frames of the tracer's protocol window (minutes after injection,
config ``pet.windows_min``):

* frame timing comes from the JSON sidecar (:mod:`~medcyclegan.ingest.pet_timing`);
* with timing: the frames lying entirely inside the window (1 s tolerance) are used, and they must
  cover at least ``min_window_coverage`` of the window (else :class:`IngestError`);
* without timing: a frame-index window (``fallback_frames``, a Python slice ``(start, stop)``,
  negatives counting from the end) is used, and ``info`` says so.

Summation: a PLAIN sum of the selected frames' voxel values (not weighted by frame duration),
which is how the static images are made from the frames here; the absolute scale does not
matter downstream (PET intensities are normalised by percentiles inside the head mask).

A 3D PET file (already static) is accepted as is, with ``info["static"] = True``.

Geometry: the 4D file is read with nibabel; its spatial affine (sform if set, else qform),
converted RAS -> LPS, gives origin/spacing/direction of the 3D result (checked: oriented,
orthogonal, finite, and equal to SimpleITK's reading of the header's first three axes; see
:func:`medcyclegan.ingest.nifti.nifti_affine_lps` and ``check_itk_agrees``).
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk

from medcyclegan.config.validation import schema_defaults
from medcyclegan.ingest import IngestError, geometry_info
from medcyclegan.ingest.nifti import check_complete, check_itk_agrees, check_nifti_dtype, nifti_affine_lps
from medcyclegan.ingest.oasis import find_session_image, load_sidecar, parse_session_name, session_fields
from medcyclegan.ingest.pet_timing import TOLERANCE_S, frame_timing

__all__ = [
    "tracer_of",
    "select_frames",
    "sum_pet",
    "ingest_pet_session",
]


# --------------------------------------------------------------------------------------------
# tracer
# --------------------------------------------------------------------------------------------

_TRACER_SYNONYMS = [
    ("PIB", ("PIB", "PITTSBURGH")),
    ("AV45", ("AV45", "FLORBETAPIR", "AMYVID")),
    ("FDG", ("FDG", "FLUORODEOXYGLUCOSE", "DEOXYGLUCOSE")),
    ("AV1451", ("AV1451", "FLORTAUCIPIR", "TAUVID")),
    ("FBB", ("FBB", "FLORBETABEN")),
]


def normalise_tracer(value: Any) -> str | None:
    """'[11C]PIB' -> 'PIB', 'Florbetapir'/'AV-45' -> 'AV45', 'FDG' ...; None for empty."""
    if value is None:
        return None
    text = re.sub(r"[^A-Z0-9]", "", str(value).upper())
    if not text:
        return None
    for name, keys in _TRACER_SYNONYMS:
        if any(k in text for k in keys):
            return name
    return text


def tracer_of(
    session_name: str | os.PathLike, sidecar: Mapping[str, Any] | None, filename: str | os.PathLike | None = None
) -> str:
    """The PET tracer, from the session folder name (``OAS31463_PIB_d0364``), an ``acq-<tracer>``
    entity in the session or file name, and the sidecar's ``TracerName`` /
    ``Radiopharmaceutical``. Sources that disagree, or no source at all, raise
    :class:`IngestError`."""
    found: dict[str, str] = {}
    base = Path(str(session_name).rstrip("/\\")).name
    try:
        mod = parse_session_name(base)["modality_or_tracer"]
        if mod.upper() not in ("MR", "CT", "PET", "PT"):
            found["session folder"] = normalise_tracer(mod)
    except IngestError:
        pass
    for label, text in (("session name", base), ("file name", Path(filename).name if filename else "")):
        m = re.search(r"(?:^|_)acq-([A-Za-z0-9]+)", text)
        if m:
            found[f"acq- in {label}"] = normalise_tracer(m.group(1))
    for key in ("TracerName", "Radiopharmaceutical", "RadiopharmaceuticalName"):
        if sidecar and sidecar.get(key):
            found[f"sidecar {key}"] = normalise_tracer(sidecar[key])
    found = {k: v for k, v in found.items() if v}
    values = set(found.values())
    if not values:
        raise IngestError(
            f"{session_name}: cannot tell the PET tracer (no '_<TRACER>_d' session name, no 'acq-' "
            f"entity, no sidecar TracerName). Rename the session folder like 'OAS31463_PIB_d0364'."
        )
    if len(values) > 1:
        raise IngestError(f"{session_name}: the PET tracer sources disagree: {found}. Check which tracer this is.")
    return values.pop()


# --------------------------------------------------------------------------------------------
# frame selection
# --------------------------------------------------------------------------------------------


def _fmt_frames(timing: pd.DataFrame, idx: Sequence[int] | None = None, limit: int = 60) -> str:
    rows = timing if idx is None else timing.iloc[list(idx)]
    parts = [f"{i}: {r.start_s / 60:.2f}-{r.end_s / 60:.2f}" for i, r in zip(rows.index, rows.itertuples())]
    if len(parts) > limit:
        parts = parts[: limit // 2] + ["..."] + parts[-limit // 2 :]
    return "[" + ", ".join(parts) + "] min"


def _fallback_frames(n_frames: int, fallback_frames: Sequence[int | None]) -> tuple[list[int], str]:
    """Without frame timing: ``range(n_frames)[slice(*fallback_frames)]``."""
    fb = list(fallback_frames)
    if len(fb) != 2:
        raise IngestError(f"fallback_frames must be (start, stop), got {fallback_frames!r}.")
    sl = slice(*(None if v is None else int(v) for v in fb))
    idx = list(range(n_frames))[sl]
    if not idx:
        raise IngestError(
            f"no frame timing in the sidecar and the fallback frame slice [{fb[0]}:{fb[1]}] "
            f"selects no frame of {n_frames}. Adjust pet.fallback_frames."
        )
    return idx, (
        f"no frame timing in the sidecar: fallback frame slice [{fb[0]}:{fb[1]}] of {n_frames} "
        f"frames -> frames {idx} (frame times unknown)"
    )


def _window_frames(
    timing: pd.DataFrame,
    n_frames: int,
    window_min: Sequence[float] | None,
    min_window_coverage: float,
    tolerance_s: float,
) -> tuple[list[int], str]:
    """With frame timing: the frames entirely inside the window, which they must cover enough."""
    if len(timing) != n_frames:
        raise IngestError(
            f"the sidecar's frame timing lists {len(timing)} frames but the image has {n_frames}: "
            f"they do not belong together. Fix the sidecar or remove its timing."
        )
    if window_min is None or len(window_min) != 2:
        raise IngestError(f"PET window must be (start_min, end_min), got {window_min!r}.")
    w0, w1 = float(window_min[0]) * 60.0, float(window_min[1]) * 60.0
    if not w1 > w0:
        raise IngestError(f"PET window {list(window_min)} min is empty.")
    start = timing["start_s"].to_numpy(float)
    end = timing["end_s"].to_numpy(float)
    dur = timing["duration_s"].to_numpy(float)
    inside = (start >= w0 - tolerance_s) & (end <= w1 + tolerance_s)
    idx = [int(i) for i in np.nonzero(inside)[0]]
    covered = float(dur[inside].sum())
    coverage = covered / (w1 - w0)
    window_txt = f"{window_min[0]:g}-{window_min[1]:g} min"
    if not idx or coverage < min_window_coverage:
        hint = ""
        if end.max() <= w0 + tolerance_s:
            hint = (
                " All frames end before the window starts: the frame times may be relative to "
                "the scan start rather than the injection."
            )
        raise IngestError(
            f"PET frames inside the window {window_txt} cover {covered / 60:.2f} of "
            f"{(w1 - w0) / 60:.2f} min ({coverage:.0%}) < required {min_window_coverage:.0%} "
            f"(frames {idx}). Frame times: {_fmt_frames(timing)}.{hint} Adjust pet.windows_min / "
            f"pet.min_window_coverage or leave this session out."
        )
    src = timing.attrs.get("source", "sidecar frame timing")
    return idx, (
        f"frame timing ({src}): {len(idx)} frames entirely inside {window_txt} "
        f"(tolerance {tolerance_s:g} s), covering {covered / 60:.2f} of {(w1 - w0) / 60:.2f} min "
        f"({coverage:.0%}): {_fmt_frames(timing, idx)}"
    )


def select_frames(
    timing: pd.DataFrame | None,
    n_frames: int,
    window_min: Sequence[float] | None,
    fallback_frames: Sequence[int | None] | None = None,
    min_window_coverage: float | None = None,
    *,
    tolerance_s: float = TOLERANCE_S,
) -> tuple[list[int], str]:
    """Indices of the frames to sum, and a sentence saying which rule chose them.

    With ``timing`` (from :func:`frame_timing`; it must list ``n_frames`` frames): the frames
    lying entirely inside ``window_min = (start, end)`` minutes, with ``tolerance_s``; their
    summed duration must be >= ``min_window_coverage`` x the window length, else
    :class:`IngestError`. Without timing: ``range(n_frames)[slice(*fallback_frames)]``.
    Settings not given are the config schema's ``pet`` defaults.
    """
    defaults = schema_defaults("pet")
    fallback_frames = defaults["fallback_frames"] if fallback_frames is None else fallback_frames
    min_window_coverage = defaults["min_window_coverage"] if min_window_coverage is None else min_window_coverage
    n_frames = int(n_frames)
    if n_frames < 1:
        raise IngestError(f"PET has {n_frames} frames.")
    if timing is None:
        return _fallback_frames(n_frames, fallback_frames)
    return _window_frames(timing, n_frames, window_min, min_window_coverage, tolerance_s)


# --------------------------------------------------------------------------------------------
# summation
# --------------------------------------------------------------------------------------------


def _window_for(tracer: str, windows_min: Mapping[str, Sequence[float]]):
    for key, value in windows_min.items():
        if normalise_tracer(key) == normalise_tracer(tracer):
            return [float(v) for v in value]
    return None


def _image_from_ijk(data: np.ndarray, origin, spacing, direction) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32))
    img.SetOrigin(tuple(float(v) for v in origin))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetDirection(tuple(float(v) for v in np.asarray(direction).ravel()))
    return img


def sum_pet(
    path: str | os.PathLike,
    sidecar: Mapping[str, Any] | str | os.PathLike | None,
    tracer: str,
    windows_min: Mapping[str, Sequence[float]] | None = None,
    fallback_frames: Sequence[int | None] | None = None,
    min_window_coverage: float | None = None,
) -> tuple[sitk.Image, dict[str, Any]]:
    """Static PET image: the plain sum of the frames selected for ``tracer`` (see module doc).

    ``sidecar``: the parsed JSON (dict), its path, or None. A 3D file is returned as is.
    ``info``: ``tracer``, ``static`` (bool), ``n_frames_in_file``, ``rule`` (sentence),
    ``rule_used`` ("static"/"window"/"fallback"), ``window_min``, ``timing_source``,
    ``window_coverage``, ``frames_used`` (list of ``{index, start_s, end_s, duration_s}``, times
    None without timing), ``summation``, geometry and ``value_min``/``value_max``.
    Settings not given are the config schema's ``pet`` defaults.
    """
    defaults = schema_defaults("pet")
    windows_min = defaults["windows_min"] if windows_min is None else windows_min
    fallback_frames = defaults["fallback_frames"] if fallback_frames is None else fallback_frames
    min_window_coverage = defaults["min_window_coverage"] if min_window_coverage is None else min_window_coverage
    p = Path(path)
    if not p.is_file():
        raise IngestError(f"{p}: PET NIfTI file does not exist.")
    if not isinstance(sidecar, Mapping):
        sidecar = load_sidecar(sidecar)
    try:
        nimg = nib.load(str(p))
    except Exception as exc:  # noqa: BLE001
        raise IngestError(f"{p}: cannot read NIfTI ({exc}).") from exc
    dtype_note = check_nifti_dtype(p, nimg)
    check_complete(p, nimg)
    origin, spacing, direction = nifti_affine_lps(p, nimg)
    check_itk_agrees(p, origin, spacing, direction)
    shape = tuple(int(v) for v in nimg.shape)
    data, info = _sum_frames(p, nimg, shape, sidecar, tracer, windows_min, fallback_frames, min_window_coverage)
    # NaN/Inf voxels of the sum: fixed or refused by ingest.volume (reject.max_nonfinite_fraction)
    img = _image_from_ijk(data, origin, spacing, direction)
    info["summation"] = "plain sum of the selected frames' values (not duration-weighted)"
    info.update(geometry_info(img))
    finite = data[np.isfinite(data)]
    info["value_min"] = float(finite.min()) if finite.size else None
    info["value_max"] = float(finite.max()) if finite.size else None
    info["fixes"] = ([dtype_note] if dtype_note else []) + (
        [f"no frame timing in the sidecar: {info['rule']}"] if info.get("rule_used") == "fallback" else []
    )
    return img, info


def _read_voxels(p: Path, read):
    """Run ``read()`` (a nibabel data access); a truncated/corrupt file becomes :class:`IngestError`."""
    try:
        return read()
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise IngestError(
            f"{p}: cannot read the PET voxel data, the file is truncated or corrupt "
            f"({type(exc).__name__}: {exc}). Re-download or re-convert it."
        ) from exc


def _frames_used(timing: pd.DataFrame | None, idx: list[int]) -> list[dict[str, Any]]:
    """``{index, start_s, end_s, duration_s}`` of each summed frame (times None without timing)."""
    if timing is None:
        return [{"index": i, "start_s": None, "end_s": None, "duration_s": None} for i in idx]
    frames = []
    for i in idx:
        r = timing.iloc[i]
        frames.append(
            {
                "index": i,
                "start_s": round(float(r.start_s), 3),
                "end_s": round(float(r.end_s), 3),
                "duration_s": round(float(r.duration_s), 3),
            }
        )
    return frames


def _sum_frames(p, nimg, shape, sidecar, tracer, windows_min, fallback_frames, min_window_coverage):
    """The frame sum of :func:`sum_pet` (voxel data read here) and its ``info``."""
    info: dict[str, Any] = {
        "tracer": tracer,
        "n_frames_in_file": 1,
        "window_min": None,
        "timing_source": None,
        "window_coverage": None,
    }
    if len(shape) == 3 or (len(shape) == 4 and shape[3] == 1):
        data = _read_voxels(p, lambda: np.asarray(nimg.dataobj, dtype=np.float64)).reshape(shape[:3])
        info.update(
            static=True,
            rule_used="static",
            rule="3D (static) PET file: used as is, no frames summed",
            frames_used=[{"index": 0, "start_s": None, "end_s": None, "duration_s": None}],
        )
    elif len(shape) == 4:
        n = shape[3]
        try:
            timing = frame_timing(sidecar)
            window = _window_for(tracer, windows_min) if timing is not None else None
            if timing is not None and window is None:
                raise IngestError(
                    f"no summation window configured for tracer '{tracer}' (pet.windows_min has "
                    f"{sorted(windows_min)}). Add one."
                )
            idx, reason = select_frames(timing, n, window, fallback_frames, min_window_coverage)
        except IngestError as exc:
            raise IngestError(f"{p}: {exc}") from exc
        lo, hi = min(idx), max(idx) + 1
        block = _read_voxels(p, lambda: np.asarray(nimg.dataobj[..., lo:hi], dtype=np.float32))
        data = np.zeros(shape[:3], dtype=np.float64)
        for i in idx:
            data += block[..., i - lo]
        info.update(
            static=False,
            n_frames_in_file=n,
            rule=reason,
            rule_used="window" if timing is not None else "fallback",
            window_min=window,
            timing_source=None if timing is None else timing.attrs.get("source"),
            window_coverage=None
            if timing is None
            else round(float(timing["duration_s"].iloc[idx].sum()) / ((window[1] - window[0]) * 60.0), 4),
            fallback_frames=None if timing is not None else [None if v is None else int(v) for v in fallback_frames],
            frames_used=_frames_used(timing, idx),
        )
    else:
        raise IngestError(f"{p}: PET image has shape {shape}; 3D or 4D (x, y, z, frames) expected.")
    return data, info


def ingest_pet_session(
    session_dir: str | os.PathLike,
    windows_min: Mapping[str, Sequence[float]] | None = None,
    fallback_frames: Sequence[int | None] | None = None,
    min_window_coverage: float | None = None,
) -> tuple[sitk.Image, dict[str, Any]]:
    """Ingest one OASIS-3 PET session: find the PET file, its sidecar and tracer, sum the frames.

    ``info`` = :func:`sum_pet` info plus ``modality`` ("PET"), ``session``, ``subject``,
    ``day``, ``file`` / ``sidecar`` (relative to the session folder) and ``candidates``.
    """
    session = Path(session_dir)
    nii, side, found = find_session_image(session, "pet")
    sidecar = load_sidecar(side)
    modality = str((sidecar or {}).get("Modality", "PT") or "PT").upper()
    if modality not in ("PT", "PET"):
        raise IngestError(f"{side}: sidecar says Modality '{modality}', not PT, for a PET file.")
    tracer = tracer_of(session.name, sidecar, filename=nii.name)
    img, info = sum_pet(nii, sidecar, tracer, windows_min, fallback_frames, min_window_coverage)
    return img, {"modality": "PET", **session_fields(session, nii, side, found), **info}
