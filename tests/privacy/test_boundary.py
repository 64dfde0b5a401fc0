"""The privacy boundary (medcyclegan.privacy): free text and paths of the input never pass it,
structured facts and the volume id do, and every reference leads back to its file."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytest

from medcyclegan import privacy


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "DOE^JOHN 1970"
    series = root / "Zqf Series" / "CT PLAIN Müller"
    series.mkdir(parents=True)
    for name in ("IMG0001.dcm", "notes DOE.txt"):
        (series / name).write_text("x")
    return root


def test_paths_names_and_registered_text_become_references(study):
    with privacy.boundary("anon-0123456789ab", study, id_key="k", codes={"PIB"}) as b:
        privacy.free_text("HEAD Zqfdesc 7")
        privacy.free_text("PIB")  # a configured tracer is a code, not free text
        image = study / "Zqf Series" / "CT PLAIN Müller" / "IMG0001.dcm"
        message = f"{image}: truncated; series 'HEAD Zqfdesc 7' in {study}; dropped IMG0001.dcm; tracer PIB"
        out = b.public({"reason": message, "n": 3, "x": 1.5, "Zqf Series": [str(study), None]})
    relative = "Zqf Series/CT PLAIN Müller/IMG0001.dcm"
    assert out["reason"] == (
        f"{privacy.file_ref('anon-0123456789ab', relative, 'k')}: truncated; series "
        f"'{privacy.text_ref('HEAD Zqfdesc 7', 'k')}' in anon-0123456789ab; dropped "
        f"{privacy.file_ref('anon-0123456789ab', 'IMG0001.dcm', 'k')}; tracer PIB"
    )
    assert out["n"] == 3 and out["x"] == 1.5
    (key,) = [k for k in out if k.startswith("anon-0123456789ab/f-")]  # keys are text too
    assert out[key] == ["anon-0123456789ab", None]
    assert "DOE" not in repr(out) and "Zqf" not in repr(out) and "Müller" not in repr(out)


def test_references_are_stable_and_keyed():
    a = privacy.file_ref("CQ500-CT-1", "Unknown Study/CT A/CT000001.dcm", "site key")
    assert a == privacy.file_ref("CQ500-CT-1", "Unknown Study/CT A/CT000001.dcm", "site key")
    assert a != privacy.file_ref("CQ500-CT-1", "Unknown Study/CT A/CT000001.dcm", "other key")
    assert privacy.FILE_REF.fullmatch(a)
    assert privacy.text_ref("A  B") == privacy.text_ref("A B")  # whitespace does not make a new text


def test_the_volume_id_and_layout_names_stay_readable(tmp_path):
    session = tmp_path / "OAS30001_PIB_d0100"
    (session / "pet1").mkdir(parents=True)
    with privacy.boundary("OAS30001_PIB_d0100", session) as b:
        privacy.free_text("PIB Zqf")  # a registered text that is part of the id does not break it
        assert b.public(f"{session} and {session}/pet1 of OAS30001_PIB_d0100: PIB Zqf") == (
            f"OAS30001_PIB_d0100 and {privacy.file_ref('OAS30001_PIB_d0100', 'pet1')} of OAS30001_PIB_d0100: "
            f"{privacy.text_ref('PIB Zqf')}"
        )
        assert b.public("pet1 and OAS30001_PIB_d0100") == "pet1 and OAS30001_PIB_d0100"


def test_free_text_outside_a_boundary_is_just_read():
    assert privacy.active() is None
    assert privacy.free_text("Zqf") == "Zqf" and privacy.free_text(None) == ""


def test_sidecar_fields_register_free_text_by_value_representation(tmp_path):
    with privacy.boundary("v1", None) as b:
        privacy.free_text_fields(
            {
                "SeriesDescription": "T1 Zqfone",  # LO: free text
                "Modality": "MR",  # CS: a code
                "ImageType": ["ORIGINAL", "PRIMARY"],  # CS
                "MRAcquisitionType": "3D",
                "MadeUpKey": "Zqftwo",  # not a DICOM keyword: free text
                "Nested": {"OperatorsName": "Zqfthree"},
            }
        )
        out = b.public("T1 Zqfone / Zqftwo / Zqfthree / MR 3D ORIGINAL")
    assert "Zqf" not in out and out.endswith("/ MR 3D ORIGINAL")


def test_log_records_and_warnings_pass_the_boundary(study, caplog):
    caplog.set_level(logging.INFO)
    log = logging.getLogger("medcyclegan")
    with privacy.boundary("anon-0123456789ab", study):
        log.info("reading %s", study / "Zqf Series")
        warnings.warn(f"odd value in {study}/Zqf Series/CT PLAIN Müller", UserWarning, stacklevel=1)
        try:
            raise ValueError(f"while reading {study}")
        except ValueError:
            log.exception("failed")
    assert "anon-0123456789ab/f-" in caplog.text and "failed" in caplog.text
    assert "DOE" not in caplog.text and "Zqf" not in caplog.text and "Müller" not in caplog.text


def test_a_bug_inside_the_boundary_fails_with_public_text(study):
    with pytest.raises(privacy.RedactedError, match="ValueError: bad anon-0123456789ab") as failure:
        with privacy.boundary("anon-0123456789ab", study) as b, privacy.public_errors(b):
            raise ValueError(f"bad {study}")
    assert "DOE" not in str(failure.value) and "Traceback" in str(failure.value)


def test_jobs_reach_the_input_through_a_link_named_by_the_volume(tmp_path, study):
    links = tmp_path / ".medcyclegan/sources/ct"
    link = privacy.job_source(study, "anon-0123456789ab", links)
    assert link == str(links / "anon-0123456789ab") and Path(link).resolve() == study.resolve()
    before = os.lstat(link).st_mtime_ns
    assert privacy.job_source(study, "anon-0123456789ab", links) == link  # planning again: untouched
    assert os.lstat(link).st_mtime_ns == before
    moved = study.rename(tmp_path / "moved")
    privacy.job_source(moved, "anon-0123456789ab", links)  # re-pointed
    assert Path(link).resolve() == moved.resolve()
    nii = tmp_path / "Zqf export" / "DOE t1.nii.gz"
    nii.parent.mkdir()
    nii.write_bytes(b"x")
    nii.with_name("DOE t1.json").write_text("{}")
    link = privacy.job_source(nii, "anon-aaaaaaaaaaaa_mr", links)
    assert link.endswith("anon-aaaaaaaaaaaa_mr.nii.gz") and (links / "anon-aaaaaaaaaaaa_mr.json").is_symlink()


def test_a_zipped_study_registers_its_members_and_locate_finds_them(tmp_path):
    import zipfile

    archive = tmp_path / "CQ500-CT-9.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("CQ500CT9 CQ500CT9/Unknown Study/CT Zqf DOE/CT000001.dcm", b"x")
    member = "CQ500CT9 CQ500CT9/Unknown Study/CT Zqf DOE"
    with privacy.boundary("CQ500-CT-9", archive) as b:
        out = b.public(f"{archive}/{member}/CT000001.dcm: truncated; series {member}")
    assert "Zqf" not in out and out.startswith(privacy.file_ref("CQ500-CT-9", f"{member}/CT000001.dcm"))
    assert privacy.referenced_paths(archive, privacy.file_ref("CQ500-CT-9", member)) == [f"{archive}/{member}"]
