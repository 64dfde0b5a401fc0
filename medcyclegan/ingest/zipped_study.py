"""A CT study read in place from its zip archive, as CQ500 is downloaded (``CQ500-CT-{n}.zip``).

The archive is never unpacked to disk: its members are read one at a time, straight from the
archive, when the series code asks for them. A member is a :class:`ZipMember`, which stands in
for a file or folder ``Path`` wherever the series listing and stacking code
(:mod:`~medcyclegan.ingest.ct_series`, :mod:`~medcyclegan.ingest.ct_stack`,
:mod:`~medcyclegan.ingest.dicom_files`) uses one: it has a ``name``, a ``suffix``, a ``parent``,
sorts and prints like a path under the archive (``<zip path>/CQ500CT1 CQ500CT1/Unknown
Study/CT PLAIN/CT000017.dcm``, so messages name the member and the privacy boundary turns it into
a reference), and :func:`open_binary` opens it. So a study reads the same from its zip as from its
unzipped folder: the same series table, selection and geometry checks, the same volume.

A damaged archive is refused with :class:`ArchiveDamaged` (an :class:`IngestError`): not a zip,
a truncated one (no central directory: an incomplete download), a member whose data fails its
CRC or cannot be decompressed. A header-only read stops before the pixel data; reading a whole
member checks its CRC, so every slice of the volume comes from verified bytes.
"""

from __future__ import annotations

import functools
import io
import os
import posixpath
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from medcyclegan.ingest import IngestError

__all__ = [
    "ArchiveDamaged",
    "ZipMember",
    "is_archive",
    "member_paths",
    "open_binary",
    "study_folders",
    "zip_folder_files",
]

#: a member larger than this is refused (no DICOM slice is that large; a zip bomb would be)
MAX_MEMBER_BYTES = 1 << 31
#: open archives kept per process (the central directory is parsed once, not once per member)
_OPEN_LIMIT = 4
_OPEN: OrderedDict[tuple, _Archive] = OrderedDict()
_REDOWNLOAD = "Re-download the study zip (and check its size against the source), or unzip a good copy."


class ArchiveDamaged(IngestError):
    """The study's zip archive itself is damaged: the study is rejected (no other series is
    tried, as for a damaged DICOM file in a folder: the archive as a whole is suspect)."""


@functools.total_ordering
class ZipMember:
    """A file or folder inside a zip archive, used where the CT code uses a ``Path``.

    ``archive``: the zip's path as given; ``member``: the name inside it (posix, no trailing
    slash; "" for the archive's top level). Picklable (workers decoding a compressed series get
    the two strings and open the archive themselves)."""

    __slots__ = ("archive", "member")

    def __init__(self, archive: str | os.PathLike, member: str):
        self.archive = str(archive)
        self.member = member.strip("/")

    def __str__(self) -> str:
        return f"{self.archive}/{self.member}" if self.member else self.archive

    def __repr__(self) -> str:
        return f"ZipMember({self.archive!r}, {self.member!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, ZipMember) and (self.archive, self.member) == (other.archive, other.member)

    def __lt__(self, other: ZipMember) -> bool:
        return (self.archive, self.member) < (other.archive, other.member)

    def __hash__(self) -> int:
        return hash((self.archive, self.member))

    def __getstate__(self):
        return self.archive, self.member

    def __setstate__(self, state) -> None:
        self.archive, self.member = state

    @property
    def name(self) -> str:
        return posixpath.basename(self.member) if self.member else Path(self.archive).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> ZipMember:
        return ZipMember(self.archive, posixpath.dirname(self.member))

    def relative_to(self, _study) -> PurePosixPath:
        """The path inside the archive (what a study folder's relative path is)."""
        return PurePosixPath(self.member or ".")

    def resolve(self) -> ZipMember:
        """The member under the archive's resolved path (as ``Path.resolve`` for a folder)."""
        return ZipMember(str(Path(self.archive).resolve()), self.member)

    def is_dir(self) -> bool:
        return self.member == "" or self.member + "/" in _archive(self.archive).folders

    def is_file(self) -> bool:
        return self.member in _archive(self.archive).infos


# --------------------------------------------------------------------------------------------
# the archive
# --------------------------------------------------------------------------------------------


def is_archive(source: str | os.PathLike) -> bool:
    """A CT source that is a file, not a folder: a study zip (the job is handed a link named by
    the volume id, without the ``.zip`` suffix, so the name cannot tell), or a ``.zip`` name."""
    path = Path(source)
    return path.is_file() or (path.name.lower().endswith(".zip") and not path.is_dir())


def _why_not_a_zip(path: Path, exc: Exception) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        return f"cannot be read ({err})"
    if not head:
        return "is empty (0 bytes): an incomplete download"
    if head[:2] == b"PK":
        return (
            f"is truncated or damaged: its central directory (the end of the archive) is missing "
            f"or unreadable ({exc}): an incomplete download"
        )
    return f"is not a zip archive (it does not start with the zip signature 'PK'; {exc})"


