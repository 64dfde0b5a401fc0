"""Corruption property test: real DICOM and NIfTI inputs are truncated, have bytes flipped or
overwritten, tags deleted or garbled and NIfTI header fields corrupted, and the ``ingest`` job
runs on each. Every case ends as a processed volume or as a rejection with a one-line reason:
never a traceback, never a half-written output, and never a silently wrong volume where the
damage leaves nothing a correct reader could use (a deleted or unreadable header value, a cut
file: the volume is then the undamaged one, or rejected).

CI runs a fixed (derandomized, database-less) set of examples; for a longer search set
``MEDCYCLEGAN_HYPOTHESIS_EXAMPLES`` (examples per property, e.g. 500) and, for new examples,
``MEDCYCLEGAN_HYPOTHESIS_SEED``.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydicom.uid import generate_uid

from medcyclegan.io.placeholders import read_rejection
from medcyclegan.testing.hostile_data import (
    REJECT,
    cq500_study,
    ct_small,
    ingest_volume,
    mr_session,
    nifti2,
    pet_session,
    write_bare_dataset,
)

EXAMPLES = int(os.environ.get("MEDCYCLEGAN_HYPOTHESIS_EXAMPLES", "0")) or None
SEED = os.environ.get("MEDCYCLEGAN_HYPOTHESIS_SEED")


def bounded(ci_examples: int):
    """CI: ``ci_examples`` derandomized examples; locally ``MEDCYCLEGAN_HYPOTHESIS_EXAMPLES``
    (random, or from ``MEDCYCLEGAN_HYPOTHESIS_SEED``). No example database either way, so a CI
    run never depends on an earlier one."""
    cfg = settings(
        max_examples=EXAMPLES or ci_examples,
        deadline=None,
        database=None,
        derandomize=EXAMPLES is None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )
    return (lambda f: seed(int(SEED))(cfg(f))) if SEED else cfg


# --------------------------------------------------------------------------------------------
# the undamaged inputs (built once) and their volumes
# --------------------------------------------------------------------------------------------

VOLUMES = {
    "ct": ("ct", "CQ500-CT-1"),
    "ct_small": ("ct", "CQ500-CT-2"),
    "ct_bare": ("ct", "CQ500-CT-3"),
    "mr": ("mr", "OAS30001_MR_d0100"),
    "nifti2": ("mr", "OAS30002_MR_d0100"),
    "mr_int16": ("mr", "OAS30004_MR_d0100"),
    "pet": ("pet", "OAS30003_PIB_d0200"),
}
DICOM_KINDS = ["ct", "ct_small", "ct_bare"]
NIFTI_KINDS = ["mr", "nifti2", "mr_int16", "pet"]
N_SLICES = 30  # CT_RULES min_slices: a series one file short is no candidate


def _ct_small_series(folder: Path) -> None:
    """30 slices of pydicom's real CT_small.dcm (signed, explicit VR little endian), 3 mm apart."""
    base, uid = ct_small(), generate_uid()
    del base.ContrastBolusAgent  # a contrast series is no candidate
    folder.mkdir(parents=True)
    for k in range(N_SLICES):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [-42.0, -42.0, 3.0 * k]
        ds.SliceThickness, ds.InstanceNumber = 3.0, k + 1
        ds.save_as(folder / f"CT{k:06d}.dcm", enforce_file_format=True)


