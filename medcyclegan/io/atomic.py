"""Small I/O helpers. Every writer is atomic (temp file, then rename), so a killed job never
leaves a file that a later run could mistake for a complete one."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(path)
    # keep the suffixes so libraries that dispatch on extension (.nii.gz, .npz, .png) still work
    tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _remove_stale_partials(path: Path) -> None:
    """Delete temporary files left next to ``path`` by writers that were killed (their process
    is gone), so killed jobs do not pile up half-written data."""
    for tmp in path.parent.glob(f".partial-*-{path.name}"):
        pid = tmp.name[len(".partial-") :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


def write_json(path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def write_npz(path, **arrays) -> None:
    """``np.savez_compressed`` at zlib level 1: readable by ``np.load`` as ever, twice as fast to
    write (a 128x256x256 float32 slice stack: 0.32 s vs 0.66 s) for 1.5 % more bytes."""
    import zipfile

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, value in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def write_csv(path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_image(path, image) -> None:
    """Write a SimpleITK image (NIfTI by extension) atomically."""
    import SimpleITK as sitk

    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
