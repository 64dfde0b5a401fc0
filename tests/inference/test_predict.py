"""Bring your own volume (``predict``): the workflow's ingest and preprocessing path on a user's
file, with the model folder's settings, and the sCT back on the input's grid (no TensorFlow)."""

import json

import nibabel as nib
import numpy as np
import pytest
import yaml

from medcyclegan.config.settings import ingest_settings, modality_settings, preprocess_settings
from medcyclegan.config.validation import validate_config
from medcyclegan.errors import BadInput
from medcyclegan.inference import predict
from medcyclegan.inference.runtime import load_preprocessing
from medcyclegan.testing.phantoms import (
    MARKER_RAS,
    affine_for,
    identity_generator,
    marker_world,
    model_folder,
    phantom,
)
from medcyclegan.testing.workflow import ROOT


def shipped_config() -> dict:
    return validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))


@pytest.fixture()
def fake_model(tmp_path):
    return model_folder(tmp_path / "model", "mr2ct", "mr")


def constant_nifti(path, shape=(96, 110, 80), zooms=(2.0, 2.0, 2.4), value=0.0):
    affine = affine_for("LPS", shape, zooms, (0.0, 0.0, 10.0))
    img = nib.Nifti1Image(np.full(shape, value, np.float32), affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


@pytest.mark.parametrize(
    "codes,shape,zooms,oblique",
    [("PIL", (150, 170, 130), (1.3, 1.1, 1.4), 0.0), ("LAS", (120, 190, 100), (1.6, 1.0, 1.9), 12.0)],
)
def test_marker_keeps_its_world_position(tmp_path, fake_model, codes, shape, zooms, oblique):
    src, src0 = tmp_path / "mr.nii.gz", tmp_path / "mr_nomarker.nii.gz"
    phantom(src, codes, shape, zooms, oblique_deg=oblique)
    phantom(src0, codes, shape, zooms, marker=False, oblique_deg=oblique)
    out, out0 = tmp_path / "sct.nii.gz", tmp_path / "sct0.nii.gz"
    predict.predict(fake_model, src, out, generator=identity_generator)
    predict.predict(fake_model, src0, out0, generator=identity_generator)
    sct = nib.load(str(out))
    assert sct.shape == shape and np.array_equal(sct.affine, nib.load(str(src)).affine)  # exactly, as stored
    assert sct.header.get_sform(coded=True)[1] == 1 and sct.header.get_qform(coded=True)[1] == 1
    assert sct.header.get_data_dtype() == np.int16
    data = np.asarray(sct.dataobj)
    assert data.min() == -1024 and data.max() > 0  # background air, head in HU
    assert np.allclose(marker_world(src), MARKER_RAS, atol=0.5)  # the phantom itself
    # the marker the sCT shows (what it adds over the marker-free phantom) sits where the input's is
    found = marker_world(out, reference=out0)
    assert np.linalg.norm(found - MARKER_RAS) < 1.0, (found, MARKER_RAS)


def test_context_model_gets_each_slice_between_its_neighbours(tmp_path, fake_model):
    """A model trained with context_slices = 1 is fed [B, H, W, 3] stacks (centre in channel 1);
    one that outputs the centre gives the single-slice model's sCT, one that outputs a neighbour
    a shifted one."""
    src = tmp_path / "mr.nii.gz"
    phantom(src, "LPS", (90, 100, 80), (2.0, 2.0, 2.0))
    context_model = model_folder(tmp_path / "model_k1", "mr2ct", "mr", context_slices=1)
    seen = []

    def channel(c):
        def generator(x, batch_size=8):
            seen.append(np.shape(x)[-1])
            return np.asarray(x, np.float32)[..., c : c + 1]

        return generator

    outs = {name: tmp_path / f"{name}.nii.gz" for name in ("k0", "centre", "below")}
    predict.predict(fake_model, src, outs["k0"], generator=identity_generator)
    predict.predict(context_model, src, outs["centre"], generator=channel(1))
    assert set(seen) == {3}
    predict.predict(context_model, src, outs["below"], generator=channel(0))
    k0, centre, below = (np.asarray(nib.load(str(p)).dataobj) for p in outs.values())
    np.testing.assert_array_equal(centre, k0)
    assert not np.array_equal(below, k0)


def test_input_file_gets_exactly_the_workflow_slices(tmp_path):
    """The same MR as a session folder through the ingest and preprocess_volume jobs, and as a
    file through predict's preprocessing: identical slices, window and scaling."""
    from medcyclegan.workflow import jobs

    session = tmp_path / "raw" / "OAS30001_MR_d0100"
    nii = session / "anat1" / "sub-OAS30001_ses-d0100_T1w.nii.gz"
    nii.parent.mkdir(parents=True)
    phantom(nii, "LAS", (120, 150, 110), (1.4, 1.1, 1.6), oblique_deg=10.0)
    settings = modality_settings(shipped_config(), "mr")
    out = tmp_path / "results"
    vol, info, npz = out / "v.nii.gz", out / "v.json", out / "v.npz"
    jobs.ingest("mr", str(session), session.name, str(vol), str(info), **ingest_settings(settings))
    jobs.preprocess(
        "mr",
        session.name,
        str(vol),
        str(npz),
        str(out / "v.csv"),
        str(out / "m.nii.gz"),
        **preprocess_settings(settings),
    )
    prepared = predict.preprocess_input(nii, settings)
    canonical, sliced = prepared.canonical, prepared.sliced
    with np.load(npz) as f:
        assert "rejected" not in f.files and f["images"].shape[0] > 50
        np.testing.assert_array_equal(f["images"], sliced.images)
        np.testing.assert_array_equal(f["slice"], sliced.slices)
        assert tuple(f["top_left"]) == sliced.top_left
        assert (float(f["value_lo"]), float(f["value_hi"])) == (sliced.value_lo, sliced.value_hi)
    assert list(canonical.GetSize()) == json.loads(info.read_text())["canonical"]["size"]


def test_bad_pet_is_refused_by_the_workflow_plausibility_check(tmp_path):
    """An empty (constant) PET: the ingest job rejects it, predict refuses it with the same reason."""
    from medcyclegan.workflow import jobs

    model = model_folder(tmp_path / "model", "pet2ct", "pet")
    session = tmp_path / "raw" / "OAS30003_PIB_d0200"
    nii = session / "pet1" / "sub-OAS30003_ses-d0200_acq-PIB_pet.nii.gz"
    constant_nifti(nii)
    settings = modality_settings(shipped_config(), "pet")
    info = tmp_path / "v.json"
    jobs.ingest("pet", str(session), session.name, str(tmp_path / "v.nii.gz"), str(info), **ingest_settings(settings))
    row = json.loads(info.read_text())["rejection"]
    assert row["rule"] == "ingest" and "there is no image in it" in row["reason"]
    with pytest.raises(BadInput) as refused:
        predict.predict(model, nii, tmp_path / "sct.nii.gz", generator=identity_generator)
    assert str(refused.value).startswith(f"{nii}: ") and row["reason"] in str(refused.value)
    assert not (tmp_path / "sct.nii.gz").exists()


def test_too_small_field_of_view_and_head_are_refused(tmp_path, fake_model):
    small = tmp_path / "small_fov.nii.gz"
    phantom(small, "LPS", (30, 30, 30), (1.5, 1.5, 1.5))  # 45 mm: less than reject.min_extent_mm
    with pytest.raises(BadInput, match="reject.min_extent_mm"):
        predict.predict(fake_model, small, tmp_path / "a.nii.gz", generator=identity_generator)
    tiny_head = tmp_path / "tiny_head.nii.gz"
    shape, zooms = (100, 100, 100), (1.0, 1.0, 1.0)
    affine = affine_for("LPS", shape, zooms, (0.0, 0.0, 0.0))
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    data = np.where(np.linalg.norm(ijk - 50.0, axis=-1) <= 20.0, 100.0, 1.0)  # a 34 ml ball
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(tiny_head))
    with pytest.raises(BadInput, match="reject.min_head_volume_ml"):
        predict.predict(fake_model, tiny_head, tmp_path / "b.nii.gz", generator=identity_generator)


