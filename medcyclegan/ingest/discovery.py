"""Find studies and sessions in raw data folders from folder names only, and say why every other
entry was not used.

Snakemake calls these while it builds the DAG, so they must never open an image file:
at 5,000 volumes the DAG has to build in seconds (``os.scandir`` and a few ``stat`` calls only).

:func:`discover` looks at every source of the config (``data.synthrad_dir``, ``data.{ct,mr,pet}_dir``,
``data.sample_sheet``, else the demo) and returns a :class:`Discovery`: the volumes
(``{modality: {volume_id: source}}``, ids safe to use as wildcards) and one :class:`Row` per
entry directly under each data folder, per study or session found inside a wrapper folder and per
sample-sheet row, with the volume it became or why it was not used (``results/qc/discovery.csv``).
Entries are written by their dataset id (``CQ500-CT-12``, ``OAS30001_MR_d0129``) or, for any
other name, by a pseudonymous reference ``ct_dir/f-<hex>``
(:func:`medcyclegan.privacy.file_ref` of the path relative to the folder): a folder name may be
a patient's name, and no free text of the input is ever written.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medcyclegan.ingest.synthrad import FILES as SYNTHRAD_FILES
from medcyclegan.ingest.synthrad import ID_REGEX as SYNTHRAD_ID_REGEX
from medcyclegan.privacy import file_ref

MODALITIES = ("ct", "mr", "pet")
# CQ500 study folders: "CQ500CT43 CQ500CT43" (zip content) or "CQ500-CT-43" (zip name)
_CQ500_PATTERNS = (
    re.compile(r"^CQ500CT(?P<n>\d+) CQ500CT(?P=n)$"),
    re.compile(r"^CQ500-CT-(?P<n>\d+)$"),
)
# OASIS-3 sessions: OAS30001_MR_d0129, OAS31463_PIB_d0364, OAS30001_AV45_d2430
OASIS_SESSION = re.compile(r"^(?P<subject>OAS3\d+)_(?P<kind>[A-Za-z0-9]+)_(?P<day>d\d+)$")
SYNTHRAD_ID = re.compile(rf"^{SYNTHRAD_ID_REGEX}$")
VOLUME_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
WILDCARD_REGEX = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
#: sample-sheet volume ids (medcyclegan.ingest.sample_sheet): ``<subject>_<KIND>[_<session>]``
#: whose subject is pseudonymous or a dataset id; no id of the data folders has this form
SHEET_VOLUME = re.compile(
    rf"^(?P<subject>anon-[0-9a-f]{{12}}|OAS3\d+|CQ500-CT-\d+|{SYNTHRAD_ID_REGEX})"
    r"_(?P<kind>[A-Za-z0-9]+)(?:_(?P<session>[A-Za-z0-9]+))?$"
)
PSEUDONYM = re.compile(r"^anon-[0-9a-f]{12}$")
ID_MODES = ("auto", "folder", "hash")
USED, NOT_USED = "used", "not used"
#: the columns of results/qc/discovery.csv
COLUMNS = ("modality", "source", "entry", "volume", "status", "reason")


@dataclass
class Row:
    """One line of the discovery report; ``path`` (the raw path) is never written."""

    modality: str
    source: str
    entry: str
    volume: str = ""
    status: str = USED
    reason: str = ""
    path: str = field(default="", repr=False)
    group: int = field(default=0, repr=False)  # source order: the first source of a volume id wins
    depth: int = field(default=1, repr=False)  # then the shallowest folder

    def public(self) -> dict[str, str]:
        return {c: getattr(self, c) for c in COLUMNS}


def _entries(folder) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError, PermissionError):  # an unreadable folder holds nothing we can see
        return []


def _subdirs(folder) -> list[os.DirEntry]:
    return [e for e in _entries(folder) if not e.name.startswith(".") and e.is_dir()]


#: a CQ500 study as downloaded: one zip per study
CQ500_ZIP = re.compile(r"^CQ500-CT-(?P<n>\d+)\.zip$", re.IGNORECASE)


def cq500_study_id(folder_name: str) -> str | None:
    """``CQ500-CT-{n}`` for a CQ500 study folder name, else None."""
    for pattern in _CQ500_PATTERNS:
        m = pattern.match(folder_name)
        if m:
            return f"CQ500-CT-{int(m['n'])}"
    return None


def is_dataset_name(name: str) -> bool:
    """True for the datasets' own (pseudonymous) names, which may be written as they are."""
    return bool(cq500_study_id(name) or OASIS_SESSION.match(name) or SYNTHRAD_ID.match(name))