def _build(kind: str, root: Path) -> Path:
    small_ct = {"CT PLAIN": {"n": N_SLICES, "size": 32}}
    if kind == "ct":
        return cq500_study(root, 1, **small_ct)
    if kind == "ct_small":
        study = root / "CQ500CT2 CQ500CT2"
        _ct_small_series(study / "Unknown Study/CT SMALL")
        return study
    if kind == "ct_bare":  # old archive export: no preamble, no file meta, implicit VR
        study = cq500_study(root, 3, **small_ct)
        for f in (study / "Unknown Study/CT PLAIN").iterdir():
            write_bare_dataset(f, pydicom.dcmread(f))
        return study
    if kind == "mr":
        return mr_session(root, "OAS30001", shape=(24, 24, 24), spacing=3.0)[0]
    if kind == "mr_int16":  # integer voxels (no NaN check reads them through nibabel)
        return mr_session(root, "OAS30004", shape=(24, 24, 24), spacing=3.0, dtype=np.int16)[0]
    if kind == "nifti2":  # NIfTI-2, uncompressed .nii
        session, nii = mr_session(root, "OAS30002", shape=(24, 24, 24), spacing=3.0)
        src = nib.load(nii)
        nifti2(nii.with_name(nii.name[: -len(".gz")]), np.asarray(src.dataobj), src.affine)
        nii.unlink()
        return session
    return pet_session(root, "OAS30003", starts=[1800, 2400, 3000])  # PIB window 30-60 min


def _ingest(kind: str, source: Path, out: Path) -> tuple[Path, Path]:
    modality, volume = VOLUMES[kind]
    return ingest_volume(out, modality, source, volume, reject_cfg=REJECT)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """kind -> (undamaged source, its ingested volume array, affine)."""
    made = {}
    for kind in VOLUMES:
        root = tmp_path_factory.mktemp(kind)
        source = _build(kind, root / "raw")
        vol, info = _ingest(kind, source, root / "results")
        assert json.loads(info.read_text())["status"] == "ok", info.read_text()
        img = nib.load(vol)
        made[kind] = (source, np.asanyarray(img.dataobj).copy(), img.affine.copy())
    return made


# --------------------------------------------------------------------------------------------
# DICOM damage (bytes of the file, so nothing is re-encoded by pydicom)
# --------------------------------------------------------------------------------------------

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR", b"SV", b"UV"}
_PIXEL_TAG = struct.pack("<HH", 0x7FE0, 0x0010)


def _has_meta(data: bytes) -> bool:
    return data[128:132] == b"DICM"


def _dataset_start(data: bytes) -> int:
    if not _has_meta(data):
        return 0
    (meta_len,) = struct.unpack("<I", data[140:144])  # (0002,0000) UL value
    return 144 + meta_len


def _pixel_start(data: bytes) -> int:
    pos = data.rfind(_PIXEL_TAG)
    if pos < 0:
        return len(data)
    return pos + (12 if data[pos + 4 : pos + 6] in _LONG_VRS else 8)


def _find_element(data: bytes, tag: int, lo: int, hi: int, explicit: bool) -> tuple[int, int, int] | None:
    """``(start, header length, value length)`` of the first top-level-looking element ``tag``."""
    key = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    pos = data.find(key, lo, hi)
    while 0 <= pos <= len(data) - 12:
        vr = data[pos + 4 : pos + 6]
        if explicit and vr.isalpha() and vr.isupper():
            if vr in _LONG_VRS:
                return pos, 12, struct.unpack("<I", data[pos + 8 : pos + 12])[0]
            return pos, 8, struct.unpack("<H", data[pos + 6 : pos + 8])[0]
        if not explicit:
            length = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
            if pos + 8 + length <= len(data):
                return pos, 8, length
        pos = data.find(key, pos + 1, hi)
    return None