def test_missing_preprocessing_record_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="preprocessing record"):
        load_preprocessing(tmp_path)


def test_record_without_a_section_gets_the_schema_default(tmp_path, fake_model):
    record = json.loads((fake_model / "preprocessing.json").read_text())
    del record["reject"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(record))
    loaded = load_preprocessing(fake_model, override=old)
    assert loaded["reject"] == validate_config({})["reject"] and loaded["masking"] == record["masking"]


def test_dynamic_pet_input_gives_a_3d_sct_on_its_spatial_grid(tmp_path):
    """A 4D PET: frames are summed as ingest does; the sCT has the PET's spatial shape and affine."""
    model = model_folder(tmp_path / "model", "pet2ct", "pet")
    static = tmp_path / "static.nii.gz"
    phantom(static, codes="LPS", shape=(96, 110, 80), zooms=(2.0, 2.0, 2.4))
    img3 = nib.load(str(static))
    frames = np.stack([np.asarray(img3.dataobj) * f for f in (0.5, 1.0, 1.0, 1.0, 1.0)], axis=-1)
    dyn = nib.Nifti1Image(frames.astype(np.float32), img3.affine)
    dyn.set_qform(img3.affine, 1)
    dyn.set_sform(img3.affine, 1)
    src = tmp_path / "sub-X_acq-PIB_pet.nii.gz"
    nib.save(dyn, str(src))
    out = tmp_path / "sct.nii.gz"
    info = predict.predict(model, src, out, generator=identity_generator)  # tracer from the acq- entity
    sct = nib.load(str(out))
    assert info["modality"] == "pet" and sct.shape == (96, 110, 80)
    assert np.array_equal(sct.affine, nib.load(str(src)).affine)
    data = np.asarray(sct.dataobj)
    assert data.min() == -1024 and (data > -1024).sum() > 0.2 * data.size  # air around a head
