"""Raw inputs whose every free-text field, folder name and file name holds a unique marker, and a
search for those markers in every byte a run produced (decompressed) and in its console output.

Markers all start with :data:`STEM` and carry non-ASCII letters written in several encodings
(DICOM Latin-1 and UTF-8 character sets, UTF-8 file names, JSON); the search looks for the stem
and for the non-ASCII tails in UTF-8, Latin-1, UTF-16 and JSON-escaped form, so a marker found
in any of those forms is a leak.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
import zlib
from pathlib import Path

import nibabel as nib

from medcyclegan.testing.hostile_data import cq500_study, head_nifti, write_ct

STEM = "Zqf"
#: the non-ASCII tails of the markers (each also searched on its own)
TAILS = ("Müller", "Łódź", "Ærø")

#: DICOM free-text attributes (value representations LO, SH, ST, LT) set on every CT slice
CT_TEXT_TAGS = (
    "StudyDescription",
    "ProtocolName",
    "ImageComments",
    "Manufacturer",
    "ManufacturerModelName",
    "RequestedProcedureDescription",
    "PerformedProcedureStepDescription",
    "DerivationDescription",
    "AdditionalPatientHistory",
    "PatientComments",
    "BodyPartExamined",
)
#: sidecar keys with free text (BIDS sidecars copy DICOM's)
SIDECAR_TEXT_KEYS = ("SeriesDescription", "ProtocolName", "ImageComments", "Manufacturer", "InstitutionName")


class Markers:
    """Hands out unique markers (``Zqf<n>`` plus a non-ASCII tail) and remembers them."""

    def __init__(self) -> None:
        self.issued: list[str] = []

    def __call__(self, where: str = "", ascii_only: bool = False) -> str:
        n = len(self.issued)
        marker = f"{STEM}{n:03d}{where}" + ("" if ascii_only else TAILS[n % len(TAILS)])
        self.issued.append(marker)
        return marker


def _ct_text(mark: Markers, charset_latin1: bool) -> dict:
    tags = {"SpecificCharacterSet": "ISO_IR 100" if charset_latin1 else "ISO_IR 192"}
    for key in CT_TEXT_TAGS:
        text = mark(key[:4], ascii_only=key == "BodyPartExamined")
        tags[key] = text.upper() if key == "BodyPartExamined" else text
    if charset_latin1:  # Latin-1 cannot hold Ł/ź: keep the tails it can encode
        tags = {k: v.replace("Łódź", "Müller") for k, v in tags.items()}
    return tags


def build_ct(ct_dir: Path, mark: Markers) -> None:
    """Two good CQ500 studies and a patient-named study, with markers in series descriptions,
    kernels, free-text tags (Latin-1 and UTF-8), series folder names and file names; a stray
    marker-named file (skipped, a documented fix) and a study with a truncated slice (rejected)."""
    for n, latin1 in ((1, True), (2, False)):
        series = f"CT PLAIN {mark('ser')}"
        study = cq500_study(
            ct_dir,
            n,
            **{
                series: {
                    "description": f"PLAIN THIN {mark('desc')}",
                    "kernel": mark("kern", ascii_only=True).upper(),
                    "prefix": f"{mark('file', ascii_only=True)}_",
                    "extra_tags": _ct_text(mark, latin1),
                }
            },
        )
        (study / "Unknown Study" / series / f"{mark('stray')}.txt").write_text("notes\n" * 40)
    named = ct_dir / f"DOE^JOHN {mark('study')}" / f"{mark('sub')} CT"
    write_ct(named / mark("series"), description=mark("desc"), extra_tags=_ct_text(mark, False))
    bad = ct_dir / f"ROE^JANE {mark('study')}" / "CT"
    write_ct(bad, description=mark("desc"), prefix=f"{mark('file', ascii_only=True)}_")
    victim = sorted(bad.glob("*.dcm"))[17]
    victim.write_bytes(victim.read_bytes()[:5000])


def build_zipped_ct(ct_dir: Path, mark: Markers, n: int = 3) -> Path:
    """A CQ500 study as its download zip, with markers in the series folder, description and
    member file names, and a marker-named non-DICOM member in the series (skipped: a fix)."""
    import shutil

    from medcyclegan.testing.zipped import zip_folder

    folder = ct_dir.parent / "zip_source" / f"CQ500-CT-{n}"
    series = f"CT THIN {mark('zser')}"
    study = cq500_study(
        folder,
        n,
        **{series: {"description": mark("zdesc"), "prefix": f"{mark('zfile', ascii_only=True)}_"}},
    )
    (study / "Unknown Study" / series / f"{mark('znote', ascii_only=True)}.dcm").write_text("viewer notes\n" * 40)
    archive = zip_folder(folder, ct_dir / f"CQ500-CT-{n}.zip")
    shutil.rmtree(folder.parent)
    return archive


def build_sample_sheet(root: Path, mark: Markers) -> Path:
    """``root/cohort.tsv`` adding a hospital-style subject (a marker for a name) with an MR NIfTI
    and a CT study folder in no known layout, both with markers in their names."""
    from medcyclegan.testing.fake_trees import write_sample_sheet

    subject = f"DOE^JANE {mark('subj')}"
    mr = head_nifti(root / mark("mrdir") / f"{mark('t1', ascii_only=True)}_t1.nii.gz")
    ct = root / f"{mark('ctdir')} head CT"
    write_ct(ct / mark("series"), description=mark("desc"), extra_tags=_ct_text(mark, False))
    rows = [
        {"subject": subject, "modality": "mr", "path": str(mr.relative_to(root)), "session": "1", "split": "train"},
        {"subject": subject, "modality": "ct", "path": str(ct.relative_to(root)), "split": "train"},
    ]
    return write_sample_sheet(root / "cohort.tsv", rows)


def _sidecar(mark: Markers, base: dict) -> str:
    fields = {key: mark(key[:4]) for key in SIDECAR_TEXT_KEYS}
    return json.dumps({**base, **fields}, ensure_ascii=False)


def _mark_nifti_header(path: Path, mark: Markers) -> None:
    img = nib.load(str(path))
    header = img.header.copy()
    header["descrip"] = mark("descrip", ascii_only=True).encode()
    header["aux_file"] = mark("aux", ascii_only=True).encode()
    nib.save(nib.Nifti1Image(img.get_fdata(dtype="float32"), img.affine, header), str(path))


def build_mr(mr_dir: Path, mark: Markers, subjects=("OAS30001", "OAS30002", "OAS30003")) -> None:
    """OASIS-3 MR sessions whose T1w file names (an ``acq-`` entity), sidecars, NIfTI header text
    and an extra marker-named folder carry markers."""
    for subject in subjects:
        anat = mr_dir / f"{subject}_MR_d0100" / "anat2"
        stem = f"sub-{subject}_ses-d0100_acq-{mark('acq', ascii_only=True)}_T1w"
        nii = head_nifti(anat / f"{stem}.nii.gz")
        _mark_nifti_header(nii, mark)
        (anat / f"{stem}.json").write_text(_sidecar(mark, {"Modality": "MR"}), encoding="utf-8")
        (anat.parent / mark("notes")).mkdir()


def build_pet(pet_dir: Path, mark: Markers, subjects=("OAS30004", "OAS30005", "OAS30006")) -> None:
    """OASIS-3 PET sessions (dynamic PIB) with markers in file names and sidecar text."""
    starts = list(range(0, 4200, 600))
    for subject in subjects:
        pet1 = pet_dir / f"{subject}_PIB_d0200" / "pet1"
        stem = f"sub-{subject}_ses-d0200_trc-PIB_rec-{mark('rec', ascii_only=True)}_pet"
        head_nifti(pet1 / f"{stem}.nii.gz", frames=len(starts))
        base = {"Modality": "PT", "TracerName": "PIB", "FrameTimesStart": starts, "FrameDuration": [600] * len(starts)}
        (pet1 / f"{stem}.json").write_text(_sidecar(mark, base), encoding="utf-8")


def decoded_views(path: Path) -> list[bytes]:
    """Every byte of a file as stored and decompressed: gzip (.nii.gz), zip members (.npz), PNG
    text chunks and image data."""
    raw = path.read_bytes()
    views = [raw]
    if raw[:2] == b"\x1f\x8b":
        views.append(gzip.decompress(raw))
    if raw[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            views += [z.read(n) for n in z.namelist()]
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        pos, idat = 8, b""
        while pos < len(raw):
            length = int.from_bytes(raw[pos : pos + 4], "big")
            kind, data = raw[pos + 4 : pos + 8], raw[pos + 8 : pos + 8 + length]
            if kind == b"IDAT":
                idat += data
            elif kind == b"zTXt":
                views.append(zlib.decompress(data.split(b"\0", 1)[1][1:]))
            elif kind == b"iTXt":
                views.append(data)
            pos += 12 + length
        views.append(zlib.decompress(idat))
    return views


def encoded_forms(text: str) -> set[bytes]:
    """``text`` as bytes in every encoding an output could hold it in (case-folded ASCII aside)."""
    forms = {text.encode("utf-8"), text.encode("utf-16-le"), json.dumps(text)[1:-1].encode()}
    try:
        forms.add(text.encode("latin-1"))
    except UnicodeEncodeError:
        pass
    return forms


def needles(markers: list[str]) -> set[bytes]:
    """What a leak looks like: each marker whole, and its head (``Zqf`` and its number, any case,
    which survives truncation), and each non-ASCII tail, in every encoding. Forms shorter than
    5 bytes are left out: image data holds any 3 bytes by chance."""
    found = set()
    for marker in markers:
        head = marker[: len(STEM) + 3]
        for text in (marker, head, head.upper(), head.lower()):
            found |= encoded_forms(text)
    for tail in TAILS:
        found |= encoded_forms(tail)
    return {f for f in found if len(f) >= 5}


def leaks(folders: list[Path], texts: dict[str, str], markers: list[str]) -> list[str]:
    """``file: needle`` for every form of ``markers`` found in any file under ``folders``
    (decompressed), in a file's name, or in ``texts`` (name -> console output)."""
    forms = needles(markers)
    found = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            for view in decoded_views(path):
                found += [f"{path}: {f!r}" for f in forms if f in view]
            found += [f"{path} (name)" for f in (STEM, STEM.upper(), *TAILS) if f in str(path.relative_to(folder))]
    for name, text in texts.items():
        data = text.encode("utf-8", "surrogateescape")
        found += [f"{name}: {f!r}" for f in forms if f in data]
    return sorted(set(found))
