"""Small raw trees in the real CQ500 and OASIS-3 layouts, with ball-shaped 'heads'.

Used by workflow tests that point ``data.*_dir`` at them. Geometry is real (LPS DICOM, non-RAS
NIfTI affines); anatomy is a sphere of soft tissue inside a shell of bone, plus a headrest.
:func:`write_dicom_slice` writes any one CT slice; ``write_test_*`` write the tiny slices, series
and study of the CT ingest unit tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

AXIAL_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def ball_head_hu(lps, radius=70.0):
    d = np.linalg.norm(lps / np.array([0.85, 1.0, 0.9]), axis=-1)
    hu = np.full(d.shape, -1000.0)
    hu[d < radius] = 40.0
    hu[d < radius - 4] = 1100.0
    hu[d < radius - 10] = 30.0
    rest = (lps[..., 1] > 66) & (lps[..., 1] < 74) & (np.abs(lps[..., 0]) < 50)  # headrest, posterior
    hu[rest] = 150.0
    return hu


def new_ct_slice(series_uid: str, description: str) -> FileDataset:
    """An empty CT image file dataset (explicit VR little endian) of series ``series_uid``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesDescription = "CT", series_uid, description
    return ds


def write_dicom_slice(
    path: Path,
    stored: np.ndarray,
    *,
    series_uid: str,
    description: str = "CT PLAIN",
    ipp=(0.0, 0.0, 0.0),
    iop=AXIAL_IOP,
    pixel_spacing=(1.0, 1.0),
    thickness: float = 1.0,
    rescale: tuple[float, float] | None = (1.0, -1024.0),
    instance: int = 1,
    pixel_representation: int | None = None,
    compress: str | None = None,
    **tags,
) -> None:
    """One CT slice file whose stored pixel values are ``stored`` (rows x cols, 16 bits; signed
    when its dtype is). ``rescale``: (RescaleSlope, RescaleIntercept), None: no rescale tags.
    ``pixel_representation`` overrides the one the dtype implies (to mislabel the data);
    ``compress``: a transfer syntax UID; ``tags``: further DICOM keywords and values."""
    stored = np.asarray(stored)
    signed = stored.dtype.kind == "i"
    ds = new_ct_slice(series_uid, description)
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.ImagePositionPatient = [float(v) for v in ipp]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = thickness
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = (1 if signed else 0) if pixel_representation is None else pixel_representation
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.InstanceNumber = instance
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    arr = stored.astype(np.int16 if signed else np.uint16)
    ds.PixelData = arr.tobytes()
    if compress is not None:
        ds.compress(compress, arr)
    ds.save_as(path, enforce_file_format=True)


#: identifying values written into every header by :func:`write_test_slice` (must never reach
#: an ``info``)
TEST_PHI = {"PatientName": "Doe^John", "PatientID": "SECRET-ID-123", "StudyDate": "19990101"}
TEST_SERIES_UID = "1.2.3.4"


def write_test_slice(
    path: Path,
    stored: np.ndarray,
    *,
    slope=1.0,
    intercept=-1024.0,
    description="PLAIN THIN",
    kernel="STANDARD",
    series_uid=TEST_SERIES_UID,
    contrast_agent=None,
    pixel_spacing=(0.5, 0.6),
    thickness=0.625,
    **slice_kw,
) -> None:
    """A small CT slice for unit tests: the headers of a CQ500 slice (kernel, ImageType, the
    :data:`TEST_PHI` markers); ``slice_kw``: :func:`write_dicom_slice` options (``ipp``, ``iop``,
    ``instance``, ``compress``)."""
    tags = {"StudyInstanceUID": "1.2.3", **TEST_PHI, "ConvolutionKernel": kernel}
    tags["ImageType"] = ["ORIGINAL", "PRIMARY", "AXIAL"]
    if contrast_agent is not None:
        tags["ContrastBolusAgent"] = contrast_agent
    write_dicom_slice(
        path,
        stored,
        series_uid=series_uid,
        description=description,
        pixel_spacing=pixel_spacing,
        thickness=thickness,
        rescale=(slope, intercept),
        **slice_kw,
        **tags,
    )


