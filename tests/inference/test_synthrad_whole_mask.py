"""SynthRAD2023 volumes are synthesised and scored over the whole given mask (the challenge's
region), not only over the useful-slice slab; the demo's slab scoring stays as it is. Package
functions on a one-patient SynthRAD tree, with a constant generator (no TensorFlow, no Snakemake)."""

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medcyclegan.evaluation.volume import evaluate_volume
from medcyclegan.inference import runtime, synthesis
from medcyclegan.inference.predict import preprocess_input
from medcyclegan.inference.whole_mask import given_mask_on, whole_mask_slices
from medcyclegan.io import atomic as io
from medcyclegan.preprocessing.volume import mask_image
from medcyclegan.testing.phantoms import model_folder
from medcyclegan.testing.synthrad_trees import phantom_task1

BACKGROUND = -1024


def constant_generator(x, batch_size: int = 8):
    """Mid-range CT (0 in [-1, 1]) for every pixel, head or not: shows which voxels were translated."""
    return np.zeros_like(np.asarray(x, np.float32))


def add_neck(folder, n_slices=16, radius=34):
    """Prepend ``n_slices`` inferior slices holding a neck (a cylinder of soft tissue, in the MR,
    the CT and the mask): a cross-section under min_head_area_mm2, so the useful-slice filter drops
    them, but inside the mask the challenge scores."""
    imgs = {k: nib.load(str(folder / f"{k}.nii.gz")) for k in ("mr", "ct", "mask")}
    affine = imgs["mr"].affine.copy()
    affine[:3, 3] -= affine[:3, 2] * n_slices  # the new first slice lies n_slices below the old one
    mask = np.asarray(imgs["mask"].dataobj) > 0
    ci, cj = np.argwhere(mask[..., 0]).mean(0)
    ii, jj = np.meshgrid(np.arange(mask.shape[0]), np.arange(mask.shape[1]), indexing="ij")
    disc = (ii - ci) ** 2 + (jj - cj) ** 2 <= radius**2
    mr = np.asarray(imgs["mr"].dataobj)
    tissue = {"mr": float(np.median(mr[..., 0][mask[..., 0]])), "ct": 40, "mask": 1}
    for k, img in imgs.items():
        data = np.asarray(img.dataobj)
        background = {"mr": 0, "ct": -1000, "mask": 0}[k]
        neck = np.where(disc, tissue[k], background).astype(data.dtype)
        out = nib.Nifti1Image(np.concatenate([np.repeat(neck[..., None], n_slices, 2), data], 2), affine)
        out.set_qform(affine, 1)
        out.set_sform(affine, 1)
        nib.save(out, str(folder / f"{k}.nii.gz"))


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """One SynthRAD patient with a neck below the cranium, preprocessed as the workflow does: npz
    stack, canonical volume and head mask."""
    root = tmp_path_factory.mktemp("synthrad")
    folder = phantom_task1(root, ids=("1BA001",)) / "1BA001"
    add_neck(folder)
    model = model_folder(root / "model", "mr2ct", "mr")
    prepared = preprocess_input(folder / "mr.nii.gz", runtime.load_preprocessing(model))
    out = root / "prep"
    out.mkdir()
    io.write_npz(out / "v.npz", **prepared.sliced.npz_arrays())
    sitk.WriteImage(prepared.canonical, str(out / "v.nii.gz"))
    sitk.WriteImage(mask_image(prepared.sliced.mask, prepared.canonical), str(out / "m.nii.gz"))
    (out / "v.json").write_text(json.dumps({"ingest": {"file": "mr.nii.gz"}}))
    # baseline (a) only: one HU inside the input's head
    (out / "baselines.json").write_text(json.dumps({"mean_ct": {"hu": 30.0}}))
    mask = np.asarray(nib.load(str(folder / "mask.nii.gz")).dataobj) > 0
    return {"folder": folder, "model": model, "prepared": prepared, "out": out, "mask": mask}


