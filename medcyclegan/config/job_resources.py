"""Memory and time requests of the per-volume jobs, from the size of their input.

A fixed ``mem_mb`` sized on the demo (a 240-slice thin CT) is too small for a 400+ slice series,
and a cluster that enforces limits kills the job. The ``ingest`` peak grows linearly with the
decoded pixels of the series it reads (a few float32 copies of the stack: see benchmark 7 in
``benchmarks/RESULTS.md``), so the request is that measured line plus a margin, never below the
rule's former fixed value, and larger on each retry. Planning calls these once per job, so
:func:`source_bytes` only lists folders (names and sizes, no file opened).
"""

from __future__ import annotations

import math
import os

#: a 512x512 slice of 16-bit values: what one compressed DICOM file decodes to at least
#: (a JPEG 2000 CQ500 slice is ~0.14 MB on disk), so compression cannot hide a long series
SLICE_BYTES = 512 * 512 * 2
#: slice-like files of a folder whose size is looked up (the others count as the largest of these)
SIZE_SAMPLE = 3

#: the ``ingest`` rule's former fixed request: the floor (MR, PET and short CT series stay there)
INGEST_FLOOR_MB = 1500
INGEST_RUNTIME_FLOOR_MIN = 20
#: measured ingest peak = INGEST_BASE_MB + INGEST_MB_PER_INPUT_MB * input MB (benchmark 7: 240,
#: 400 and 600 slices of 512x512 peak at 1203, 1870 and 2702 MB: 203 + 8.32 MB per MB, rounded
#: up; 8 MB per MB of 16-bit input is four float32 copies of the stack)
INGEST_BASE_MB = 210.0
INGEST_MB_PER_INPUT_MB = 8.4
#: request = MARGIN * measured line + MARGIN_MB (other scanners' headers, allocator slack)
MARGIN = 1.25
MARGIN_MB = 100.0
#: runtime: ten times the measured minutes per GB of input (8.3 s for 300 MB), at least the floor
INGEST_MIN_PER_INPUT_GB = 5.0

#: ``preprocess_volume``: former fixed request (floor) and its measured line over the voxels of
#: the canonical volume (benchmark 7: 9.8, 16.4 and 24.6 million voxels peak at 498, 688 and 896
#: MB: 237 + 27.0 MB per million voxels, rounded up)
PREPROCESS_FLOOR_MB = 1000
PREPROCESS_RUNTIME_FLOOR_MIN = 20
PREPROCESS_BASE_MB = 240.0
PREPROCESS_MB_PER_MVOXEL = 27.5
PREPROCESS_MIN_PER_GVOXEL = 20.0  # ten times the measured 3 s per 25 million voxels


def _series_bytes(folder: str) -> tuple[int, list[str]]:
    """Bytes of the files directly in ``folder`` and its subfolders. Slice-like files (``.dcm`` or
    no suffix) count as their number times the larger of ``SLICE_BYTES`` and the largest of the
    first ``SIZE_SAMPLE`` sizes: one series' files hold one matrix each, and a stat per slice
    would cost 1 s of planning per 135,000 files (500 CQ500 studies)."""
    total, subfolders, slices, sampled = 0, [], 0, []
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=True):
                    subfolders.append(e.path)
                elif not e.is_file(follow_symlinks=True):
                    continue
                elif os.path.splitext(e.name)[1].lower() in ("", ".dcm"):
                    slices += 1
                    if len(sampled) < SIZE_SAMPLE:
                        sampled.append(e.stat().st_size)
                else:
                    total += e.stat().st_size
    except OSError:
        pass
    return total + slices * max([SLICE_BYTES, *sampled]), subfolders


def source_bytes(path: str | os.PathLike) -> int:
    """What the ``ingest`` job of ``path`` holds decoded, estimated from names and sizes only.

    A file (NIfTI): its size. A folder (a CT study, an MR/PET session or DICOM series): the
    largest total of the files directly inside one folder below it, each slice-like file
    counted as at least a 512x512 16-bit slice. ``ingest`` reads one series, and a study's series are
    folders (CQ500: thin, 5 mm, bone), so the largest folder bounds what is read. A missing path
    (a demo input not generated yet) is 0: Snakemake evaluates the request again when the job
    is ready to run.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return os.path.getsize(path)
    largest, todo = 0, [path]
    while todo:
        total, subfolders = _series_bytes(todo.pop())
        largest = max(largest, total)
        todo.extend(subfolders)
    return largest


def nifti_voxels(path: str | os.PathLike) -> int:
    """Voxels of a NIfTI-1 image (``.nii`` or ``.nii.gz``) from its 348-byte header (no pixel
    read); 0 when the file is missing or not NIfTI-1 (the request then falls back to its floor)."""
    import gzip
    import struct

    path = os.fspath(path)
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
            head = fh.read(348)
    except (OSError, EOFError):
        return 0
    for order in "<>":
        if len(head) == 348 and struct.unpack(order + "i", head[:4])[0] == 348:
            dim = struct.unpack(order + "8h", head[40:56])
            if 1 <= dim[0] <= 7:
                return int(math.prod(max(1, d) for d in dim[1 : dim[0] + 1]))
    return 0


def _attempt(attempt: int) -> int:
    return max(1, int(attempt))


def ingest_peak_mb(input_bytes: int) -> float:
    """The measured line: peak resident memory (MB) of ``ingest`` for ``input_bytes`` of input."""
    return INGEST_BASE_MB + INGEST_MB_PER_INPUT_MB * input_bytes / 2**20


def ingest_mem_mb(input_bytes: int, attempt: int = 1) -> int:
    """``mem_mb`` of an ``ingest`` job: ``MARGIN`` x the measured peak + ``MARGIN_MB``, at least
    ``INGEST_FLOOR_MB``; times ``attempt`` (Snakemake's retry count, 1 first) after a failure."""
    need = max(INGEST_FLOOR_MB, MARGIN * ingest_peak_mb(input_bytes) + MARGIN_MB)
    return int(math.ceil(need * _attempt(attempt)))


def ingest_runtime_min(input_bytes: int, attempt: int = 1) -> int:
    """``runtime`` (minutes) of an ``ingest`` job: ten times the measured time, at least the
    floor (which covers inputs up to 4 GB), times ``attempt``."""
    need = max(INGEST_RUNTIME_FLOOR_MIN, INGEST_MIN_PER_INPUT_GB * input_bytes / 2**30)
    return int(math.ceil(need * _attempt(attempt)))


def preprocess_mem_mb(voxels: int, attempt: int = 1) -> int:
    """``mem_mb`` of a ``preprocess_volume`` job for a canonical volume of ``voxels``: as
    :func:`ingest_mem_mb`, on its own measured line and floor."""
    peak = PREPROCESS_BASE_MB + PREPROCESS_MB_PER_MVOXEL * voxels / 1e6
    need = max(PREPROCESS_FLOOR_MB, MARGIN * peak + MARGIN_MB)
    return int(math.ceil(need * _attempt(attempt)))


def preprocess_runtime_min(voxels: int, attempt: int = 1) -> int:
    """``runtime`` (minutes) of a ``preprocess_volume`` job: as :func:`ingest_runtime_min`."""
    need = max(PREPROCESS_RUNTIME_FLOOR_MIN, PREPROCESS_MIN_PER_GVOXEL * voxels / 1e9)
    return int(math.ceil(need * _attempt(attempt)))
