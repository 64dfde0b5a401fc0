"""The privacy boundary: what may leave the code that reads raw input.

Free text of the input (series descriptions, protocol names, comments, sidecar text, folder and
file names) can hold a patient's name, so it is never written to an output, a log line or a
message. Only structured facts (numbers, codes, enumerated values, the volume id) and
pseudonymous references leave:

* ``VOLUME/f-<10 hex>``: a file or folder inside a volume's source, the keyed hash (HMAC-SHA256
  under ``privacy.id_key``) of its path relative to the source (or of its name alone, where a
  message names only the file); ``python -m medcyclegan locate`` recomputes the hashes on the
  user's own disk and prints the path, so the user can still find the file;
* ``t-<10 hex>``: a piece of free text (the same text always gives the same reference).

Code that reads free text (to choose a series by its description, say) calls :func:`free_text`
on it, which registers the value with the active :class:`Boundary`; the job passes everything it
writes through :meth:`Boundary.public`, which replaces every registered value and every path
under the source by its reference, wherever it appears in a string.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import logging
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REF_HEX = 10
#: a reference to a file or folder of a volume's source, as written in outputs
FILE_REF = re.compile(rf"(?P<volume>[A-Za-z0-9][A-Za-z0-9_.-]*)/f-(?P<digest>[0-9a-f]{{{REF_HEX}}})")

#: folder and file names that are layout, not identity: kept readable (case-insensitive)
_LAYOUT_NAMES = re.compile(
    r"^(?:[A-Za-z]{1,2}\d*|\d+|(?:anat|func|pet|dwi|fmap|swi|ct)\d*|NIFTI|BIDS|DICOM|DICOMDIR|"
    r"Unknown Study|CQ500CT\d+ CQ500CT\d+|CQ500-CT-\d+|OAS3\d+(?:_[A-Za-z0-9]+_d\d+)?)$",
    re.IGNORECASE,
)
#: text this short or purely a number/code cannot name anyone and appears in every message
_TRIVIAL_TEXT = re.compile(r"^(?:.{0,2}|[-+0-9.eE\\/ ]+)$", re.DOTALL)
_NAME_SUFFIXES = re.compile(r"(\.nii\.gz|\.nii|\.json|\.dcm|\.ima|\.gz|\.zip)$", re.IGNORECASE)
#: values the pipeline itself treats as codes (modalities, PET tracers): structured, not free text
ENUMERATED = frozenset({"CT", "MR", "PT", "PET", "PIB", "AV45", "AV1451", "FDG", "FBB", "FBP", "NAV4694"})
#: DICOM value representations of free text (the others hold numbers, codes, dates, UIDs)
FREE_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "AE", "UN"})

_active: contextvars.ContextVar[Boundary | None] = contextvars.ContextVar("privacy_boundary", default=None)


def keyed_digest(text: str, key: str) -> str:
    """First hex digits of HMAC-SHA256(key, text): stable, and with a secret key not testable
    against guessed names."""
    return hmac.new(key.encode("utf-8"), text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:REF_HEX]


def text_ref(text: str, key: str = "") -> str:
    """``t-<hex>``: the reference written in place of a piece of free text."""
    return f"t-{keyed_digest(' '.join(str(text).split()), key)}"


def file_ref(volume: str, relative: str, key: str = "") -> str:
    """``VOLUME/f-<hex>``: the reference of a path relative to a volume's source (``/`` separated)."""
    return f"{volume}/f-{keyed_digest(relative, key)}"


def free_text(value: Any) -> str:
    """``value`` as text, registered as free text with the active boundary (if any): read it for a
    decision, never write it. Returns the text unchanged."""
    text = "" if value is None else str(value)
    boundary = _active.get()
    if boundary is not None:
        boundary.add_text(text)
    return text