def synthesize(patient, out_path, whole_mask, monkeypatch):
    monkeypatch.setattr(runtime, "generator_path", lambda model_dir, direction: model_dir)
    monkeypatch.setattr(runtime, "load_generator", lambda path: constant_generator)
    out, folder = patient["out"], patient["folder"]
    return synthesis.synthesize_job(
        patient["model"],
        out / "v.npz",
        out / "m.nii.gz",
        out / "v.nii.gz",
        out / "v.json",
        folder / "mr.nii.gz",
        out_path,
        flip_average=False,
        whole_mask=whole_mask,
        given_mask_path=folder / "mask.nii.gz" if whole_mask else None,
    )


def mask_slices(mask):
    """Axial (third nibabel axis of the phantom's LAS grid) slices holding mask."""
    return np.flatnonzero(mask.reshape(-1, mask.shape[2]).any(0))


def test_the_mask_reaches_beyond_the_useful_slice_slab(patient):
    prepared = patient["prepared"]
    given = given_mask_on(patient["folder"] / "mask.nii.gz", prepared.canonical)
    with_mask = np.flatnonzero(given.reshape(given.shape[0], -1).any(1))
    assert set(with_mask) - set(prepared.sliced.slices), "test setup: the mask must extend beyond the slab"
    extended = whole_mask_slices(prepared.sliced.npz_arrays(), prepared.canonical, prepared.sliced.mask, given)
    translated = extended.arrays["slice"]
    assert set(with_mask) <= set(translated) and set(prepared.sliced.slices) <= set(translated)
    assert np.all(np.diff(translated) > 0) and extended.n_added == len(translated) - len(prepared.sliced.slices)
    # the kept slices are the workflow's own, unchanged
    kept = np.isin(translated, prepared.sliced.slices)
    np.testing.assert_array_equal(extended.arrays["images"][kept], prepared.sliced.images)
    assert extended.head[given].all() and extended.head[prepared.sliced.mask].all()


def test_whole_mask_sct_covers_every_mask_slice_and_is_scored_over_the_whole_mask(patient, tmp_path, monkeypatch):
    mask = patient["mask"]
    sct_whole, sct_slab = tmp_path / "whole.nii.gz", tmp_path / "slab.nii.gz"
    info = synthesize(patient, sct_whole, True, monkeypatch)
    synthesize(patient, sct_slab, False, monkeypatch)
    assert info["whole_mask"] and info["n_slices_beyond_slab"] > 0
    whole = np.asarray(nib.load(str(sct_whole)).dataobj)
    slab = np.asarray(nib.load(str(sct_slab)).dataobj)
    for k in mask_slices(mask):
        assert (whole[..., k][mask[..., k]] > BACKGROUND).all(), f"mask slice {k} not synthesised"
    # the slab sCT leaves some mask slices empty: what whole-mask synthesis adds
    empty = [k for k in mask_slices(mask) if not (slab[..., k][mask[..., k]] > BACKGROUND).any()]
    assert empty

    out, folder = patient["out"], patient["folder"]
    common = dict(
        gt_ct_path=folder / "ct.nii.gz",
        npz_path=out / "v.npz",
        canonical_mask_path=out / "m.nii.gz",
        canonical_path=out / "v.nii.gz",
        original_path=folder / "mr.nii.gz",
        baselines_json=out / "baselines.json",
        gt_mask_path=folder / "mask.nii.gz",
        ct_mask_cfg={},
    )
    r_whole = evaluate_volume(
        "1BA001", sct_whole, out_json=tmp_path / "w.json", out_npz=tmp_path / "w.npz", whole_mask=True, **common
    )
    r_slab = evaluate_volume("1BA001", sct_slab, out_json=tmp_path / "s.json", out_npz=tmp_path / "s.npz", **common)
    assert r_whole["n_voxels"] == int(mask.sum()) and r_whole["whole_mask"]
    assert r_whole["fov_coverage"] == pytest.approx(1.0) and r_whole["mask"] == "given mask, whole"
    assert r_slab["n_voxels"] < int(mask.sum()) and r_slab["fov_coverage"] < 1.0 and not r_slab["whole_mask"]
    assert r_slab["mask"] == "given mask, restricted to the synthesised slab"
    # the baseline is built on the same slices as the model's sCT: the same voxels, a value on each
    for r in (r_whole, r_slab):
        assert set(r["scores"]) == {"model", "mean_ct"}
        assert r["scores"]["mean_ct"]["n_voxels"] == r["n_voxels"]
    assert json.loads((tmp_path / "w.json").read_text())["n_voxels"] == int(mask.sum())
