"""Workflow test: tiny demo -> tiny training -> sCT volumes, metrics.csv/.json, evaluation.png, predict target.

Only what ``results/mr2ct/metrics.json`` and ``evaluation.png`` need runs (CT and MR; no PET), with
the tiny demo and training budget of medcyclegan.testing.workflow.
"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medcyclegan.privacy import referenced_paths
from medcyclegan.testing.phantoms import phantom
from medcyclegan.testing.workflow import TINY_DEMO, TINY_TRAINING, scheduled_jobs, snakemake, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    work = tmp_path_factory.mktemp("evaluate")
    write_config(work, {**TINY_DEMO, **TINY_TRAINING})
    snakemake(work, "-j2", "results/mr2ct/metrics.json", "results/mr2ct/evaluation.png")
    return work


def test_metrics_table_and_json(evaluated):
    split = pd.read_csv(evaluated / "results/splits/mr.csv")
    test = sorted(split.loc[split.split == "test", "volume"])
    table = pd.read_csv(evaluated / "results/mr2ct/metrics.csv")
    assert list(table.volume) == test + ["mean", "std"]
    result = json.loads((evaluated / "results/mr2ct/metrics.json").read_text())
    print("tiny-budget metrics:", json.dumps(result["summary"]))
    assert result["n_subjects"] == len(test) and result["model_step"] == TINY_TRAINING["training"]["steps"]
    for method in ("model", "mean_ct", "intensity_map", "intensity_map_unpaired"):
        s = result["summary"][method]
        assert 0 < s["mae_hu"]["mean"] < 2000 and 0 < s["psnr_db"]["mean"] < 60 and -1 < s["ssim"]["mean"] <= 1
    # the paired intensity map is fitted on the demo's training ground truth: far better than one value
    assert result["summary"]["intensity_map"]["mae_hu"]["mean"] < result["summary"]["mean_ct"]["mae_hu"]["mean"]
    assert set(result["model_beats_baseline_mae"]) == {"mean_ct", "intensity_map", "intensity_map_unpaired"}
    assert result["split"] == "test"
    paired = result["model_minus_baseline"]["intensity_map"]["mae_hu"]
    assert paired["n_subjects"] == len(test)
    expected = result["summary"]["model"]["mae_hu"]["mean"] - result["summary"]["intensity_map"]["mae_hu"]["mean"]
    assert paired["mean"] == pytest.approx(expected)
    if len(test) < 2:  # the tiny demo tests one subject: no interval, and it says why
        assert paired["ci95"] is None and "at least 2" in paired["reason"]
    else:
        assert paired["ci95"][0] <= paired["mean"] <= paired["ci95"][1]
    baselines = json.loads((evaluated / "results/mr2ct/baselines.json").read_text())
    assert baselines["intensity_map"]["kind"] == "paired" and baselines["intensity_map"]["n_subjects"] == 2
    assert (evaluated / "results/mr2ct/evaluation.png").stat().st_size > 20_000


def test_synthetic_ct_has_the_input_mr_geometry(evaluated):
    split = pd.read_csv(evaluated / "results/splits/mr.csv")
    for volume in split.loc[split.split == "test", "volume"]:
        info = json.loads((evaluated / f"results/volumes/mr/{volume}.json").read_text())
        # the info names the file by its reference (medcyclegan.privacy), resolved on this disk
        (original,) = referenced_paths(evaluated / f"results/demo/raw/mr/{volume}", info["ingest"]["file"])
        mr = nib.load(original)
        sct = nib.load(str(evaluated / f"results/mr2ct/sct/{volume}.nii.gz"))
        assert sct.shape == mr.shape and np.array_equal(sct.affine, mr.affine)
        assert nib.aff2axcodes(sct.affine) == nib.aff2axcodes(mr.affine)
        data = np.asarray(sct.dataobj)
        assert data.min() == -1024 and (data > 0).sum() > 10_000  # air around a head
        # the demo kept the true CT on the same grid: the sCT head lies on the true head
        gt = np.asarray(nib.load(str(evaluated / f"results/demo/ground_truth/{volume}_ct.nii.gz")).dataobj)
        head_sct, head_gt = data > -500, gt > -500
        assert (head_sct & head_gt).sum() / head_sct.sum() > 0.8


def test_bring_your_own_volume_target_and_nothing_left_to_do(evaluated):
    src = evaluated / "own" / "my scan.nii.gz"  # a space in the name: the output name is sanitised
    src.parent.mkdir()
    phantom(src, codes="LAS", shape=(120, 150, 110), zooms=(1.4, 1.1, 1.6), oblique_deg=10.0)
    write_config(evaluated, {"predict": {"mr2ct": [str(src)]}}, name="byo.yaml", base=evaluated / "config.yaml")
    snakemake(evaluated, "-j2", "predict", config="byo.yaml")
    out = nib.load(str(evaluated / "results/mr2ct/predict/my_scan.nii.gz"))
    assert out.shape == (120, 150, 110) and np.array_equal(out.affine, nib.load(str(src)).affine)
    # the model folder carries the settings its training slices were made with
    record = json.loads((evaluated / "results/mr2ct/model/preprocessing.json").read_text())
    assert record["modality"] == "mr" and record["intensity"] == {"mr_percentiles": [0.5, 99.5]}
    assert record["reject"]["min_head_volume_ml"] > 0 and "ct_series" not in record
    for target in ("results/mr2ct/metrics.json", "predict"):
        out = snakemake(evaluated, "-n", target, config="byo.yaml").stdout
        assert not scheduled_jobs(out), out[-2000:]
