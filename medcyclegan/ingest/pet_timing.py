"""Frame timing of a dynamic PET from its JSON sidecar, in seconds after injection.

Two layouts: BIDS ``FrameTimesStart`` + ``FrameDuration`` (seconds; ``InjectionStart``, when
given, is subtracted so that times are relative to the injection), or the old draft layout
``"FrameTimes": {"Labels": [...], "Units": [...], "Values": [[start, (end), duration], ...]}``
(also accepted nested under ``"Time"``); the Labels pick the columns when present, Units ("s",
"m"/"min", "ms") are honoured. Inconsistent timing raises :class:`IngestError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from medcyclegan.ingest import IngestError

__all__ = ["TOLERANCE_S", "frame_timing"]

#: seconds by which frame ends and starts may disagree (and frames may pass the window's edges)
TOLERANCE_S = 1.0

_UNIT_SECONDS = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
}


def _num_list(value: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise IngestError(f"sidecar {what} is not a list of numbers: {value!r}") from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise IngestError(f"sidecar {what} is not a flat list of finite numbers: {value!r}")
    return arr


def _unit_factor(unit: Any, what: str) -> float:
    key = str(unit).strip().lower()
    if key not in _UNIT_SECONDS:
        raise IngestError(f"sidecar {what}: unknown time unit {unit!r} (expected s, min or ms).")
    return _UNIT_SECONDS[key]


def _draft_columns(frame_times: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    values = frame_times.get("Values")
    if values is None:
        raise IngestError("sidecar FrameTimes has no 'Values'.")
    try:
        table = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise IngestError(f"sidecar FrameTimes.Values is not a numeric table: {values!r}") from exc
    if table.ndim == 1:
        table = table.reshape(1, -1)
    if table.ndim != 2 or table.shape[1] not in (2, 3) or not np.all(np.isfinite(table)):
        raise IngestError(f"sidecar FrameTimes.Values must be rows [start, (end), duration]; got shape {table.shape}.")
    ncol = table.shape[1]
    units = frame_times.get("Units")
    if units is not None:
        units = [units] * ncol if isinstance(units, str) else list(units)
        if len(units) != ncol:
            raise IngestError(f"sidecar FrameTimes.Units has {len(units)} entries for {ncol} columns.")
        table = table * np.array([_unit_factor(u, "FrameTimes.Units") for u in units])
    labels = frame_times.get("Labels")
    col: dict[str, int] = {}
    if labels is not None:
        labels = [str(x).lower() for x in (labels if isinstance(labels, (list, tuple)) else [labels])]
        if len(labels) != ncol:
            raise IngestError(f"sidecar FrameTimes.Labels {labels} do not match {ncol} columns.")
        for i, lab in enumerate(labels):
            if "start" in lab or lab in ("begin", "t0"):
                col["start"] = i
            elif "end" in lab or "stop" in lab:
                col["end"] = i
            elif "dur" in lab or "length" in lab:
                col["duration"] = i
        if "start" not in col or not ({"end", "duration"} & set(col)):
            raise IngestError(f"sidecar FrameTimes.Labels {labels}: need a start column and an end or duration column.")
        how = f"FrameTimes (Labels {labels})"
    else:
        col = {"start": 0, "end": 1, "duration": 2} if ncol == 3 else {"start": 0, "duration": 1}
        how = (
            "FrameTimes (no Labels: rows [start, end, duration])"
            if ncol == 3
            else "FrameTimes (no Labels: rows [start, duration])"
        )
    start = table[:, col["start"]]
    end = table[:, col["end"]] if "end" in col else None
    dur = table[:, col["duration"]] if "duration" in col else None
    if dur is None:
        dur = end - start
    if end is None:
        end = start + dur
    if not np.allclose(start + dur, end, atol=TOLERANCE_S):
        bad = int(np.argmax(np.abs(start + dur - end)))
        raise IngestError(
            f"sidecar FrameTimes: frame {bad} has start {start[bad]:g} s + duration {dur[bad]:g} s "
            f"!= end {end[bad]:g} s; the columns are not [start, end, duration]. Add Labels to the "
            f"sidecar or remove the timing to use the fallback frames."
        )
    return start, dur, end, how


def frame_timing(sidecar: Mapping[str, Any] | None) -> pd.DataFrame | None:
    """Frame times in seconds after injection from a PET sidecar, or None when it has none.

    Returns a DataFrame with one row per frame and columns ``start_s``, ``duration_s``,
    ``end_s``; ``df.attrs["source"]`` says which layout was read and ``df.attrs["offset_s"]``
    the InjectionStart that was subtracted. Inconsistent timing (negative durations,
    overlapping frames, mismatched lists) raises :class:`IngestError`.
    """
    if not sidecar:
        return None
    offset = 0.0
    if "FrameTimesStart" in sidecar or "FrameDuration" in sidecar:
        if "FrameTimesStart" not in sidecar or "FrameDuration" not in sidecar:
            raise IngestError("sidecar has only one of FrameTimesStart / FrameDuration; both are needed.")
        start = _num_list(sidecar["FrameTimesStart"], "FrameTimesStart")
        dur = _num_list(sidecar["FrameDuration"], "FrameDuration")
        if start.size != dur.size:
            raise IngestError(f"sidecar FrameTimesStart has {start.size} entries but FrameDuration {dur.size}.")
        end = start + dur
        source = "BIDS FrameTimesStart/FrameDuration (s)"
        inj = sidecar.get("InjectionStart")
        if isinstance(inj, (int, float)) and not isinstance(inj, bool) and math.isfinite(inj) and inj != 0:
            offset = float(inj)
            source += f", minus InjectionStart {offset:g} s"
    else:
        ft = sidecar.get("FrameTimes")
        if ft is None and isinstance(sidecar.get("Time"), Mapping):
            ft = sidecar["Time"].get("FrameTimes")
        if ft is None:
            return None
        if not isinstance(ft, Mapping):
            ft = {"Values": ft}
        start, dur, end, source = _draft_columns(ft)
    if start.size == 0:
        return None
    start, end = start - offset, end - offset
    if np.any(dur <= 0):
        raise IngestError(f"sidecar frame timing has non-positive durations: {dur.tolist()}")
    if np.any(start[1:] < end[:-1] - TOLERANCE_S):
        k = int(np.argmax(start[1:] < end[:-1] - TOLERANCE_S))
        raise IngestError(
            f"sidecar frame timing: frame {k + 1} starts at {start[k + 1]:g} s before frame {k} ends "
            f"({end[k]:g} s): overlapping frames or wrong units ({source})."
        )
    df = pd.DataFrame({"start_s": start, "duration_s": dur, "end_s": end})
    df.attrs["source"] = source
    df.attrs["offset_s"] = offset
    return df
