"""Find studies and sessions in raw data folders from folder names only.

Snakemake calls these while it builds the DAG, so they must never open an image file:
at 5,000 volumes the DAG has to build in seconds. Each returns ``{volume_id: folder}``
with ids safe to use as wildcards.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

# CQ500 study folders: "CQ500CT43 CQ500CT43" (zip content) or "CQ500-CT-43" (zip name)
_CQ500_PATTERNS = (
    re.compile(r"^CQ500CT(?P<n>\d+) CQ500CT(?P=n)$"),
    re.compile(r"^CQ500-CT-(?P<n>\d+)$"),
)
# OASIS-3 sessions: OAS30001_MR_d0129, OAS31463_PIB_d0364, OAS30001_AV45_d2430
OASIS_SESSION = re.compile(r"^(?P<subject>OAS3\d+)_(?P<kind>[A-Za-z0-9]+)_(?P<day>d\d+)$")
VOLUME_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
WILDCARD_REGEX = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"


def _subdirs(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)
    except FileNotFoundError:
        return []


def cq500_study_id(folder_name: str) -> str | None:
    """``CQ500-CT-{n}`` for a CQ500 study folder name, else None."""
    for pattern in _CQ500_PATTERNS:
        m = pattern.match(folder_name)
        if m:
            return f"CQ500-CT-{int(m['n'])}"
    return None


PSEUDONYM = re.compile(r"^anon-[0-9a-f]{12}$")
ID_MODES = ("auto", "folder", "hash")


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


def find_ct_studies(
    ct_dir: str | os.PathLike, max_depth: int = 3, *, id_mode: str = "auto", id_key: str = ""
) -> dict[str, str]:
    """Map study id -> outermost study folder under ``ct_dir``.

    CQ500 folder names give ``CQ500-CT-{n}`` ids (the names ``reads.csv`` uses; already
    pseudonymous). Any other folder directly under ``ct_dir`` is taken as one study (non-CQ500
    collections, whose folder names may be patient names). ``id_mode``: ``auto`` keeps CQ500 ids
    and replaces any other folder name by :func:`pseudonym`; ``hash`` pseudonymises every study;
    ``folder`` keeps other folder names as ids when they are safe wildcard values.
    """
    if id_mode not in ID_MODES:
        raise ValueError(f"privacy.ct_study_ids must be one of {ID_MODES}, got {id_mode!r}")
    root = Path(ct_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data.ct_dir: {root} is not a folder")
    studies: dict[str, str] = {}

    def walk(folder: Path, depth: int) -> None:
        for entry in _subdirs(folder):
            sid = cq500_study_id(entry.name)
            if sid:
                if sid in studies:
                    raise ValueError(f"CT study {sid} found twice: {studies[sid]} and {entry.path}")
                studies[sid] = entry.path
            elif depth < max_depth:
                walk(Path(entry.path), depth + 1)

    walk(root, 1)
    if not studies:
        for entry in _subdirs(root):
            if id_mode != "folder":
                studies[pseudonym(entry.name, id_key)] = entry.path
            elif VOLUME_ID.match(entry.name):
                studies[entry.name] = entry.path
    elif id_mode == "hash":
        studies = {pseudonym(sid, id_key): path for sid, path in studies.items()}  # same id for both CQ500 layouts
    return dict(sorted(studies.items()))


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

    def walk(folder: Path, depth: int) -> None:
        for entry in _subdirs(folder):
            m = OASIS_SESSION.match(entry.name)
            if m:
                kind = m["kind"].upper()
                if (kinds is None or kind in kinds) and kind not in exclude:
                    sessions[entry.name] = entry.path
            elif depth < max_depth:
                walk(Path(entry.path), depth + 1)

    walk(root, 1)
    return dict(sorted(sessions.items()))


def subject_of(volume_id: str) -> str:
    """Subject (the unit of the train/test split) of a volume id.

    OASIS sessions map to their participant (``OAS30001_MR_d0129`` -> ``OAS30001``), so two
    sessions of one person never land on both sides of a split; other ids are their own subject.
    """
    m = OASIS_SESSION.match(volume_id)
    return m["subject"] if m else volume_id