class _Archive:
    """An open archive and its index (member infos, folders, the folder tree), built once."""

    def __init__(self, zf: zipfile.ZipFile):
        self.zf = zf
        self.infos = {i.filename.strip("/"): i for i in zf.infolist() if not i.is_dir()}
        self.folders: set[str] = set()  # explicit or implied by a member's path, as "a/b/"
        for info in zf.infolist():
            parts = info.filename.strip("/").split("/")
            stop = len(parts) if info.is_dir() else len(parts) - 1
            self.folders.update("/".join(parts[: k + 1]) + "/" for k in range(stop))
        self.tree = self._tree()

    def _tree(self) -> dict[str, tuple[list[str], list[str]]]:
        """Folder ("" = top) -> (sub-folder names, file names), both sorted."""
        tree: dict[str, tuple[list[str], list[str]]] = {"": ([], [])}
        for folder in sorted(self.folders):
            folder = folder.rstrip("/")
            tree.setdefault(folder, ([], []))
            tree.setdefault(posixpath.dirname(folder), ([], []))[0].append(posixpath.basename(folder))
        for name in self.infos:
            tree.setdefault(posixpath.dirname(name), ([], []))[1].append(posixpath.basename(name))
        for dirs, files in tree.values():
            dirs.sort()
            files.sort()
        return tree


def _archive(archive: str) -> _Archive:
    """The open archive, cached per process (a forked worker opens its own: an inherited handle
    shares the file offset with the parent); a rewritten file is opened again."""
    path = Path(archive)
    try:
        st = path.stat()
    except OSError as exc:
        raise ArchiveDamaged(f"{archive}: CT study archive cannot be opened ({exc}).", file=archive) from exc
    key = (os.getpid(), archive, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _OPEN:
        _OPEN.move_to_end(key)
        return _OPEN[key]
    try:
        opened = _Archive(zipfile.ZipFile(path))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise ArchiveDamaged(
            f"{archive}: the CT study archive {_why_not_a_zip(path, exc)}. {_REDOWNLOAD}", file=archive
        ) from exc
    _OPEN[key] = opened
    while len(_OPEN) > _OPEN_LIMIT:
        old_key, old = _OPEN.popitem(last=False)
        if old_key[0] == os.getpid():
            old.zf.close()
    return opened


def close_archives() -> None:
    """Close every archive this process opened (tests, and a long-lived process between studies)."""
    for key in [k for k in _OPEN if k[0] == os.getpid()]:
        _OPEN.pop(key).zf.close()


def _damaged(member: ZipMember, exc: Exception) -> ArchiveDamaged:
    if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        what = "is encrypted (password protected); unzip it with its password"
    elif isinstance(exc, NotImplementedError):
        what = f"uses a compression method Python's zipfile cannot read ({exc}); unzip it with another tool"
    else:
        what = f"cannot be read from the archive, which is damaged ({type(exc).__name__}: {exc})"
    return ArchiveDamaged(
        f"{member}: the member of the zip archive {member.archive} {what}. {_REDOWNLOAD}", file=str(member)
    )


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, KeyError)


def open_binary(path, *, whole: bool = True) -> IO[bytes]:
    """A binary file object of a filesystem path or a :class:`ZipMember`. A member is read whole
    into memory (its CRC checked; one slice, never the archive), or with ``whole=False`` streamed
    from the archive (a header read stops early, so the rest is never decompressed)."""
    if not isinstance(path, ZipMember):
        return open(path, "rb")
    opened = _archive(path.archive)
    info = opened.infos.get(path.member)
    if info is None:
        raise FileNotFoundError(f"{path}: no such member in the zip archive")
    if info.file_size > MAX_MEMBER_BYTES:
        raise ArchiveDamaged(
            f"{path}: the member announces {info.file_size} bytes, more than any DICOM slice: "
            f"the archive is damaged or not a CT study. {_REDOWNLOAD}",
            file=str(path),
        )
    try:
        return io.BytesIO(opened.zf.read(info)) if whole else opened.zf.open(info)
    except _READ_ERRORS as exc:
        raise _damaged(path, exc) from exc


# --------------------------------------------------------------------------------------------
# folders and files of an archive, as os.walk / os.scandir see a study folder
# --------------------------------------------------------------------------------------------


def zip_folder_files(folder: ZipMember) -> list[ZipMember]:
    """The files directly inside a folder of an archive, sorted by name (as ``os.scandir``)."""
    files = _archive(folder.archive).tree.get(folder.member, ([], []))[1]
    return [ZipMember(folder.archive, posixpath.join(folder.member, name)) for name in files]


def _walk(archive: str) -> Iterator[ZipMember]:
    """Every folder of the archive, top-down, sub-folders in sorted order (as ``os.walk`` with
    ``dirs.sort()``)."""
    tree = _archive(archive).tree
    stack = [""]
    while stack:
        folder = stack.pop()
        yield ZipMember(archive, folder)
        stack.extend(reversed([posixpath.join(folder, d) for d in tree[folder][0]]))


def study_folders(study: Path) -> Iterator[Path | ZipMember]:
    """The folders of a CT study, top-down in sorted order: of a study folder (``os.walk``), or
    of a study zip read in place (:class:`ZipMember` folders); else :class:`IngestError`."""
    if study.is_dir():
        for root, dirs, _files in os.walk(study):
            dirs.sort()
            yield Path(root)
        return
    if not is_archive(study):
        raise IngestError(f"{study}: CT study folder does not exist or is not a folder.")
    if not _archive(str(study)).infos:
        raise ArchiveDamaged(f"{study}: the CT study archive holds no files. {_REDOWNLOAD}", file=str(study))
    yield from _walk(str(study))


def member_paths(archive: str | os.PathLike) -> list[str]:
    """Every folder and file inside a study zip, as a path relative to the archive ("a", "a/b",
    "a/b/CT000000.dcm" ...), sorted: what a folder source's ``os.walk`` would list (for the
    privacy boundary, which must register these names as it does a folder's)."""
    archive = str(archive)
    opened = _archive(archive)
    names = {f.rstrip("/") for f in opened.folders} | set(opened.infos)
    return sorted(names)
