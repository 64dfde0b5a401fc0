"""From a pseudonymous reference back to the file on the user's own disk.

Outputs name the files of a volume's input by reference only (``VOLUME/f-<hex>``, see
:mod:`medcyclegan.privacy`). :func:`locate` recomputes the keyed hashes of every path under that
volume's source (or, for ``ct_dir/f-<hex>``-style references of the discovery report, of the
entries of the data folder) and returns the paths that match. The result is printed on the
console of whoever runs it, never written under ``results/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from medcyclegan.ingest.discovery import discover_volumes
from medcyclegan.privacy import FILE_REF, keyed_digest

_DATA_DIR_REF = re.compile(r"^(?P<modality>ct|mr|pet|synthrad)_dir$")


def references_in(texts: Iterable[str]) -> list[tuple[str, str]]:
    """Every ``(volume or data-folder key, digest)`` reference in ``texts`` (arguments, or the text
    of files such as ``results/qc/rejected.csv``), in order of first appearance."""
    found: dict[tuple[str, str], None] = {}
    for text in texts:
        for m in FILE_REF.finditer(text):
            found[(m["volume"], m["digest"])] = None
    return list(found)


def _entries(source: Path) -> Iterable[tuple[Path, list[str]]]:
    """``(path, [texts it may have been hashed from])`` for every file and folder under ``source``."""
    if not source.is_dir():
        yield source, [source.name]
        return
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = Path(root) / name
            yield path, [path.relative_to(source).as_posix(), name]


def _match(candidates: Iterable[tuple[Path, list[str]]], digest: str, key: str) -> list[str]:
    return sorted({str(path) for path, texts in candidates if any(keyed_digest(t, key) == digest for t in texts)})


def locate(texts: Iterable[str], config: dict, demo_dir: str) -> list[tuple[str, list[str]]]:
    """``(reference, [matching paths])`` for every reference in ``texts``; ``config``: the
    validated workflow config (its data folders and ``privacy.id_key``)."""
    key = config["privacy"]["id_key"]
    volumes = discover_volumes(config, demo_dir)
    sources = {volume: source for by_id in volumes.values() for volume, source in by_id.items()}
    results = []
    for owner, digest in references_in(texts):
        ref = f"{owner}/f-{digest}"
        data_dir = _DATA_DIR_REF.match(owner)
        if data_dir:
            root = Path(config["data"][owner] or ".")
            entries = [(Path(e.path), [e.name]) for e in os.scandir(root)] if root.is_dir() else []
            results.append((ref, _match(entries, digest, key)))
        elif owner in sources:
            results.append((ref, _match(_entries(Path(sources[owner])), digest, key)))
        else:
            results.append((ref, []))
    return results
