"""Reject path: a volume that cannot be processed correctly becomes one row of
``results/qc/rejected.csv`` instead of a failed job, so a run over thousands of studies completes
for every other volume without ``--keep-going``.

How it works (one job per volume):

* code that recognises bad input raises :class:`BadInput` (``IngestError`` is one) with a message
  naming the file, what is wrong and, where possible, what to do;
* the per-volume job catches ONLY :class:`BadInput` and writes valid *placeholder* outputs that
  carry the rejection row (:mod:`medcyclegan.io.placeholders`); any other exception is a bug and
  still fails the job loudly;
* downstream per-volume jobs pass the row on; aggregations skip placeholders (a rejected ``.npz``
  holds no slice, so it adds nothing to a TFRecord), and :func:`write_table` collects the rows.

Rows hold no patient-identifying value: messages are built from header geometry and codes, and
the ingest job writes them through its privacy boundary (:mod:`medcyclegan.privacy`), which
replaces every path, file name and free text of the input by a pseudonymous reference.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from medcyclegan.errors import BadInput
from medcyclegan.io import atomic as io
from medcyclegan.io.placeholders import COLUMNS, read_rejection

log = logging.getLogger("medcyclegan")

GENERIC_ACTION = (
    "fix or remove the file named here and rerun (only this volume reruns), or leave the volume "
    "out; the rest of the run is complete without it"
)

# sentences that start with one of these verbs are the 'what to do' part of a message
_ACTION_VERBS = (
    "install",
    "convert",
    "pick",
    "remove",
    "fix",
    "relax",
    "check",
    "re-convert",
    "re-download",
    "resample",
    "use",
    "adjust",
    "add",
    "rename",
    "separate",
    "leave",
    "sum",
    "re-export",
    "point",
    "set",
    "lower",
    "raise",
    "increase",
    "decrease",
    "exclude",
)
_VERBS_RE = "|".join(re.escape(v) for v in _ACTION_VERBS)
_ACTION_RE = re.compile(rf"(?:(?<=[.;)])\s+|\n\s*)(?=(?:{_VERBS_RE})\b)", re.IGNORECASE)
_PATH_RE = re.compile(r"^((?:/|[A-Za-z]:[\\/])[^\n]*?):\s")


def row_from_error(
    exc: BadInput, *, modality: str, volume: str, rule: str, source: str | os.PathLike | None
) -> dict[str, str]:
    """One rejected.csv row from a :class:`BadInput`: ``file, rule, reason, action`` (one line each),
    as the message says them: the job passes the row through its privacy boundary
    (:meth:`medcyclegan.privacy.Boundary.public`) before it is written or logged."""
    message = str(exc).strip()
    file = getattr(exc, "file", None)
    m = _PATH_RE.match(message)
    if m:  # the path the message starts with is in the file column (or is the study around it)
        message = message[m.end() :]
    if file is None:
        file = m.group(1) if m else (str(source) if source else "")
    action = getattr(exc, "action", None)
    if action is None:
        parts = _ACTION_RE.split(message, maxsplit=1)
        if len(parts) == 2:
            message, action = parts[0].rstrip(), parts[1].strip()
        else:
            action = GENERIC_ACTION
    one_line = lambda s: re.sub(r"\s*\n\s*", "; ", s).strip()  # noqa: E731
    return {
        "modality": modality,
        "volume": volume,
        "rule": rule,
        "file": str(file),
        "reason": one_line(message),
        "action": one_line(action),
    }


def log_rejection(row: dict[str, str]) -> None:
    log.warning(
        "REJECTED %s %s in rule %s: %s: %s -> %s",
        row["modality"],
        row["volume"],
        row["rule"],
        row["file"],
        row["reason"],
        row["action"],
    )


# --------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------


def collect(paths: Iterable[str | os.PathLike]):
    """All rejection rows carried by ``paths`` (placeholders), as a DataFrame with :data:`COLUMNS`."""
    import pandas as pd

    rows = [r for r in (read_rejection(p) for p in paths) if r]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_table(paths: Iterable[str | os.PathLike], out_csv: str | os.PathLike) -> int:
    """Write ``rejected.csv`` (header only when nothing was rejected); return the row count."""
    paths = list(paths)
    table = collect(paths)
    io.write_csv(out_csv, table)
    if len(table):
        log.warning("%d of %d volumes rejected; reasons in %s", len(table), len(paths), out_csv)
        for _, r in table.iterrows():
            log.warning("  %s %s (%s): %s", r.modality, r.volume, r.rule, r.reason)
    else:
        log.info("no volume rejected (%d checked); %s is empty", len(paths), out_csv)
    return len(table)


FIX_COLUMNS = ["modality", "volume", "rule", "fix"]


def collect_fixes(info_paths: Iterable[str | os.PathLike]):
    """Documented fixes applied at ingest (the ``fixes`` of each volume's info JSON), one row each."""
    import pandas as pd

    rows = []
    for p in info_paths:
        data = json.loads(Path(p).read_text())
        for fix in (data.get("ingest") or {}).get("fixes", []):
            rows.append(
                {"modality": data.get("modality", ""), "volume": data.get("volume", ""), "rule": "ingest", "fix": fix}
            )
    return pd.DataFrame(rows, columns=FIX_COLUMNS)


def write_fixes(info_paths: Iterable[str | os.PathLike], out_csv: str | os.PathLike) -> int:
    """Write ``fixes.csv`` (what was repaired by a documented rule, per volume); return the row count."""
    table = collect_fixes(info_paths)
    io.write_csv(out_csv, table)
    if len(table):
        log.info("%d documented fixes in %d volumes; see %s", len(table), table.volume.nunique(), out_csv)
    return len(table)


def summary_line(csv_path: str | os.PathLike) -> str:
    """One line for the end of a run: how many volumes were rejected and where the table is."""
    p = Path(csv_path)
    if not p.exists():
        return ""
    n = max(sum(1 for _ in p.open()) - 1, 0)
    line = (
        f"No input volume was rejected ({p})."
        if n == 0
        else f"{n} input volume(s) were rejected and left out; see {p} (file, rule, reason, what to do)."
    )
    fixes = p.with_name("fixes.csv")
    if fixes.exists():
        k = max(sum(1 for _ in fixes.open()) - 1, 0)
        if k:
            line += f" {k} documented fix(es) were applied; see {fixes}."
    from medcyclegan.ingest.discovery import discovery_summary

    unused = discovery_summary(p.with_name("discovery.csv"))
    return f"{line} {unused}" if unused else line
