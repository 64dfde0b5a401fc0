"""From a pseudonymous reference back to the file on the user's own disk.

Outputs name the files of a volume's input by reference only (``VOLUME/f-<hex>``, see
:mod:`medcyclegan.privacy`); the discovery report names unused entries of the data folders the
same way (``ct_dir/f-<hex>``, ``sample_sheet/f-<hex>``). :func:`locate` finds the volumes as the
workflow does (:func:`medcyclegan.ingest.discovery.discover`), recomputes the keyed hashes of
every path under the referenced volume's source and returns the paths that match. The result is
printed on the console of whoever runs it, never written under ``results/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from medcyclegan.ingest.discovery import discover
from medcyclegan.privacy import FILE_REF, referenced_paths


def references_in(texts: Iterable[str]) -> list[str]:
    """Every reference (``OWNER/f-<hex>``) in ``texts`` (arguments, or the text of files such as
    ``results/qc/rejected.csv``), in order of first appearance."""
    found: dict[str, None] = {}
    for text in texts:
        for m in FILE_REF.finditer(text):
            found[m.group(0)] = None
    return list(found)


def locate(
    texts: Iterable[str], config: dict, demo_dir: str, demo_ids: Callable[[str], list[str]] | None = None
) -> list[tuple[str, list[str]]]:
    """``(reference, [matching paths])`` for every reference in ``texts``; ``config``: the
    validated workflow config (its data folders, sample sheet and ``privacy.id_key``)."""
    key = config["privacy"]["id_key"]
    found = discover(config, demo_dir, demo_ids=demo_ids)
    sources = {volume: source for by_id in found.volumes.values() for volume, source in by_id.items()}
    entries = found.refs()
    results = []
    for ref in references_in(texts):
        owner, digest = FILE_REF.fullmatch(ref).group("volume", "digest")
        if ref in entries:
            results.append((ref, [entries[ref]]))
        elif owner in sources:
            results.append((ref, referenced_paths(sources[owner], ref, key)))
        else:
            results.append((ref, []))
    return results
