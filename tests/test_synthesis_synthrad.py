"""SynthRAD2023 Task 1 layout as an optional input: discovery, ingest, and the evaluation DAG (dry run)."""

import nibabel as nib
import numpy as np
import pytest

from medcyclegan import synthrad
from workflow_utils import scheduled_jobs, snakemake, write_config


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


def test_ingest_reads_mr_and_ct_through_the_pipeline_dispatch(tmp_path):
    from medcyclegan.pipeline import _read_volume

    brain = fake_task1(tmp_path, ids=("1BA001",))
    img, info = _read_volume("mr", str(brain / "1BA001"), None, None)
    assert img.GetSize() == (40, 48, 36) and info["file"] == "mr.nii.gz"
    img, info = _read_volume("ct", str(brain / "1BA001"), None, None)
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
    assert jobs["synthrad_ground_truth_slices"] == 3 and jobs["evaluate_volume"] == 1
    assert f"{brain}/1B" in out and "mask.nii.gz" in out