def _edit_element(data: bytes, keyword: str, value: bytes | None, *, meta: bool = False) -> bytes:
    """``data`` with the element ``keyword`` removed (``value`` None) or its value replaced (the
    length fields kept consistent); unchanged when the file has no such element."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if meta and not _has_meta(data):
        return data
    lo, hi = (132, _dataset_start(data)) if meta else (_dataset_start(data), len(data))
    explicit = meta or _has_meta(data) and _transfer_syntax(data) != pydicom.uid.ImplicitVRLittleEndian
    found = _find_element(data, tag, lo, hi, explicit)
    if found is None:
        return data
    pos, head, length = found
    if value is None:
        new = b""
    else:
        value = value + (b"\0" if len(value) % 2 else b"")
        size = struct.pack("<I", len(value)) if head == 12 or not explicit else struct.pack("<H", len(value))
        new = data[pos : pos + head - len(size)] + size + value
    data = data[:pos] + new + data[pos + head + length :]
    if meta:  # keep (0002,0000) File Meta Information Group Length right
        delta = len(new) - head - length
        (meta_len,) = struct.unpack("<I", data[140:144])
        data = data[:140] + struct.pack("<I", meta_len + delta) + data[144:]
    return data


def _set_vr(data: bytes, keyword: str, vr: bytes) -> bytes:
    """``data`` with the two VR bytes of element ``keyword`` replaced (explicit VR files only)."""
    if not _has_meta(data) or _transfer_syntax(data) == pydicom.uid.ImplicitVRLittleEndian:
        return data
    found = _find_element(data, pydicom.datadict.tag_for_keyword(keyword), _dataset_start(data), len(data), True)
    if found is None:
        return data
    pos = found[0]
    return data[: pos + 4] + vr + data[pos + 6 :]


def _transfer_syntax(data: bytes) -> str:
    found = _find_element(data, 0x00020010, 132, _dataset_start(data), True)
    if found is None:
        return ""
    pos, head, length = found
    return data[pos + head : pos + head + length].rstrip(b"\0 ").decode("ascii", "replace")


DELETED = [
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "RescaleIntercept",
    "RescaleSlope",
    "SliceThickness",
    "SeriesInstanceUID",
    "SOPClassUID",
    "Modality",
    "PixelData",
]
# values no correct reader can use (so the volume must be the undamaged one, or rejected)
_BAD_DS3 = ["nan\\0\\0", "abc\\0\\0", "0\\0", "", "1e999\\0\\0", "inf\\-inf\\0", "1\\2\\3\\4"]
GARBLED = {
    "ImagePositionPatient": _BAD_DS3,
    "ImageOrientationPatient": ["1\\0\\0\\0\\1", "nan\\0\\0\\0\\1\\0", "0\\0\\0\\0\\0\\0", "1\\0\\0\\1\\0\\0", "abc"],
    "PixelSpacing": ["0\\0", "-1\\-1", "nan\\nan", "abc", "1", "inf\\inf", ""],
    "SliceThickness": ["abc", "nan", "-3", "0", "", "inf"],
    "RescaleIntercept": ["abc", "nan", "", "inf", "1\\2"],
    "RescaleSlope": ["abc", "nan", "0", "", "inf", "-inf"],
    "Rows": [0, 1, 65535],
    "Columns": [0, 7, 65535],
    "BitsAllocated": [0, 1, 8, 12, 32, 64],
    "BitsStored": [0, 17, 64],
    "HighBit": [0, 16, 200],
    "PixelRepresentation": [2, 255],
    "SamplesPerPixel": [0, 3],
    "PhotometricInterpretation": ["RGB", "PALETTE COLOR", "YBR_FULL", ""],
    "NumberOfFrames": ["2", "0", "-1", "abc"],
    "Modality": ["MR", ""],
    "SeriesInstanceUID": [""],
}
META_TS = [None, "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.90", "9.9"]


def _encode(keyword: str, value) -> bytes:
    if isinstance(value, int):
        return struct.pack("<H", value)
    return value.encode("ascii")


dicom_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("truncate_at"), st.integers(0, 1500)),
    st.tuples(
        st.just("flip"),
        st.sampled_from(["header", "pixels"]),
        st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=6),
    ),
    st.tuples(
        st.just("overwrite"), st.sampled_from(["header", "pixels"]), st.floats(0, 1), st.binary(min_size=1, max_size=24)
    ),
    st.tuples(st.just("overwrite_at"), st.integers(0, 1500), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("vr"), st.sampled_from(sorted(GARBLED)), st.binary(min_size=2, max_size=2)),
    st.tuples(st.just("delete"), st.sampled_from(DELETED)),
    st.sampled_from(sorted(GARBLED)).flatmap(
        lambda k: st.tuples(st.just("garble"), st.just(k), st.sampled_from(GARBLED[k]))
    ),
    st.tuples(st.just("meta_ts"), st.sampled_from(META_TS)),
)
which_file = st.one_of(st.integers(0, N_SLICES - 1), st.just("all"))


def damage_dicom(data: bytes, damage: tuple) -> tuple[bytes, bool]:
    """The damaged file and whether nothing usable is left of what was damaged (then the volume
    must be the undamaged one, or rejected)."""
    kind = damage[0]
    if kind == "truncate":
        return data[: int(damage[1] * len(data))], True
    if kind == "truncate_at":
        return data[: min(damage[1], len(data) - 1)], True
    if kind in ("flip", "overwrite"):
        lo, hi = (0, _pixel_start(data)) if damage[1] == "header" else (_pixel_start(data), len(data))
        buf = bytearray(data)
        if hi <= lo:  # nothing left of that region (cut before)
            return data, False
        if kind == "flip":
            for where, mask in damage[2]:
                buf[lo + int(where * (hi - lo - 1))] ^= mask
        else:
            at = lo + int(damage[2] * max(hi - lo - len(damage[3]), 0))
            buf[at : at + len(damage[3])] = damage[3][: max(len(buf) - at, 0)]
        return bytes(buf), False
    if kind == "overwrite_at":
        at = min(damage[1], len(data))
        return data[:at] + damage[2][: len(data) - at] + data[at + len(damage[2]) :], False
    if kind == "vr":  # the value representation of an element (explicit VR files)
        return _set_vr(data, damage[1], damage[2]), False
    if kind == "delete":
        return _edit_element(data, damage[1], None), True
    if kind == "garble":
        return _edit_element(data, damage[1], _encode(damage[1], damage[2])), damage[1] != "SeriesInstanceUID"
    ts = damage[1]
    return _edit_element(data, "TransferSyntaxUID", None if ts is None else ts.encode(), meta=True), True


# --------------------------------------------------------------------------------------------
# NIfTI damage
# --------------------------------------------------------------------------------------------

# field -> (number of elements, values); True in the value table: nothing usable is left
_INT_FIELDS = {
    "dim": (8, [-1, 0, 1, 2, 3, 4, 5, 7, 8, 23, 25, 32767]),
    "datatype": (1, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 99, -1]),
    "bitpix": (1, [0, 1, 8, 13, 64]),
    "qform_code": (1, [0, 1, 2, 3, 4, 5, -1, 99]),
    "sform_code": (1, [0, 1, 2, 3, 4, 5, -1, 99]),
    "vox_offset": (1, [0, 1, 100, 347, 348, 352, 356, 540, 544, 4096, 10**7, -4]),
    "sizeof_hdr": (1, [0, 348, 540, 123]),
}
_FLOAT_FIELDS = {
    "pixdim": (8, [0.0, -1.0, -3.0, float("nan"), float("inf"), 1e-12, 1e12, 2.0]),
    "scl_slope": (1, [0.0, float("nan"), float("inf"), -1.0, 1e30]),
    "scl_inter": (1, [float("nan"), float("inf"), -1e30, 100.0]),
    "srow_x": (4, [0.0, float("nan"), float("inf"), 1e30, -3.0]),
    "srow_z": (4, [0.0, float("nan"), 1e30, 5.0]),
    "quatern_b": (1, [float("nan"), 2.0, -2.0, 0.5]),
    "qoffset_x": (1, [float("nan"), float("inf"), 1e30]),
}
_FIELDS = {**_INT_FIELDS, **_FLOAT_FIELDS}


def _field_strategy(name: str):
    n, values = _FIELDS[name]
    return st.tuples(st.just("field"), st.just(name), st.integers(0, n - 1), st.sampled_from(values))


nifti_damage = st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True)),
    st.tuples(
        st.just("flip_stored"),
        st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=6),
    ),
    st.sampled_from(sorted(_FIELDS)).flatmap(_field_strategy),
    st.tuples(
        st.just("flip_header"), st.lists(st.tuples(st.integers(0, 347), st.integers(1, 255)), min_size=1, max_size=4)
    ),
    st.tuples(
        st.just("flip_voxels"),
        st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=6),
    ),
    st.tuples(st.just("cut_voxels"), st.floats(0, 1, exclude_max=True)),
)


def _usable_left(name: str, value) -> bool:
    """Whether a header field set to ``value`` can describe a valid (other) image."""
    if name in ("scl_inter", "srow_x", "srow_z", "quatern_b", "qoffset_x"):
        return bool(np.isfinite(value))
    if name == "scl_slope":  # 0: no scaling
        return bool(np.isfinite(value)) and value != 0.0
    return name == "datatype"  # another voxel type of the same size reads other values


def damage_nifti(stored: bytes, gz: bool, damage: tuple) -> tuple[bytes, bool]:
    """The damaged file (as stored) and whether nothing usable is left of what was damaged."""
    kind = damage[0]
    if kind == "cut":
        return stored[: int(damage[1] * len(stored))], True
    if kind == "flip_stored":
        buf = bytearray(stored)
        for where, mask in damage[1] if buf else []:
            buf[int(where * len(buf))] ^= mask
        return bytes(buf), gz  # a .gz stream has its CRC; the bytes of a .nii just change
    try:
        data = bytearray(gzip.decompress(stored) if gz else stored)
    except (OSError, EOFError, zlib.error):  # already damaged beyond decompression
        return stored, True
    header = nib.Nifti2Header if data[:4] == struct.pack("<i", 540) else nib.Nifti1Header
    n = header.template_dtype.itemsize
    if len(data) <= n:  # already cut inside the header
        return stored, True
    usable = False
    if kind == "field":
        _, name, index, value = damage
        hdr = np.frombuffer(bytes(data[:n]), dtype=header.template_dtype).copy()
        field = hdr[name]
        if field.dtype.kind in "iu":
            info = np.iinfo(field.dtype.base if field.dtype.subdtype else field.dtype)
            value = int(np.clip(value, info.min, info.max))
        if field.ndim > 1:
            field[0, index] = value
        else:
            field[0] = value
        hdr[name] = field
        data[:n] = hdr.tobytes()
        usable = _usable_left(name, value)
    elif kind == "flip_header":
        for where, mask in damage[1]:
            data[where] ^= mask  # inside the header: the data is longer than 348 bytes
        usable = True
    elif kind == "flip_voxels":
        start = np.frombuffer(bytes(data[:n]), dtype=header.template_dtype)["vox_offset"][0]
        start = int(np.clip(np.nan_to_num(start), n, len(data) - 1))  # the offset may be damaged already
        for where, mask in damage[1]:
            data[start + int(where * (len(data) - start - 1))] ^= mask
        usable = True
    else:  # cut_voxels: a complete (valid) stream of a cut file
        data = data[: int(damage[1] * len(data))]
    out = bytes(data)
    return (gzip.compress(out, compresslevel=1, mtime=0) if gz else out), not usable


# --------------------------------------------------------------------------------------------
# one case and its checks
# --------------------------------------------------------------------------------------------


def _image_file(kind: str, source: Path) -> Path:
    return next(p for p in source.rglob("*") if p.name.endswith((".nii", ".nii.gz")))


def run_case(pristine, kind: str, damages: list, target) -> dict:
    """Copy the undamaged input, damage it, ingest it and check the outcome; returns the info."""
    src, ref_data, ref_affine = pristine[kind]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "raw" / src.name
        shutil.copytree(src, source)
        nothing_left = True
        if kind in DICOM_KINDS:
            files = sorted(p for p in source.rglob("*.dcm"))
            for f in files if target == "all" else [files[target % len(files)]]:
                data = f.read_bytes()
                for damage in damages:
                    data, left = damage_dicom(data, damage)
                    nothing_left &= left
                f.write_bytes(data)
        else:
            f = _image_file(kind, source)
            data, gz = f.read_bytes(), f.name.endswith(".gz")
            for damage in damages:
                data, left = damage_nifti(data, gz, damage)
                nothing_left &= left
            f.write_bytes(data)
        vol, info_path = _ingest(kind, source, Path(tmp) / "results")  # must not raise
        return check_outcome(Path(tmp) / "results", vol, info_path, (ref_data, ref_affine) if nothing_left else None)


def check_outcome(results: Path, vol: Path, info_path: Path, undamaged) -> dict:
    """No temporary left behind; status ok (a finite, readable volume; the undamaged one where
    ``undamaged`` is given) or rejected (a one-line reason, readable back from the placeholder)."""
    leftovers = [p.name for p in results.rglob("*") if p.name.startswith(".partial-")]
    assert not leftovers, leftovers
    info = json.loads(info_path.read_text())
    assert info["status"] in ("ok", "rejected"), info
    if info["status"] == "rejected":
        row = info["rejection"]
        for key in ("file", "reason", "action"):
            assert str(row[key]).strip(), row
            assert "\n" not in row[key], row
        assert "Traceback" not in row["reason"], row
        assert read_rejection(vol) == row
        return info
    assert read_rejection(vol) is None
    img = nib.load(vol)
    data = np.asanyarray(img.dataobj)
    assert data.ndim == 3 and min(data.shape) > 1 and np.isfinite(data).all(), (data.shape, info)
    if undamaged is not None:  # nothing usable was left of the damaged part: it cannot show
        ref_data, ref_affine = undamaged
        same = data.shape == ref_data.shape and np.allclose(img.affine, ref_affine, atol=1e-3)
        assert same and np.allclose(data, ref_data, atol=1e-3), f"silently different volume: {info['ingest']}"
    return info


# --------------------------------------------------------------------------------------------
# the properties
# --------------------------------------------------------------------------------------------


@bounded(ci_examples=150)
@given(
    kind=st.sampled_from(DICOM_KINDS),
    damages=st.lists(dicom_damage, min_size=1, max_size=2),
    target=which_file,
)
def test_damaged_dicom_is_processed_or_rejected(pristine, kind, damages, target):
    run_case(pristine, kind, damages, target)


@bounded(ci_examples=300)
@given(kind=st.sampled_from(NIFTI_KINDS), damages=st.lists(nifti_damage, min_size=1, max_size=2))
def test_damaged_nifti_is_processed_or_rejected(pristine, kind, damages):
    run_case(pristine, kind, damages, None)


# --------------------------------------------------------------------------------------------
# regressions: cases the properties found (each crashed the job or gave a silently wrong volume)
# --------------------------------------------------------------------------------------------

GARBLE_IPP = ("garble", "ImagePositionPatient", "abc\\0\\0")


@pytest.mark.parametrize(
    "kind, damage, target, words",
    [
        # an end slice cut to nothing was skipped as a stray file: a silently shorter volume
        ("ct", ("truncate", 0.0), N_SLICES - 1, "empty or damaged at its start"),
        ("ct", ("truncate_at", 100), 0, "empty or damaged at its start"),
        ("ct_small", ("overwrite_at", 128, b"DIAM"), 0, "broken DICM marker"),  # a TIFF preamble
        ("ct_bare", ("truncate_at", 5), 0, "empty or damaged at its start"),
        ("ct_small", ("truncate_at", 1), 0, "empty or damaged at its start"),  # inside a TIFF preamble
        # ValueError: UID is not a transfer syntax
        ("ct_small", ("meta_ts", "9.9"), 3, "not a transfer syntax"),
        # NotImplementedError: Unknown Value Representation, raised by pydicom on first access
        ("ct", ("vr", "SliceThickness", b"D\xcd"), 0, "the DICOM header is damaged"),
        # TypeError/ValueError: int() of a Rows element read with another VR
        ("ct", ("vr", "Rows", b"UN"), "all", "truncated"),
        # ValueError: could not convert string to float
        ("ct", GARBLE_IPP, 7, "ImagePositionPatient is not 3 finite numbers"),
        ("ct_bare", ("garble", "RescaleIntercept", "abc"), 3, "RescaleIntercept is not 1 finite number"),
        # TypeError: float() of a MultiValue
        ("ct_bare", ("garble", "RescaleIntercept", "1\\2"), 3, "RescaleIntercept is not 1 finite number"),
        # inf position: NaN origin and a crash when resampling
        ("ct", ("garble", "ImagePositionPatient", "1e999\\0\\0"), "all", "not 3 finite numbers"),
        # RuntimeError of SimpleITK (zero spacing); inf spacing: a 1-voxel 'volume' with NaN origin
        ("ct", ("garble", "PixelSpacing", "0\\0"), "all", "PixelSpacing [0.0, 0.0] is not positive"),
        ("ct", ("garble", "PixelSpacing", "inf\\inf"), "all", "PixelSpacing is not 2 finite numbers"),
        # silently wrong: one blank slice (slope 0), one slice 1024 HU off (intercept deleted)
        ("ct_bare", ("garble", "RescaleSlope", "0"), 2, "RescaleSlope is 0"),
        ("ct_small", ("delete", "RescaleIntercept"), 19, "rescale RescaleSlope only (intercept 0), but 29 other"),
        ("ct", ("delete", "RescaleSlope"), 19, "rescale RescaleIntercept only (slope 1)"),
        # silently wrong NIfTI: a header that announces less than the file holds
        ("mr", ("field", "dim", 1, 23), None, "more than the 53344 its header announces"),
        ("nifti2", ("field", "vox_offset", 0, 0), None, "more than the 55296 its header announces"),
        ("pet", ("field", "dim", 4, 1), None, "more than the 720352 its header announces"),  # one frame of 3
        ("pet", ("field", "dim", 0, 3), None, "the header is damaged"),
    ],
)
def test_found_case_is_rejected_with_its_reason(pristine, kind, damage, target, words):
    info = run_case(pristine, kind, [damage], target)
    assert info["status"] == "rejected" and words in info["rejection"]["reason"], info


def test_unreadable_first_headers_say_re_export_not_relax_the_rules(pristine):
    info = run_case(pristine, "ct", [("truncate_at", 100)], "all")
    row = info["rejection"]
    assert "no readable DICOM header in its first 5 files" in row["reason"], row
    assert row["action"].startswith("Re-export or re-download the unreadable series"), row
    assert row["reason"].count("InvalidDicomError") == 1, row  # one reason for the five files


def test_integer_nifti_cut_in_its_last_bytes_is_rejected(tmp_path):
    """The size check counted from the loaded header's vox_offset, which nibabel sets to 0: a file
    cut within its last 352 bytes passed, and ITK zero-filled the missing voxels (float files were
    caught when nibabel read them for NaNs; integer ones were not)."""
    session, nii = mr_session(tmp_path / "raw", "OAS30005", shape=(24, 24, 24), spacing=3.0, dtype=np.int16)
    nii.write_bytes(damage_nifti(nii.read_bytes(), True, ("cut_voxels", 0.995))[0])  # 139 bytes short
    vol, info_path = _ingest("mr", session, tmp_path / "results")
    info = check_outcome(tmp_path / "results", vol, info_path, None)
    assert info["status"] == "rejected" and "the file is truncated" in info["rejection"]["reason"], info


def test_two_dimensional_pet_is_rejected_not_a_crash(tmp_path):
    """A genuine 2D PET file (ITK reads a 2D header): ValueError in check_itk_agrees before."""
    session = pet_session(tmp_path / "raw", "OAS30004")
    nii = next(session.rglob("*_pet.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((60, 60), np.float32), np.diag([-3.0, -3.0, 3.0, 1.0])), nii)
    vol, info_path = _ingest("pet", session, tmp_path / "results")
    info = check_outcome(tmp_path / "results", vol, info_path, None)
    assert info["status"] == "rejected" and "2D" in info["rejection"]["reason"], info


def test_sidecar_with_flipped_bytes_is_rejected(pristine):
    """A sidecar that is no longer UTF-8 is refused naming it (it used to crash the job)."""
    src = pristine["mr"][0]
    with tempfile.TemporaryDirectory() as tmp:
        session = Path(tmp) / src.name
        shutil.copytree(src, session)
        sidecar = next(session.rglob("*.json"))
        sidecar.write_bytes(sidecar.read_bytes().replace(b"MR", b"M\xff"))
        vol, info_path = _ingest("mr", session, Path(tmp) / "results")
        assert check_outcome(Path(tmp) / "results", vol, info_path, None)["status"] == "rejected"
