"""Atomic writers: every output goes to a temporary sibling that is renamed into place only when
complete, so a killed job never leaves a file (or folder) that a later run could mistake for a
complete one. Every writer of the package goes through this module."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

PARTIAL_PREFIX = ".partial-"


def is_partial(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an unfinished writer's temporary (never data to read)."""
    return Path(path).name.startswith(PARTIAL_PREFIX)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(path)
    # keep the suffixes so libraries that dispatch on extension (.nii.gz, .npz, .png) still work
    tmp = path.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _remove_stale_partials(path: Path) -> None:
    """Delete temporary files left next to ``path`` by writers that were killed (their process
    is gone), so killed jobs do not pile up half-written data."""
    for tmp in path.parent.glob(f"{PARTIAL_PREFIX}*-{path.name}"):
        pid = tmp.name[len(PARTIAL_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike):
    """Yield a fresh hidden sibling folder; on success swap it into ``target`` (replacing it).

    For outputs that are folders (a demo study, an exported model): a reader sees the old folder
    or the complete new one, never a mix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial"
    _remove(partial)
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    _remove(old)
    if target.exists() or target.is_symlink():
        os.replace(target, old)
    os.replace(partial, target)
    if old.exists() or old.is_symlink():
        _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) as it is: callers that fix their own JSON layout keep it."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, data) -> None:
    """Indented JSON with sorted keys and a final newline; numpy scalars, arrays and paths allowed."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


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
    """``np.savez_compressed`` at zlib level 1: readable by ``np.load`` as ever, about twice as
    fast to write for slightly larger files."""
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


def write_nifti(path, image) -> None:
    """Write a nibabel image (``.nii`` or ``.nii.gz``) atomically. nibabel's gzip stream holds
    neither the file name nor a time stamp, so the temporary name leaves no trace in the bytes."""
    import nibabel as nib

    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))


def write_figure(path, fig, **savefig_kw) -> None:
    """``fig.savefig`` atomically; the format follows the file name's suffix unless given."""
    savefig_kw.setdefault("format", Path(path).suffix.lstrip(".") or None)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kw)
