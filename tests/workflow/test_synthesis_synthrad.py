"""SynthRAD2023 Task 1 layout as an optional input: discovery, ingest, and the evaluation DAG (dry run)."""

import nibabel as nib
import numpy as np
import pytest

from medcyclegan.ingest import synthrad
from medcyclegan.testing.synthrad_trees import phantom_task1
from medcyclegan.testing.workflow import scheduled_jobs, snakemake, write_config


def fake_task1(root, ids=("1BA001", "1BA005", "1BB012", "1BC003"), shape=(40, 48, 36)):
    brain = root / "Task1" / "brain"
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-20, -24, -18]
    for i in ids:
        p = brain / i
        p.mkdir(parents=True)
        for name, value in (("mr", 100.0), ("ct", 40.0), ("mask", 1)):
            img = nib.Nifti1Image(np.full(shape, value, np.float32 if name != "mask" else np.uint8), affine)
            img.set_qform(affine, 1)
            img.set_sform(affine, 1)
            nib.save(img, str(p / f"{name}.nii.gz"))
    (brain / "overview").mkdir()  # not a patient folder
    (brain / "1BA009").mkdir()  # incomplete: no images
    return brain


def test_discovery_accepts_task1_brain_or_parents(tmp_path):
    brain = fake_task1(tmp_path)
    for root in (brain, tmp_path / "Task1", tmp_path):
        found = synthrad.find_patients(root)
        assert list(found) == ["1BA001", "1BA005", "1BB012", "1BC003"]
    with pytest.raises(FileNotFoundError, match="SynthRAD2023"):
        synthrad.find_patients(tmp_path / "Task1" / "brain" / "overview")


def test_ingest_reads_mr_and_ct_through_the_ingest_dispatch(tmp_path):
    from medcyclegan.ingest.volume import read_volume

    brain = fake_task1(tmp_path, ids=("1BA001",))
    img, info = read_volume("mr", str(brain / "1BA001"))
    assert img.GetSize() == (40, 48, 36) and info["file"] == "mr.nii.gz"
    img, info = read_volume("ct", str(brain / "1BA001"))
    assert info["file"] == "ct.nii.gz" and info["modality"] == "CT"
    assert synthrad.paired_files(brain / "1BA001")["mask"].endswith("mask.nii.gz")


@pytest.mark.workflow
def test_evaluation_dag_uses_synthrad_pairs(tmp_path):
    brain = fake_task1(tmp_path / "data")
    work = tmp_path / "work"
    write_config(work, {"data": {"synthrad_dir": str(brain)}, "split": {"test_fraction": 0.25}})
    out = snakemake(work, "-n", "results/mr2ct/metrics.json").stdout
    jobs = scheduled_jobs(out)
    # MR and CT come from SynthRAD (no demo MR/CT); train patients' pairs fit the intensity map
    assert "demo_mr_session" not in jobs and "demo_ct_study" not in jobs
    assert jobs["ground_truth_slices"] == 3 and jobs["evaluate_volume"] == 1
    assert f"{brain}/1B" in out and "mask.nii.gz" in out


@pytest.mark.workflow
@pytest.mark.slow
def test_synthrad_pairs_train_and_evaluate_end_to_end(tmp_path):
    import json

    import pandas as pd

    from medcyclegan.testing.workflow import TINY_TRAINING

    brain = phantom_task1(tmp_path / "data")
    work = tmp_path / "work"
    write_config(work, {"data": {"synthrad_dir": str(brain)}, "split": {"test_fraction": 0.25}, **TINY_TRAINING})
    snakemake(work, "-j2", "results/mr2ct/metrics.json")
    split = pd.read_csv(work / "results/splits/mr.csv")
    test = sorted(split.loc[split.split == "test", "volume"])
    assert len(test) == 1 and set(split.volume) == {"1BA001", "1BA002", "1BB003", "1BC004"}
    # CT of the training patients trains the CycleGAN (unpaired); nothing of the demo is made
    assert not (work / "results/demo").exists()
    ct_split = pd.read_csv(work / "results/splits/ct.csv")
    assert set(ct_split.loc[ct_split.split == "train", "volume"]) == set(split.volume) - set(test)
    # the synthetic CT lies on the MR's grid; scored against the patient's real CT in SynthRAD's mask
    (pid,) = test
    mr = nib.load(str(brain / pid / "mr.nii.gz"))
    sct = nib.load(str(work / f"results/mr2ct/sct/{pid}.nii.gz"))
    assert sct.shape == mr.shape and np.array_equal(sct.affine, mr.affine)
    result = json.loads((work / "results/mr2ct/metrics.json").read_text())
    (row,) = result["subjects"]
    mask = np.asarray(nib.load(str(brain / pid / "mask.nii.gz")).dataobj) > 0
    # the challenge's region: the whole mask, every slice of it synthesised (not only the slab)
    assert row["volume"] == pid and row["n_voxels"] == mask.sum() and result["split"] == "test"
    sct_data = np.asarray(sct.dataobj)
    assert all((sct_data[..., k][mask[..., k]] > -1024).any() for k in range(mask.shape[2]) if mask[..., k].any())
    assert result["model_minus_baseline"]["mean_ct"]["mae_hu"]["n_subjects"] == 1
    baselines = json.loads((work / "results/mr2ct/baselines.json").read_text())
    assert baselines["intensity_map"]["kind"] == "paired" and baselines["intensity_map"]["n_subjects"] == 3
    # on registered pairs the per-intensity map must beat one mean value by far
    assert row["intensity_map_mae_hu"] < 0.7 * row["mean_ct_mae_hu"]
    assert 0 < row["model_mae_hu"] < 2000