def public_entry(folder_key: str, relative: str, id_key: str = "") -> str:
    """How an entry is written: its name when it is a dataset name, else ``<folder_key>/f-<hex>``."""
    name = relative.rsplit("/", 1)[-1]
    return name if is_dataset_name(name) else file_ref(folder_key, relative, id_key)


def pseudonym(name: str, key: str = "") -> str:
    """Stable pseudonymous id ``anon-<12 hex>`` of a folder name: HMAC-SHA256 keyed by ``key``.

    The same name and key always give the same id (reruns and new studies keep every id); with a
    secret key nobody can test guessed patient names against the ids.
    """
    digest = hmac.new(key.encode("utf-8"), name.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"anon-{digest[:12]}"


def is_pseudonym(volume_id: str) -> bool:
    """True for ids made by :func:`pseudonym` (their raw folder name must never be shown)."""
    return bool(PSEUDONYM.match(volume_id))


# -- the folder walk shared by every layout ---------------------------------------------------


@dataclass
class _Found:
    kind: str  # unit, wrapper (holds units), stray (inside a wrapper, holds none), plain, file, hidden
    rel: str
    path: str
    depth: int = 1
    n_units: int = 0


def _units_below(folder: str, rel: str, depth: int, max_depth: int, is_unit) -> tuple[list, list]:
    units, strays = [], []
    for e in _subdirs(folder):
        r = f"{rel}/{e.name}"
        if is_unit(e.name):
            units.append(_Found("unit", r, e.path, depth))
            continue
        u, s = _units_below(e.path, r, depth + 1, max_depth, is_unit) if depth < max_depth else ([], [])
        if u:
            units, strays = units + u, strays + s
        else:
            strays.append(_Found("stray", r, e.path, depth))
    return units, strays


def _layout(root: Path, is_unit: Callable[[str], bool], max_depth: int) -> list[_Found]:
    """Every entry directly under ``root`` once; below a wrapper (a folder holding units within
    ``max_depth`` levels), its units and the folders that hold none."""
    found = []
    for e in _entries(root):
        if e.name.startswith("."):
            found.append(_Found("hidden", e.name, e.path))
        elif not e.is_dir():
            found.append(_Found("file", e.name, e.path))
        elif is_unit(e.name):
            found.append(_Found("unit", e.name, e.path))
        else:
            units, strays = _units_below(e.path, e.name, 2, max_depth, is_unit) if max_depth > 1 else ([], [])
            if units:
                found.append(_Found("wrapper", e.name, e.path, n_units=len(units)))
                found += units + strays
            else:
                found.append(_Found("plain", e.name, e.path))
    return found


_COMMON_REASONS = {
    "file": "a file, not a {unit} folder",
    "hidden": "a hidden entry (its name starts with '.')",
    "stray": "inside a folder of {units}, but not a {unit} folder itself and holds none",
}


def _row(f: _Found, modality: str, folder_key: str, id_key: str, **kw) -> Row:
    entry = public_entry(folder_key, f.rel, id_key)
    return Row(modality, f"data.{folder_key}", entry, path=f.path, depth=f.depth, **kw)


def _common_row(f: _Found, modality: str, folder_key: str, id_key: str, unit: str, units: str) -> Row:
    if f.kind == "wrapper":
        reason = f"a folder holding {units}: {f.n_units} (listed on their own rows)"
        return _row(f, modality, folder_key, id_key, reason=reason)
    reason = _COMMON_REASONS[f.kind].format(unit=unit, units=units)
    return _row(f, modality, folder_key, id_key, status=NOT_USED, reason=reason)


# -- CT: CQ500 and any other study folder ------------------------------------------------------


def scan_ct_dir(ct_dir, max_depth: int = 3, *, id_mode: str = "auto", id_key: str = "") -> list[Row]:
    """One :class:`Row` per entry of ``data.ct_dir`` (see :func:`find_ct_studies` for the ids)."""
    if id_mode not in ID_MODES:
        raise ValueError(f"privacy.ct_study_ids must be one of {ID_MODES}, got {id_mode!r}")
    root = Path(ct_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data.ct_dir: {root} is not a folder")
    rows = []
    for f in _layout(root, lambda name: cq500_study_id(name) is not None, max_depth):
        name = f.rel.rsplit("/", 1)[-1]
        zipped = CQ500_ZIP.match(name) if f.kind == "file" else None
        if f.kind == "unit" or zipped:
            sid = cq500_study_id(name) or f"CQ500-CT-{int(zipped['n'])}"
            vid = pseudonym(sid, id_key) if id_mode == "hash" else sid  # same id for every CQ500 layout
            reason = "CQ500 study zip, read in place" if zipped else "CQ500 study folder"
            rows.append(_row(f, "ct", "ct_dir", id_key, volume=vid, reason=reason))
        elif f.kind == "plain" and id_mode != "folder":
            reason = "study folder (its name is replaced by a keyed hash)"
            rows.append(_row(f, "ct", "ct_dir", id_key, volume=pseudonym(name, id_key), reason=reason))
        elif f.kind == "plain" and VOLUME_ID.match(name):
            rows.append(Row("ct", "data.ct_dir", name, name, USED, "study folder", f.path))
        elif f.kind == "plain":
            reason = (
                "study folder whose name is no valid volume id (letters, digits, '_', '.', '-'): "
                "privacy.ct_study_ids: folder keeps names as ids; auto would hash it"
            )
            rows.append(_row(f, "ct", "ct_dir", id_key, status=NOT_USED, reason=reason))
        else:
            rows.append(_common_row(f, "ct", "ct_dir", id_key, "study", "CQ500 studies"))
    return rows


def find_ct_studies(
    ct_dir: str | os.PathLike, max_depth: int = 3, *, id_mode: str = "auto", id_key: str = ""
) -> dict[str, str]:
    """Map study id -> outermost study folder under ``ct_dir``.

    CQ500 folder names (up to ``max_depth`` levels down, below folders that hold them) give
    ``CQ500-CT-{n}`` ids (the names ``reads.csv`` uses; already pseudonymous). Every other folder
    directly under ``ct_dir`` that holds no CQ500 study is one study (non-CQ500 collections,
    whose folder names may be patient names), mixed with CQ500 folders or not. ``id_mode``:
    ``auto`` keeps CQ500 ids and replaces any other folder name by :func:`pseudonym`; ``hash``
    pseudonymises every study; ``folder`` keeps other folder names as ids when they are safe
    wildcard values. A second folder of the same study is not used (:func:`scan_ct_dir` says so).
    """
    return used_volumes(dedupe(scan_ct_dir(ct_dir, max_depth, id_mode=id_mode, id_key=id_key)))["ct"]


# -- OASIS-3 MR and PET sessions ----------------------------------------------------------------


def _session_reason(kind: str, modality: str, tracers: set[str]) -> str | None:
    """Why an OASIS-3 session of ``kind`` is not a ``modality`` volume (None: it is one)."""
    known = ", ".join(sorted(tracers))
    if modality == "mr":
        if kind == "MR":
            return None
        if kind in tracers:
            return f"an OASIS-3 PET session (tracer {kind}), not MR: PET sessions belong in data.pet_dir"
        return f"an OASIS-3 {kind} session: data.mr_dir takes MR sessions (OAS3xxxx_MR_dNNNN)"
    if kind in tracers:
        return None
    if kind == "MR":
        return "an OASIS-3 MR session, not PET: MR sessions belong in data.mr_dir"
    return f"an OASIS-3 {kind} session: no tracer {kind} in pet.windows_min ({known}); add its frame window there"


def scan_oasis_dir(root_dir, modality: str, tracers, *, id_key: str = "", max_depth: int = 2) -> list[Row]:
    """One :class:`Row` per entry of ``data.mr_dir`` / ``data.pet_dir``: OASIS-3 session folders
    (``OAS30001_MR_d0129``; PET: ``OAS30001_<TRACER>_dNNNN`` with a tracer of ``tracers``),
    directly or inside a folder of sessions; every other entry with its reason."""
    root = Path(root_dir)
    key = f"{modality}_dir"
    if not root.is_dir():
        raise FileNotFoundError(f"data.{key}: {root} is not a folder")
    tracers = {t.upper() for t in tracers}
    rows = []
    for f in _layout(root, lambda name: bool(OASIS_SESSION.match(name)), max_depth):
        name = f.rel.rsplit("/", 1)[-1]
        if f.kind == "unit":
            why = _session_reason(OASIS_SESSION.match(name)["kind"].upper(), modality, tracers)
            if why is None:
                rows.append(_row(f, modality, key, id_key, volume=name, reason=f"OASIS-3 {modality.upper()} session"))
            else:
                rows.append(_row(f, modality, key, id_key, status=NOT_USED, reason=why))
        elif f.kind == "plain":
            reason = (
                "unknown layout: not an OASIS-3 session folder (OAS3xxxx_MR_dNNNN, OAS3xxxx_<TRACER>_dNNNN) "
                "and holds none; list such scans in data.sample_sheet"
            )
            rows.append(_row(f, modality, key, id_key, status=NOT_USED, reason=reason))
        else:
            rows.append(_common_row(f, modality, key, id_key, "session", "OASIS-3 sessions"))
    return rows


def find_oasis_sessions(
    root_dir: str | os.PathLike, kinds: set[str] | None, *, exclude: set[str] = frozenset(), max_depth: int = 2
) -> dict[str, str]:
    """Map session id -> folder for OASIS-3 session folders under ``root_dir``.

    ``kinds`` selects by the middle token (``{"MR"}``, or tracers ``{"PIB", "AV45"}``);
    None accepts every kind not in ``exclude``.
    """
    root = Path(root_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    sessions: dict[str, str] = {}
    for f in _layout(root, lambda name: bool(OASIS_SESSION.match(name)), max_depth):
        name = f.rel.rsplit("/", 1)[-1]
        kind = OASIS_SESSION.match(name)["kind"].upper() if f.kind == "unit" else None
        if kind and (kinds is None or kind in kinds) and kind not in exclude:
            sessions.setdefault(name, f.path)
    return dict(sorted(sessions.items()))


# -- SynthRAD2023 Task 1 brain -----------------------------------------------------------------


def scan_synthrad_dir(root_dir, *, id_key: str = "") -> list[Row]:
    """Rows of ``data.synthrad_dir``: one MR and one CT volume per patient folder holding both
    ``mr.nii.gz`` and ``ct.nii.gz``; every other entry of the brain folder with its reason."""
    from medcyclegan.ingest import synthrad

    try:
        base = synthrad.brain_root(root_dir)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"data.synthrad_dir: {err}") from None
    prefix = Path(os.path.relpath(base, root_dir)).as_posix()
    rows = []
    for e in _entries(base):
        rel = e.name if prefix == "." else f"{prefix}/{e.name}"
        entry = public_entry("synthrad_dir", rel, id_key)
        if e.is_dir() and SYNTHRAD_ID.match(e.name):
            if all((Path(e.path) / SYNTHRAD_FILES[k]).is_file() for k in ("mr", "ct")):
                rows += [
                    Row(m, "data.synthrad_dir", entry, e.name, USED, "SynthRAD2023 patient", e.path)
                    for m in ("mr", "ct")
                ]
                continue
            reason = "a SynthRAD2023 patient folder without both mr.nii.gz and ct.nii.gz"
        else:
            reason = "not a SynthRAD2023 Task 1 brain patient folder (like 1BA001)"
        rows.append(Row("mr/ct", "data.synthrad_dir", entry, "", NOT_USED, reason, e.path))
    return rows


# -- every source together ---------------------------------------------------------------------


def dedupe(rows: list[Row]) -> list[Row]:
    """Mark every later row of a volume id already used as a duplicate (first source, then the
    shallowest folder, then the listing order wins); returns ``rows``."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i].group, rows[i].depth, i))
    first: dict[tuple[str, str], Row] = {}
    for i in order:
        r = rows[i]
        if r.status != USED or not r.volume:
            continue
        winner = first.setdefault((r.modality, r.volume), r)
        if winner is not r:
            r.status = NOT_USED
            r.reason = f"duplicate: volume {r.volume} is already the {winner.source} entry {winner.entry}"
    return rows


def used_volumes(rows: list[Row]) -> dict[str, dict[str, str]]:
    """``{modality: {volume: source path}}`` of the used rows (sorted by id)."""
    out: dict[str, dict[str, str]] = {m: {} for m in MODALITIES}
    for r in rows:
        if r.status == USED and r.volume:
            out[r.modality][r.volume] = r.path
    return {m: dict(sorted(v.items())) for m, v in out.items()}


@dataclass
class Discovery:
    """What :func:`discover` found: ``rows`` (the report, in source order), ``volumes``
    (``{modality: {volume: source}}``), ``demo`` (the modalities taken from the demo data),
    ``synthrad`` (SynthRAD patient id -> folder), ``pins`` (subject -> split the sample sheet
    pins it to) and ``tracers`` (PET volume -> tracer given in the sample sheet)."""

    rows: list[Row]
    volumes: dict[str, dict[str, str]]
    demo: frozenset[str] = frozenset()
    synthrad: dict[str, str] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)
    tracers: dict[str, str] = field(default_factory=dict)

    def public_rows(self) -> list[dict[str, str]]:
        """The report's rows as written (no raw path)."""
        return [r.public() for r in self.rows]

    def not_used(self, modality: str, limit: int = 3) -> str:
        """The first entries of ``modality`` not used, with their reasons (for a start-up message)."""
        rows = [r for r in self.rows if r.status == NOT_USED and modality in r.modality.split("/")]
        text = "; ".join(f"{r.source} {r.entry}: {r.reason}" for r in rows[:limit])
        return text + (f"; and {len(rows) - limit} more" if len(rows) > limit else "")

    def refs(self) -> dict[str, str]:
        """Raw path of every entry written as a reference (``ct_dir/f-<hex>``), for ``locate``."""
        return {r.entry: r.path for r in self.rows if "/f-" in r.entry}


def _scan_folders(data: dict, privacy: dict, tracers: set[str]) -> list[Row]:
    """The rows of every data folder, each folder a group of its own (in this order)."""
    key, scans = privacy["id_key"], []
    if data["synthrad_dir"]:
        scans.append(scan_synthrad_dir(data["synthrad_dir"], id_key=key))
    if data["ct_dir"]:
        scans.append(scan_ct_dir(data["ct_dir"], id_mode=privacy["ct_study_ids"], id_key=key))
    scans += [scan_oasis_dir(data[f"{m}_dir"], m, tracers, id_key=key) for m in ("mr", "pet") if data[f"{m}_dir"]]
    return [_in_group(r, group) for group, rows in enumerate(scans) for r in rows]


def _in_group(row: Row, group: int) -> Row:
    row.group = group
    return row


def discover(config: dict, demo_dir: str, *, demo_ids: Callable[[str], list[str]] | None = None) -> Discovery:
    """Every source of a validated ``config`` (``data``, ``privacy``, ``pet.windows_min``; the
    ``demo`` for a modality no source provides), from names only: see the module docstring.

    ``demo_ids(modality)`` gives the demo's volume ids (``medcyclegan.demo``; needed only when a
    modality uses the demo, whose raw data is written under ``demo_dir/raw/<modality>/<id>``).
    Raises ``FileNotFoundError`` / ``ValueError`` (a bad sample sheet: its row and column) with
    the config key in the message.
    """
    data, privacy = config["data"], config["privacy"]
    tracers = {t.upper() for t in config["pet"]["windows_min"]}
    rows = _scan_folders(data, privacy, tracers)
    pins, sheet_tracers = {}, {}
    if data.get("sample_sheet"):
        from medcyclegan.ingest.sample_sheet import read_sample_sheet

        sheet = read_sample_sheet(
            data["sample_sheet"], tracers=tracers, id_mode=privacy["ct_study_ids"], id_key=privacy["id_key"]
        )
        rows += [_in_group(r, 10) for r in sheet.rows]
        pins, sheet_tracers = sheet.pins, sheet.tracers
    synthrad = {r.volume: r.path for r in rows if r.source == "data.synthrad_dir" and r.modality == "mr" and r.volume}
    provided = {r.modality for r in rows if r.source.startswith("data.sample_sheet")}
    demo = frozenset(
        m for m in MODALITIES if not data[f"{m}_dir"] and m not in provided and not (synthrad and m != "pet")
    )
    for m in sorted(demo, key=MODALITIES.index):
        if demo_ids is None:
            raise ValueError(f"{m}: no data source is configured and no demo_ids were given for the demo data")
        reason = f"demo volume (no data.{m}_dir, data.synthrad_dir or sample-sheet row gives {m})"
        rows += [Row(m, "demo", v, v, USED, reason, f"{demo_dir}/raw/{m}/{v}", group=11) for v in demo_ids(m)]
    dedupe(rows)
    return Discovery(rows, used_volumes(rows), demo, dict(sorted(synthrad.items())), pins, sheet_tracers)


def discover_volumes(
    config: dict, demo_dir: str, *, demo_ids: Callable[[str], list[str]] | None = None
) -> dict[str, dict[str, str]]:
    """``{modality: {volume_id: source path}}`` of a validated config: what the workflow
    (rules/common.smk) ingests and what ``python -m medcyclegan locate`` maps ids back to."""
    return discover(config, demo_dir, demo_ids=demo_ids).volumes


def write_discovery_table(rows: list[dict], out_csv) -> None:
    """``results/qc/discovery.csv``: the report rows (:meth:`Discovery.public_rows`) as they are."""
    import pandas as pd

    from medcyclegan.io import atomic

    atomic.write_csv(out_csv, pd.DataFrame([{c: r.get(c, "") for c in COLUMNS} for r in rows], columns=list(COLUMNS)))


def discovery_summary(csv_path) -> str:
    """A sentence for the end of a run when any entry of the data was not used, else ""."""
    p = Path(csv_path)
    if not p.exists():
        return ""
    with p.open(newline="") as fh:
        n = sum(1 for row in csv.DictReader(fh) if row.get("status") == NOT_USED)
    if n == 0:
        return ""
    what = (
        "entry of the data folders and sample sheet was"
        if n == 1
        else "entries of the data folders and sample sheet were"
    )
    return f"{n} {what} not used; see {p} (entry, reason)."


def subject_of(volume_id: str) -> str:
    """Subject (the unit of the train/test split) of a volume id.

    OASIS sessions map to their participant (``OAS30001_MR_d0129`` -> ``OAS30001``), so two
    sessions of one person never land on both sides of a split; sample-sheet volumes
    (``anon-<12 hex>_MR_d0129``, ``CQ500-CT-12_MR``) to their subject; other ids are their own
    subject.
    """
    m = OASIS_SESSION.match(volume_id) or SHEET_VOLUME.match(volume_id)
    return m["subject"] if m else volume_id
