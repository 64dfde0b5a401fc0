"""CQ500 studies zipped as they are downloaded (``CQ500-CT-{n}.zip`` holding
``CQ500CT{n} CQ500CT{n}/Unknown Study/CT .../CT000000.dcm``), and damaged copies of them."""

from __future__ import annotations

import zipfile
from pathlib import Path

from medcyclegan.testing.hostile_data import cq500_study


def zip_folder(folder: Path, archive: Path, *, compression: int = zipfile.ZIP_DEFLATED, dir_entries=False) -> Path:
    """``archive`` holding every file under ``folder`` by its path relative to ``folder`` (sorted;
    ``dir_entries``: explicit folder entries too, as some zip tools write them)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() or (dir_entries and path.is_dir()):
                zf.write(path, path.relative_to(folder).as_posix())
    return archive


def write_cq500_zip(ct_root: Path, n: int, *, compression: int = zipfile.ZIP_DEFLATED, **series) -> tuple[Path, Path]:
    """``(zip, unzipped study folder)``: the study of :func:`~medcyclegan.testing.hostile_data.cq500_study`
    (``series``: name -> ``write_ct`` keywords) under ``ct_root/unzipped/CQ500-CT-{n}`` and its
    download-layout zip ``ct_root/CQ500-CT-{n}.zip``."""
    folder = ct_root / "unzipped" / f"CQ500-CT-{n}"
    cq500_study(folder, n, **series)
    return zip_folder(folder, ct_root / f"CQ500-CT-{n}.zip", compression=compression), folder


def member_data_offset(archive: Path, member: str) -> int:
    """Byte offset in ``archive`` where ``member``'s (stored or compressed) data begins."""
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
    with open(archive, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(fh.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + name_len + extra_len


def flip_byte(archive: Path, offset: int) -> None:
    """Damage one byte of ``archive`` in place (a bad CRC, or a broken deflate stream)."""
    with open(archive, "r+b") as fh:
        fh.seek(offset)
        value = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([value ^ 0xFF]))
