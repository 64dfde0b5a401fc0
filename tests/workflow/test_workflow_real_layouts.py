"""Workflow test: the preprocessing DAG on small trees in the real CQ500 / OASIS-3 layouts.

Points ``data.*_dir`` at raw trees (both CQ500 folder variants, flat and XNAT OASIS layouts,
``ses-``/``sess-``, old and BIDS PET timing) and checks what comes out of the TFRecords.
"""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from medcyclegan.testing.fake_trees import build_real_layout_tree
from medcyclegan.testing.workflow import scheduled_jobs, snakemake, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.timeout(1500)]

OVERRIDES = {
    "ct_series": {"max_slice_thickness_mm": 2.5, "min_slices": 40},
    "slicing": {"min_head_area_mm2": 3000},
    "split": {"test_fraction": 0.34},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_layouts")
    data = build_real_layout_tree(root / "raw")
    work = root / "work"
    write_config(work, {**OVERRIDES, "data": data})
    snakemake(work, "-j2", "preprocess")
    return work


def load(path):
    from medcyclegan.io.tfrecords import read_dataset

    return [{k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in ex.items()} for ex in read_dataset(str(path))]


def test_six_tfrecords_with_valid_slices(run):
    for modality in ("ct", "mr", "pet"):
        seen = {}
        for split in ("train", "test"):
            examples = load(run / f"results/tfrecords/{modality}/{split}.tfrecord")
            assert examples, f"{modality}/{split} is empty"
            for ex in examples:
                img = ex["image"][..., 0]
                assert img.shape == (256, 256)
                assert img.min() >= -1.0 and img.max() <= 1.0
                assert ex["modality"] == modality.encode()
            seen[split] = {ex["subject"] for ex in examples}
        assert not seen["train"] & seen["test"], f"{modality}: subject on both sides"


def test_ct_restores_to_hu_and_background_is_exact(run):
    from medcyclegan.preprocessing.intensity import to_physical

    examples = load(run / "results/tfrecords/ct/train.tfrecord")
    hu = np.stack([to_physical(ex["image"][..., 0], ex["value_lo"], ex["value_hi"]) for ex in examples])
    assert hu.max() > 700  # bone
    assert np.isclose(hu.min(), -1024, atol=0.5)
    # outside the head mask: exactly the background value (-1 -> -1024 HU)
    ex = examples[len(examples) // 2]
    volume = ex["volume"].decode()
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(run / f"results/masks/ct/{volume}.nii.gz"))).astype(bool)
    from medcyclegan.preprocessing.slicing import extract_window

    window_mask = extract_window(mask[ex["slice"]], tuple(ex["crop_offset"]), 256, False)
    img = ex["image"][..., 0]
    assert (img[~window_mask] == -1.0).all()
    assert (img[window_mask] > -1.0).mean() > 0.9


def test_series_selection_and_pet_frames_recorded(run):
    import json

    from medcyclegan.privacy import file_ref

    info = json.loads((run / "results/volumes/ct/CQ500-CT-3.json").read_text())
    # free text: a reference (the description is also the series folder's name, whose reference it gets)
    assert info["ingest"]["series_description"] == file_ref("CQ500-CT-3", "CT PLAIN THIN")
    pet = json.loads((run / "results/volumes/pet/OAS30002_AV45_d0311.json").read_text())
    used = [f["index"] for f in pet["ingest"]["frames_used"]]
    assert used == [5, 6]  # 50-60 and 60-70 min


def test_qc_tables_and_previews(run):
    for modality in ("ct", "mr", "pet"):
        table = pd.read_csv(run / f"results/qc/{modality}_slices.csv")
        assert {"volume", "subject", "slice", "head_area_mm2", "kept", "reason", "split"} <= set(table.columns)
        assert table.kept.any() and (~table.kept).any()
        assert table.loc[~table.kept, "reason"].notna().all()
        assert (run / f"results/qc/{modality}_preview.png").stat().st_size > 10_000
    split = pd.read_csv(run / "results/splits/mr.csv")
    assert set(split.volume) == {"OAS30001_MR_d0129", "OAS30002_MR_d0031", "OAS30003_MR_d1200"}


def test_nothing_to_do_after_run_and_mr_mask_change_reruns_only_mr(run):
    out = snakemake(run, "-n", "preprocess").stdout
    assert "Nothing to be done" in out or not scheduled_jobs(out)
    write_config(run, {"masking": {"mr": {"threshold_scale": 0.6}}}, name="changed.yaml", base=run / "config.yaml")
    out = snakemake(run, "-n", "preprocess", config="changed.yaml").stdout
    jobs = scheduled_jobs(out)
    print("scheduled after masking.mr change:", jobs)
    assert jobs.get("preprocess_volume") == 3 and "ingest" not in jobs
    assert jobs.get("tfrecords") == 2 and jobs.get("qc_slice_table") == 1 and "split" not in jobs
    assert "modality=ct" not in out and "modality=pet" not in out