def write_test_series(
    folder: Path, n: int, *, shape=(8, 10), dz=0.625, z0=-40.0, names=None, instances=None, values=None, **kw
) -> list[np.ndarray]:
    """``n`` axial :func:`write_test_slice` slices; slice k (ascending z) holds stored values
    ``values[k]`` (default: all ``1024 + k``). Returns the stored arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"CT{k:06d}.dcm" for k in range(n)]
    instances = instances or list(range(1, n + 1))
    out = []
    for k in range(n):
        v = values[k] if values is not None else np.full(shape, 1024 + k, dtype=np.int16)
        write_test_slice(folder / names[k], v, ipp=(-10.0, -20.0, z0 + k * dz), instance=instances[k], **kw)
        out.append(v)
    return out


def write_test_study(root: Path) -> Path:
    """A tiny CQ500-like study ``root/CQ500-CT-7`` with the nested 'CQ500CT7 CQ500CT7' folder
    (spaces): thin plain (twice), bone, 5 mm, post-contrast and an extension-less 3 mm series,
    and a stray text file."""
    study = root / "CQ500-CT-7"
    base = study / "CQ500CT7 CQ500CT7" / "Unknown Study"
    write_test_series(base / "CT PLAIN THIN", 12, description="PLAIN THIN")
    write_test_series(base / "CT PLAIN THIN-2", 12, description="PLAIN THIN")
    write_test_series(base / "CT BONE", 12, description="BONE", kernel="BONE")
    write_test_series(base / "CT 5mm", 3, dz=5.0, thickness=5.0, description="5mm")
    write_test_series(base / "CT POST CONTRAST", 14, description="POST CONTRAST")
    names = [f"IM{k}" for k in range(12)]
    write_test_series(base / "CT Plain 3mm", 12, dz=3.0, thickness=3.0, description="Plain 3mm", names=names)
    (base / "CT PLAIN THIN" / "notes.txt").write_text("not dicom")
    return study


def write_ct_series(
    folder: Path, *, description="CT PLAIN THIN", spacing=2.0, thickness=2.0, n=70, size=100, seed=0, hu_fn=None
):
    """Axial LPS series centred on the origin; file names shuffled against position.

    ``hu_fn`` maps LPS points (..., 3) to HU (default: :func:`ball_head_hu`).
    """
    hu_fn = hu_fn or ball_head_hu
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    origin = np.array([-(size - 1) / 2 * spacing, -(size - 1) / 2 * spacing, -(n - 1) / 2 * thickness])
    rows, cols = np.indices((size, size))
    order = np.random.default_rng(seed).permutation(n)
    for file_index, k in enumerate(order):
        lps = np.stack(
            [origin[0] + cols * spacing, origin[1] + rows * spacing, np.full(cols.shape, origin[2] + k * thickness)], -1
        )
        write_dicom_slice(
            folder / f"CT{file_index:06d}.dcm",
            np.clip(hu_fn(lps) + 1024, 0, None).astype(np.uint16),
            series_uid=uid,
            description=description,
            ipp=(origin[0], origin[1], origin[2] + k * thickness),
            pixel_spacing=(spacing, spacing),
            thickness=thickness,
            instance=int(file_index + 1),
        )


def cq500_study_folder(ct_root: Path, n: int, *, zipped_folder: bool) -> Path:
    """``CQ500-CT-{n}/CQ500CT{n} CQ500CT{n}/Unknown Study`` or without the outer level."""
    inner = f"CQ500CT{n} CQ500CT{n}"
    base = ct_root / f"CQ500-CT-{n}" / inner if zipped_folder else ct_root / inner
    return base / "Unknown Study"


def write_cq500_study(ct_root: Path, n: int, *, zipped_folder: bool):
    """``CQ500-CT-{n}/CQ500CT{n} CQ500CT{n}/Unknown Study/CT ...`` or without the outer level."""
    study = cq500_study_folder(ct_root, n, zipped_folder=zipped_folder)
    write_ct_series(study / "CT PLAIN THIN", seed=n)
    write_ct_series(study / "CT BONE", description="CT BONE", n=70, seed=n + 100)
    write_ct_series(study / "CT 5mm", description="CT 5mm", thickness=5.0, n=28, seed=n + 200)


def ras_affine(axes_lps, spacing, origin_lps):
    flip = np.diag([-1, -1, 1])
    aff = np.eye(4)
    aff[:3, :3] = flip @ (np.array(axes_lps, float).T * np.array(spacing))
    aff[:3, 3] = flip @ np.array(origin_lps)
    return aff


def sample_grid(shape, axes_lps, spacing, origin_lps, fn):
    idx = np.indices(shape).reshape(3, -1).T.astype(float)
    lps = origin_lps + (idx * spacing) @ np.array(axes_lps, float)
    return fn(lps).reshape(shape)


def mr_value(lps):
    hu = ball_head_hu(lps)
    return np.select([hu == 40.0, hu == 1100.0, hu == 30.0], [300.0, 30.0, 200.0], 0.0)


def oasis_mr_paths(mr_root: Path, subject: str, day: str, *, xnat: bool, ses="ses", run=True):
    """(session folder, T1w NIfTI, its JSON sidecar) of an OASIS-3 MR session (folders created)."""
    session = mr_root / f"{subject}_MR_{day}"
    anat = session / "anat2"
    nifti_dir = anat / "NIFTI" if xnat else anat
    json_dir = anat / "BIDS" if xnat else anat
    nifti_dir.mkdir(parents=True)
    json_dir.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{subject}_{ses}-{day}" + ("_run-01" if run else "") + "_T1w"
    return session, nifti_dir / f"{stem}.nii.gz", json_dir / f"{stem}.json"


def write_oasis_mr(mr_root: Path, subject: str, day: str, *, xnat: bool, ses="ses", run=True, seed=0):
    session, nifti_path, json_path = oasis_mr_paths(mr_root, subject, day, xnat=xnat, ses=ses, run=run)
    axes = [[0, 1, 0], [0, 0, -1], [1, 0, 0]]  # sagittal: A->P, S->I, R->L
    spacing, shape, origin = np.array([2.0, 2.0, 2.0]), (90, 90, 80), np.array([-89.0, -89.0, 89.0])
    rng = np.random.default_rng(seed)
    data = sample_grid(shape, axes, spacing, origin, mr_value) + np.abs(rng.normal(0, 10, shape))
    nib.save(nib.Nifti1Image(data.astype(np.float32), ras_affine(axes, spacing, origin)), nifti_path)
    json_path.write_text(json.dumps({"Modality": "MR", "SeriesDescription": "MPRAGE"}))
    (session / "anat1").mkdir()
    (session / "anat1" / f"sub-{subject}_{ses}-{day}_T2w.nii.gz").write_bytes(b"decoy, never opened")
    return session


def oasis_pet_paths(pet_root: Path, subject: str, tracer: str, day: str, *, xnat: bool):
    """(session folder, 4D PET NIfTI, its JSON sidecar) of an OASIS-3 PET session (folders created)."""
    session = pet_root / f"{subject}_{tracer}_{day}"
    pet = session / "pet1"
    nifti_dir = pet / "NIFTI" if xnat else pet
    json_dir = pet / "BIDS" if xnat else pet
    nifti_dir.mkdir(parents=True)
    json_dir.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{subject}_ses-{day}_acq-{tracer}_pet"
    return session, nifti_dir / f"{stem}.nii.gz", json_dir / f"{stem}.json"


def write_oasis_pet(pet_root: Path, subject: str, tracer: str, day: str, *, xnat: bool, old_timing: bool, seed=0):
    session, nifti_path, json_path = oasis_pet_paths(pet_root, subject, tracer, day, xnat=xnat)
    axes = [[-1, 0, 0], [0, -1, 0], [0, 0, 1]]
    spacing, shape, origin = np.array([3.0, 3.0, 3.0]), (60, 60, 50), np.array([88.5, 88.5, -73.5])
    frame = sample_grid(
        shape,
        axes,
        spacing,
        origin,
        lambda lps: np.where(ball_head_hu(lps) == 30.0, 5.0, np.where(ball_head_hu(lps) == 40.0, 1.0, 0.0)),
    )
    starts = [0, 600, 1200, 1800, 2400, 3000, 3600]
    durations = [600] * 7
    rng = np.random.default_rng(seed)
    frames = np.stack([frame * (1 + i) + rng.normal(0, 0.2, shape) for i in range(len(starts))], -1)
    nib.save(nib.Nifti1Image(frames.astype(np.float32), ras_affine(axes, spacing, origin)), nifti_path)
    if old_timing:
        timing = {
            "FrameTimes": {
                "Labels": ["start", "end", "duration"],
                "Values": [[s, s + d, d] for s, d in zip(starts, durations)],
            }
        }
    else:
        timing = {"FrameTimesStart": starts, "FrameDuration": durations}
    json_path.write_text(json.dumps({"Modality": "PT", "TracerName": tracer, **timing}))
    return session


def build_real_layout_tree(root: Path) -> dict:
    """Three CT studies (both CQ500 folder variants), three MR and three PET sessions."""
    ct, mr, pet = root / "cq500", root / "oasis_mr", root / "oasis_pet"
    for n, zipped in ((0, True), (3, False), (11, True)):
        write_cq500_study(ct, n, zipped_folder=zipped)
    write_oasis_mr(mr, "OAS30001", "d0129", xnat=False, ses="ses", run=True, seed=1)
    write_oasis_mr(mr, "OAS30002", "d0031", xnat=True, ses="sess", run=False, seed=2)
    write_oasis_mr(mr, "OAS30003", "d1200", xnat=True, ses="ses", run=True, seed=3)
    write_oasis_pet(pet, "OAS30001", "PIB", "d0140", xnat=False, old_timing=False, seed=4)
    write_oasis_pet(pet, "OAS30002", "AV45", "d0311", xnat=True, old_timing=True, seed=5)
    write_oasis_pet(pet, "OAS30003", "PIB", "d1300", xnat=True, old_timing=False, seed=6)
    return {"ct_dir": str(ct), "mr_dir": str(mr), "pet_dir": str(pet)}


def build_empty_layout_tree(root: Path, n_ct: int, n_mr: int, n_pet: int, *, ct_slices: int = 240) -> dict:
    """The same layouts at scale with EMPTY files (0 bytes): for DAG-building benchmarks, since
    planning the workflow must never open an image file (any reader would fail on them).

    CT studies alternate the two CQ500 folder variants and hold a thin series of ``ct_slices``
    files and a 5 mm series; MR/PET sessions alternate the flat and XNAT layouts, ``ses``/``sess``
    and the PIB/AV45 tracers, with several sessions per subject as in OASIS-3.
    """
    ct, mr, pet = root / "cq500", root / "oasis_mr", root / "oasis_pet"
    for n in range(n_ct):
        study = cq500_study_folder(ct, n, zipped_folder=n % 2 == 0)
        for name, count in (("CT PLAIN THIN", ct_slices), ("CT 5mm", max(1, ct_slices // 8))):
            (study / name).mkdir(parents=True)
            for k in range(count):
                (study / name / f"CT{k:06d}.dcm").touch()
    for i in range(n_mr):
        subject, day = f"OAS3{i // 2 + 1:04d}", f"d{(i % 2) * 700 + 100 + i % 97:04d}"
        session, nifti_path, json_path = oasis_mr_paths(
            mr, subject, day, xnat=i % 2 == 1, ses="sess" if i % 3 == 1 else "ses", run=i % 4 != 3
        )
        nifti_path.touch()
        json_path.touch()
        (session / "anat1").mkdir()
        (session / "anat1" / f"sub-{subject}_ses-{day}_T2w.nii.gz").touch()
    for i in range(n_pet):
        subject, day = f"OAS3{i // 2 + 1:04d}", f"d{(i % 2) * 700 + 140 + i % 97:04d}"
        session, nifti_path, json_path = oasis_pet_paths(pet, subject, ("PIB", "AV45")[i % 2], day, xnat=i % 3 == 2)
        nifti_path.touch()
        json_path.touch()
        json_path.with_suffix(".tsv").touch()
    return {"ct_dir": str(ct), "mr_dir": str(mr), "pet_dir": str(pet)}


#: a patient's name as a study folder name: discovery gives it an anon- id and no output may show it
PATIENT_FOLDER = "DOE^JOHN 1970"


def write_sample_sheet(path: Path, rows: list[dict], *, columns=None, delimiter: str = "\t") -> Path:
    """A sample sheet (``data.sample_sheet``) with a header row; ``columns`` default to the keys
    of the rows in order of first appearance; missing cells are left empty."""
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    lines = [delimiter.join(columns)] + [delimiter.join(str(r.get(c, "")) for c in columns) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _touch_series(folder: Path, n: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        (folder / f"CT{k:06d}.dcm").touch()


def build_discovery_tree(root: Path) -> dict:
    """Raw data in every shape discovery must account for, with EMPTY files (names only: for
    planning and the discovery report, not for ingest). Returns the ``data`` config:

    * ``ct_dir``: ``CQ500-CT-1`` (zip-name layout), ``CQ500CT2 CQ500CT2`` (zip content), a folder
      ``batch 2`` holding ``CQ500-CT-3`` and a folder ``notes`` that holds no study, a study folder
      named :data:`PATIENT_FOLDER`, a stray file ``reads.csv`` and a hidden ``.DS_Store``;
    * ``mr_dir``: OASIS-3 sessions ``OAS30001_MR_d0129`` and ``OAS30002_MR_d0031``, a PET session
      ``OAS30003_PIB_d0140`` (in the wrong folder) and a folder ``Smith export`` in no layout;
    * ``pet_dir``: ``OAS30001_PIB_d0140``, ``OAS30002_AV45_d0311`` and ``OAS30003_XYZ_d0001``
      (a tracer without a ``pet.windows_min`` window);
    * ``sample_sheet``: ``cohort/cohort.tsv`` adding subject ``MRN-0042``'s MR NIfTI (session
      ``2020-01-03``, pinned to test) and subject ``MRN-0077``'s CT study folder ``DOE^JANE 1980``
      (pinned to train) and an FDG PET NIfTI of OASIS-3 subject ``OAS30002`` (pinned to train:
      their sessions in ``mr_dir`` and ``pet_dir`` with it), paths relative to the sheet.
    """
    ct, mr, pet, cohort = root / "ct", root / "mr", root / "pet", root / "cohort"
    _touch_series(cq500_study_folder(ct, 1, zipped_folder=True) / "CT PLAIN THIN")
    _touch_series(cq500_study_folder(ct, 2, zipped_folder=False) / "CT PLAIN THIN")
    _touch_series(cq500_study_folder(ct / "batch 2", 3, zipped_folder=True) / "CT 5mm")
    (ct / "batch 2" / "notes").mkdir(parents=True)
    _touch_series(ct / PATIENT_FOLDER / "HEAD 1.25mm")
    (ct / "reads.csv").write_text("name,ICH\n")
    (ct / ".DS_Store").touch()
    for subject, day in (("OAS30001", "d0129"), ("OAS30002", "d0031")):
        session, nifti, sidecar = oasis_mr_paths(mr, subject, day, xnat=False)
        nifti.touch()
        sidecar.touch()
    (mr / "OAS30003_PIB_d0140" / "pet1").mkdir(parents=True)
    (mr / "Smith export" / "T1").mkdir(parents=True)
    for subject, tracer, day in (
        ("OAS30001", "PIB", "d0140"),
        ("OAS30002", "AV45", "d0311"),
        ("OAS30003", "XYZ", "d0001"),
    ):
        _, nifti, sidecar = oasis_pet_paths(pet, subject, tracer, day, xnat=False)
        nifti.touch()
        sidecar.touch()
    (cohort / "mri").mkdir(parents=True)
    (cohort / "mri" / "t1_mprage.nii.gz").touch()
    (cohort / "pet").mkdir()
    (cohort / "pet" / "fdg_static.nii.gz").touch()
    _touch_series(cohort / "DOE^JANE 1980" / "CT HEAD")
    rows = [
        {
            "subject": "MRN-0042",
            "modality": "mr",
            "path": "mri/t1_mprage.nii.gz",
            "session": "2020-01-03",
            "split": "test",
        },
        {"subject": "MRN-0077", "modality": "ct", "path": "DOE^JANE 1980", "session": "", "split": "train"},
        {"subject": "OAS30002", "modality": "pet", "path": "pet/fdg_static.nii.gz", "tracer": "FDG", "split": "train"},
    ]
    sheet = write_sample_sheet(cohort / "cohort.tsv", rows)
    return {"ct_dir": str(ct), "mr_dir": str(mr), "pet_dir": str(pet), "sample_sheet": str(sheet)}