def free_text_fields(fields: Any, free: bool = True) -> None:
    """Register the free text of a JSON sidecar (or any JSON-like mapping of DICOM-style keys)
    with the active boundary: strings under keys whose DICOM value representation is free text
    (:data:`FREE_TEXT_VRS`) or that are no DICOM keyword at all; codes (CS) and numbers stay."""
    if _active.get() is None:
        return
    if isinstance(fields, str):
        if free:
            free_text(fields)
    elif isinstance(fields, dict):
        for key, value in fields.items():
            free_text_fields(value, _is_free_text_key(str(key)))
    elif isinstance(fields, (list, tuple)):
        for value in fields:
            free_text_fields(value, free)


def _is_free_text_key(keyword: str) -> bool:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return tag is None or dictionary_VR(tag) in FREE_TEXT_VRS


def active() -> Boundary | None:
    """The boundary of the job running now, if any."""
    return _active.get()


class Boundary:
    """What one job may write about one volume's raw input (see the module docstring)."""

    def __init__(self, volume: str, source: str | os.PathLike | None, id_key: str = "", codes=()):
        self.volume = volume
        self.key = id_key
        self.codes = ENUMERATED | {str(c).upper() for c in codes}
        self._secrets: dict[str, str] = {}
        self._pattern: re.Pattern | None = None
        if source:
            self._add_source(Path(source))

    # -- registering what must not be written -----------------------------------------------

    def _add(self, raw: str, ref: str) -> None:
        raw = raw.strip()
        if raw in self._secrets or raw == self.volume or raw.upper() in self.codes or _TRIVIAL_TEXT.match(raw):
            return
        if raw:
            self._secrets[raw] = ref
            self._pattern = None

    def add_text(self, text: str) -> None:
        """Register one piece of free text (and each of its lines) for replacement."""
        for part in [text, *str(text).splitlines()]:
            self._add(str(part), text_ref(part, self.key))

    def _add_name(self, name: str, ref: str) -> None:
        stem = _NAME_SUFFIXES.sub("", name)
        if not _LAYOUT_NAMES.match(stem) and name != self.volume:  # CT000012.dcm stays readable
            self._add(name, ref)
            self._add(stem, ref)

    def _add_source(self, source: Path) -> None:
        forms = {str(source), os.path.abspath(source), str(source.resolve())}
        for form in forms:
            self._add(form.rstrip("/"), self.volume)
        self._add_name(source.name, self.volume)
        for relative in relative_paths(source):
            ref = file_ref(self.volume, relative, self.key)
            for form in forms:
                self._add(f"{form.rstrip('/')}/{relative}", ref)
            if "/" in relative:  # a top-level entry is its name: layout names stay readable
                self._add(relative, ref)
            self._add_name(relative.rsplit("/", 1)[-1], file_ref(self.volume, relative.rsplit("/", 1)[-1], self.key))

    # -- what may be written ----------------------------------------------------------------

    def _regex(self) -> re.Pattern | None:
        if self._pattern is None and self._secrets:
            # longest first; the volume id is an alternative that stays itself, so that a registered
            # text inside it (a tracer in a session id, say) is never replaced
            texts = sorted({*self._secrets, self.volume}, key=len, reverse=True)
            alternatives = "|".join(re.escape(s) for s in texts)
            self._pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")
        return self._pattern

    def public(self, value: Any) -> Any:
        """``value`` (text, or a JSON-like structure, keys included) with every registered free
        text and every path under the source replaced by its reference; numbers pass as they are."""
        if isinstance(value, str):
            pattern = self._regex()
            return pattern.sub(lambda m: self._secrets.get(m.group(0), m.group(0)), value) if pattern else value
        if isinstance(value, dict):
            return {self.public(k): self.public(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.public(v) for v in value]
        if isinstance(value, os.PathLike):
            return self.public(os.fspath(value))
        return value


def relative_paths(source: Path) -> list[str]:
    """Every file and folder inside a source folder, or a zip archive's members (with the folders
    they imply), as ``/``-separated paths relative to it; a damaged archive gives none (ingest
    rejects it naming the archive, whose own path is registered)."""
    if source.is_dir():
        found = []
        for root, dirs, files in os.walk(source):
            dirs.sort()
            found += [(Path(root) / name).relative_to(source).as_posix() for name in sorted(dirs) + sorted(files)]
        return found
    try:
        with zipfile.ZipFile(source) as archive:
            names = [n.rstrip("/") for n in archive.namelist()]
    except (OSError, zipfile.BadZipFile, ValueError):
        return []
    implied = {"/".join(n.split("/")[:k]) for n in names for k in range(1, n.count("/") + 1)}
    return sorted({n for n in names if n} | implied)


class _PublicRecords(logging.Filter):
    """Rewrites every log record (message, arguments, exception text) through a boundary."""

    def __init__(self, boundary: Boundary):
        super().__init__()
        self.boundary = boundary

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = self.boundary.public(message), None
        return True


@contextlib.contextmanager
def boundary(volume: str, source: str | os.PathLike | None, id_key: str = "", codes=()) -> Iterator[Boundary]:
    """Run a job for one volume behind its boundary: :func:`free_text` registers with it, and every
    log record (warnings included) of every handler of the root logger passes through
    :meth:`Boundary.public`. ``codes``: more enumerated values to keep (e.g. the configured tracers)."""
    b = Boundary(volume, source, id_key, codes)
    token = _active.set(b)
    handlers = list(logging.getLogger().handlers)
    record_filter = _PublicRecords(b)
    for h in handlers:
        h.addFilter(record_filter)
    logging.captureWarnings(True)
    try:
        yield b
    finally:
        logging.captureWarnings(False)
        for h in handlers:
            h.removeFilter(record_filter)
        _active.reset(token)


class RedactedError(RuntimeError):
    """A bug's exception, its message and traceback passed through a boundary: a failing job must
    not print a patient's name that sat in a path or a description."""


@contextlib.contextmanager
def public_errors(b: Boundary) -> Iterator[None]:
    """Turn any exception raised inside into a :class:`RedactedError` whose text is public (the
    original traceback, redacted, is part of the message)."""
    try:
        yield
    except Exception as exc:
        import traceback

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise RedactedError(b.public(f"{type(exc).__name__}: {exc}\n{text}")) from None


def job_source(raw: str | os.PathLike, volume: str, link_dir: str | os.PathLike) -> str:
    """The path a job is given for a volume's raw input: a symlink ``link_dir/VOLUME`` (a file
    keeps its ``.nii``/``.nii.gz`` suffix, and a JSON sidecar next to it is linked as
    ``VOLUME.json``), so that no folder or file name of the input appears in Snakemake's job
    listing or bookkeeping. The link is made (or re-pointed) at planning time; Snakemake judges
    the input by its target's modification time, so a link never triggers a rerun itself."""
    raw_path = Path(os.path.abspath(raw))
    suffix = next((s for s in (".nii.gz", ".nii", ".zip") if raw_path.name.lower().endswith(s)), "")
    link = Path(link_dir) / f"{volume}{suffix}"
    _point(link, raw_path)
    if suffix.startswith(".nii"):
        sidecar = raw_path.with_name(raw_path.name[: -len(suffix)] + ".json")
        if sidecar.is_file():
            _point(link.with_name(f"{volume}.json"), sidecar)
    return str(link)


def _point(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target`` unless it already is one (atomically replaced)."""
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    partial = link.with_name(f".{link.name}.{os.getpid()}")
    if partial.is_symlink():
        partial.unlink()
    os.symlink(target, partial)
    os.replace(partial, link)


def referenced_paths(source: str | os.PathLike, ref: str, key: str = "") -> list[str]:
    """The paths under ``source`` (a folder or a zipped study) that ``ref`` (``VOLUME/f-<hex>``,
    as the boundary wrote it) stands for: the keyed hash recomputed over every relative path and
    name on this machine. A job that needs the file an output names (the original NIfTI of a
    volume, say) finds it this way, and so does ``python -m medcyclegan locate``."""
    m = FILE_REF.fullmatch(ref.strip())
    if m is None:
        return []
    source = Path(source)
    found = [str(source)] if keyed_digest(source.name, key) == m["digest"] else []
    for relative in relative_paths(source):
        if m["digest"] in (keyed_digest(relative, key), keyed_digest(relative.rsplit("/", 1)[-1], key)):
            found.append(f"{source}/{relative}")
    return found
