"""The sample sheet (``data.sample_sheet``): cohorts that follow neither the CQ500 nor the OASIS-3
layout, one row per volume.

A tab-separated file (comma-separated when its name ends in ``.csv``; lines starting with ``#``
and blank lines are skipped) with a header row naming its columns:

``subject``  (required) the person: the unit of the train/validation/test split. Dataset ids (``CQ500-CT-12``,
             ``OAS30001``, ``1BA001``) are kept; any other value (a hospital id, a name) becomes
             ``anon-<12 hex>`` (:func:`medcyclegan.ingest.discovery.pseudonym` under
             ``privacy.id_key``), whatever ``privacy.ct_study_ids`` says (``hash`` hashes CQ500 ids too)
``modality`` (required) ``ct``, ``mr`` or ``pet``
``path``     (required) a NIfTI file (MR, PET), a DICOM series folder or a study/session folder;
             relative paths are relative to the sheet's folder
``session``  (optional) tells several scans of one subject and modality apart (``d0129``, ``2``)
``tracer``   (optional, PET only) a tracer of ``pet.windows_min`` (``PIB``, ``AV45``, ``FDG``)
``split``    (optional) ``train``, ``validation`` or ``test``: pins the subject there

Volume ids: a CT without session is the subject id itself (``CQ500-CT-12``, ``anon-<hex>``: the id
the same study gets in ``data.ct_dir``); every other row gives ``<subject>_<KIND>[_<session>]``
with KIND ``CT``, ``MR`` or the PET tracer (``PET`` when none is given): ``OAS30001_MR_d0129`` is
then the id of the same OASIS-3 session in ``data.mr_dir``. A session of up to 5 letters and 4
digits (``d0129``, ``ses01``, ``2``) is kept, any other (a date, say) becomes ``s<10 hex>``.
:func:`medcyclegan.ingest.discovery.subject_of` maps all of them back to the subject.

A malformed sheet (a missing or unknown column, an empty required cell, an unknown modality or
split, a path that does not exist, a subject pinned to two splits) stops the workflow at start-up
with one message naming the row and column; values of free-text columns are never repeated in
it. Rows that are well-formed but cannot be used (a CT given as a single file, an MR/PET file that
is not NIfTI, an unknown tracer, a volume already listed) get a reasoned row in
``results/qc/discovery.csv``. Only names are looked at (``stat``): no image is opened.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from medcyclegan.ingest.discovery import (
    NOT_USED,
    USED,
    Row,
    cq500_study_id,
    is_dataset_name,
    pseudonym,
)
from medcyclegan.privacy import file_ref, keyed_digest

COLUMNS = ("subject", "modality", "path", "session", "tracer", "split")
REQUIRED = ("subject", "modality", "path")
SPLITS = ("train", "validation", "test")
#: the JSON schema of one row (cells stripped; modality and split lower-, tracer upper-cased)
ROW_SCHEMA = {
    "type": "object",
    "required": list(REQUIRED),
    "additionalProperties": False,
    "properties": {
        "subject": {"type": "string", "minLength": 1},
        "modality": {"enum": ["ct", "mr", "pet"]},
        "path": {"type": "string", "minLength": 1},
        "session": {"type": "string"},
        "tracer": {"type": "string", "pattern": "^[A-Z0-9]*$"},
        "split": {"enum": ["", *SPLITS]},
    },
}
#: columns whose values are codes, not free text: the only ones an error message may repeat
_CODE_COLUMNS = {"modality", "tracer", "split"}
_DATASET_SUBJECT = re.compile(r"^(?:OAS3\d+|1B[A-Z]\d{3})$")
_KEPT_SESSION = re.compile(r"^[A-Za-z]{0,5}\d{1,4}$")
_NIFTI = (".nii", ".nii.gz")


class SampleSheetError(ValueError):
    """The sample sheet does not match its schema (the message names row and column)."""


@dataclass
class SampleSheet:
    """The rows of the discovery report, the pinned subjects (subject -> split) and the tracer
    of each PET volume that has one in the sheet."""

    rows: list[Row]
    pins: dict[str, str] = field(default_factory=dict)
    tracers: dict[str, str] = field(default_factory=dict)


def public_subject(subject: str, *, id_mode: str = "auto", id_key: str = "") -> str:
    """The subject's id in volume ids: a dataset id as it is (CQ500 hashed under ``hash``), any
    other value its keyed pseudonym."""
    cq500 = cq500_study_id(subject)
    if cq500:
        return pseudonym(cq500, id_key) if id_mode == "hash" else cq500
    return subject if _DATASET_SUBJECT.match(subject) else pseudonym(subject, id_key)


def session_token(session: str, id_key: str = "") -> str:
    """The session part of a volume id: short codes kept, anything else ``s<10 hex>``."""
    if not session:
        return ""
    return session if _KEPT_SESSION.match(session) else f"s{keyed_digest(session, id_key)}"


def sheet_volume_id(subject_id: str, modality: str, session: str = "", tracer: str = "") -> str:
    """``<subject>`` (a CT without session) or ``<subject>_<KIND>[_<session token>]``."""
    if modality == "ct" and not session:
        return subject_id
    kind = {"ct": "CT", "mr": "MR"}.get(modality) or tracer or "PET"
    return f"{subject_id}_{kind}" + (f"_{session}" if session else "")


class _Where:
    """``data.sample_sheet cohort.tsv row N (line L)``: the start of every message."""

    def __init__(self, sheet: Path):
        self.name = sheet.name

    def __call__(self, row: int, line: int, column: str | None = None) -> str:
        col = f", column {column}" if column else ""
        return f"data.sample_sheet {self.name}: row {row} (line {line}){col}"


def _read_lines(sheet: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank, non-comment line."""
    delimiter = "," if sheet.name.lower().endswith(".csv") else "\t"
    try:
        text = sheet.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SampleSheetError(f"data.sample_sheet: {sheet} does not exist") from None
    except UnicodeDecodeError:
        raise SampleSheetError(f"data.sample_sheet: {sheet} is not UTF-8 text") from None
    out = []
    for number, cells in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
        if cells and any(c.strip() for c in cells) and not cells[0].lstrip().startswith("#"):
            out.append((number, [c.strip() for c in cells]))
    return out


def _header(sheet: Path, lines) -> list[str]:
    if not lines:
        raise SampleSheetError(f"data.sample_sheet: {sheet} has no header row ({', '.join(COLUMNS)})")
    number, header = lines[0]
    header = [h.lower() for h in header]
    where = f"data.sample_sheet {sheet.name}: header (line {number})"
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise SampleSheetError(f"{where}: unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise SampleSheetError(f"{where}: no column {missing[0]!r} (required: {', '.join(REQUIRED)})")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise SampleSheetError(f"{where}: column {twice[0]!r} appears twice")
    return header


def _normalised(header: list[str], cells: list[str], where: str) -> dict[str, str]:
    if len(cells) > len(header):
        raise SampleSheetError(f"{where}: {len(cells)} cells, but the header names {len(header)} columns")
    record = dict(zip(header, cells + [""] * (len(header) - len(cells))))
    for column in ("modality", "split"):
        if column in record:
            record[column] = record[column].lower()
    if "tracer" in record:
        record["tracer"] = record["tracer"].upper()
    return record


def _validator():
    import jsonschema

    return jsonschema.validators.validator_for(ROW_SCHEMA)(ROW_SCHEMA)


def _check(validator, record: dict, where) -> None:
    """One message naming the column of the first schema error; codes repeated, free text never."""
    if validator.is_valid(record):
        _check_meaning(record, where)
        return
    error = sorted(validator.iter_errors(record), key=lambda e: COLUMNS.index(str(e.path[0])) if e.path else 0)[0]
    column = str(error.path[0]) if error.path else None
    value = record.get(column, "")
    if error.validator == "minLength":
        msg = "is empty (required)"
    elif error.validator == "enum":
        msg = f"{value!r} is not one of {', '.join(v for v in error.validator_value if v)}"
    elif column in _CODE_COLUMNS:
        msg = f"{value!r}: {error.message}"
    else:
        msg = "is not valid"
    raise SampleSheetError(f"{where(column)}: {msg}")


def _check_meaning(record: dict, where) -> None:
    if record.get("tracer") and record["modality"] != "pet":
        raise SampleSheetError(f"{where('tracer')}: a tracer is given for a {record['modality']} row (PET rows only)")


def _resolve(sheet: Path, cell: str, where) -> Path:
    path = Path(cell).expanduser()
    path = path if path.is_absolute() else sheet.parent / path
    if not path.exists():
        raise SampleSheetError(
            f"{where('path')}: no such file or folder (a relative path is relative to the sheet's folder)"
        )
    return path


def _unusable(record: dict, path: Path, tracers: set[str]) -> str | None:
    """Why a well-formed row cannot give a volume (None: it can)."""
    modality, tracer = record["modality"], record.get("tracer", "")
    if modality == "ct" and not path.is_dir():
        return "a CT is read from a DICOM study or series folder, not from a single file"
    if modality != "ct" and not path.is_dir() and not path.name.lower().endswith(_NIFTI):
        return "a file that is not NIfTI (.nii, .nii.gz): give the NIfTI file or the DICOM series folder"
    if tracer and tracer not in tracers:
        return f"no tracer {tracer} in pet.windows_min ({', '.join(sorted(tracers))}); add its frame window there"
    return None


def _row(record: dict, path: Path, n: int, *, tracers: set[str], id_mode: str, id_key: str) -> tuple[Row, str]:
    """The report row of one sheet row and its subject's public id."""
    subject = public_subject(record["subject"], id_mode=id_mode, id_key=id_key)
    tracer = record.get("tracer", "")
    vid = sheet_volume_id(subject, record["modality"], session_token(record.get("session", ""), id_key), tracer)
    cell = record["path"]
    entry = path.name if is_dataset_name(path.name) else file_ref("sample_sheet", cell, id_key)
    source = f"data.sample_sheet row {n}"
    why = _unusable(record, path, tracers)
    if why:
        return Row(record["modality"], source, entry, "", NOT_USED, why, str(path)), subject
    kind = "folder" if path.is_dir() else "NIfTI file"
    return Row(
        record["modality"], source, entry, vid, USED, f"sample sheet: {record['modality']} {kind}", str(path)
    ), subject


def read_sample_sheet(sheet, *, tracers, id_mode: str = "auto", id_key: str = "") -> SampleSheet:
    """The :class:`SampleSheet` of ``sheet`` (see the module docstring); ``tracers``: the
    ``pet.windows_min`` tracers. Raises :class:`SampleSheetError` naming row and column."""
    sheet = Path(sheet).expanduser()
    lines = _read_lines(sheet)
    header = _header(sheet, lines)
    tracers = {t.upper() for t in tracers}
    validator, where_in = _validator(), _Where(sheet)
    out = SampleSheet([])
    pinned_by: dict[str, int] = {}
    for n, (line, cells) in enumerate(lines[1:], start=1):

        def where(column=None, n=n, line=line):
            return where_in(n, line, column)

        record = _normalised(header, cells, where())
        _check(validator, record, where)
        path = _resolve(sheet, record["path"], where)
        row, subject = _row(record, path, n, tracers=tracers, id_mode=id_mode, id_key=id_key)
        split = record.get("split", "")
        if split and out.pins.setdefault(subject, split) != split:
            raise SampleSheetError(
                f"{where('split')}: {split!r}, but row {pinned_by[subject]} puts the same subject in "
                f"{out.pins[subject]!r}: a subject is on one side of the split"
            )
        if split:
            pinned_by.setdefault(subject, n)
        if row.status == USED and record.get("tracer"):
            out.tracers[row.volume] = record["tracer"]
        out.rows.append(row)
    return out
