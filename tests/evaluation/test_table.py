"""The metrics table over test subjects: rows, mean and population std, the JSON summary."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from medcyclegan.evaluation.table import metrics_table

METHODS = ("model", "mean_ct", "intensity_map", "intensity_map_unpaired")


def scores(mae, psnr, ssim):
    return {"mae_hu": mae, "psnr_db": psnr, "ssim": ssim, "n_voxels": 10}


def write_eval(path, volume, per_method, n_voxels=1000, fov=0.9):
    path.write_text(
        json.dumps(
            {
                "volume": volume,
                "n_voxels": n_voxels,
                "fov_coverage": fov,
                "mask": "head mask of the real CT, restricted to the synthesised slab",
                "scores": per_method,
            }
        )
    )
    return path


@pytest.fixture()
def evals(tmp_path):
    # model MAE 100, 120, 140; mean_ct always 300; intensity_map 90, 150, 150 (mean 130);
    # intensity_map_unpaired missing for subject b
    b = write_eval(
        tmp_path / "b.json",
        "OAS30002_MR_d0001",
        {
            "model": scores(120.0, 21.0, 0.7),
            "mean_ct": scores(300.0, 15.0, 0.5),
            "intensity_map": scores(150.0, 18.0, 0.6),
        },
        n_voxels=2000,
        fov=0.8,
    )
    a = write_eval(
        tmp_path / "a.json",
        "OAS30001_MR_d0001",
        {
            "model": scores(100.0, 20.0, 0.8),
            "mean_ct": scores(300.0, 15.0, 0.5),
            "intensity_map": scores(90.0, 22.0, 0.75),
            "intensity_map_unpaired": scores(400.0, 10.0, 0.3),
        },
    )
    c = write_eval(
        tmp_path / "c.json",
        "OAS30003_MR_d0001",
        {
            "model": scores(140.0, 22.0, 0.9),
            "mean_ct": scores(300.0, 15.0, 0.5),
            "intensity_map": scores(150.0, 20.0, 0.65),
            "intensity_map_unpaired": scores(500.0, 12.0, 0.4),
        },
    )
    rejected = tmp_path / "d.json"
    rejected.write_text(json.dumps({"volume": "OAS30004_MR_d0001", "status": "rejected"}))
    return [c, rejected, a, b]


def test_csv_has_one_row_per_subject_then_mean_and_population_std(tmp_path, evals):
    metrics_table(evals, tmp_path / "metrics.csv", tmp_path / "metrics.json", task="mr2ct")
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert list(table.volume) == ["OAS30001_MR_d0001", "OAS30002_MR_d0001", "OAS30003_MR_d0001", "mean", "std"]
    assert list(table.columns[:3]) == ["volume", "n_voxels", "fov_coverage"]
    assert list(table.columns[3:]) == [f"{m}_{k}" for m in METHODS for k in ("mae_hu", "psnr_db", "ssim")]
    mean, std = table.iloc[3], table.iloc[4]
    assert mean.model_mae_hu == pytest.approx(120.0)
    assert std.model_mae_hu == pytest.approx(math.sqrt((20.0**2 + 0.0 + 20.0**2) / 3))  # ddof=0
    assert mean.n_voxels == pytest.approx(4000 / 3) and mean.fov_coverage == pytest.approx((0.9 + 0.8 + 0.9) / 3)
    assert std.mean_ct_mae_hu == 0.0
    # a method missing for a subject is empty in its row and left out of the mean
    assert np.isnan(table.iloc[1].intensity_map_unpaired_mae_hu)
    assert mean.intensity_map_unpaired_mae_hu == pytest.approx(450.0)
    assert std.intensity_map_unpaired_mae_hu == pytest.approx(50.0)


def test_json_summary_beats_and_rejected(tmp_path, evals):
    result = metrics_table(
        evals, tmp_path / "m.csv", tmp_path / "m.json", task="mr2ct", model_manifest={"step": 4000, "task": "mr2ct"}
    )
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads(json.dumps(result))
    assert result["task"] == "mr2ct" and result["model_step"] == 4000 and result["n_subjects"] == 3
    assert result["rejected"] == ["OAS30004_MR_d0001"]
    summary = result["summary"]
    assert summary["model"]["psnr_db"] == {"mean": pytest.approx(21.0), "std": pytest.approx(math.sqrt(2 / 3))}
    assert summary["intensity_map"]["mae_hu"]["mean"] == pytest.approx(130.0)
    assert summary["intensity_map"]["ssim"]["std"] == pytest.approx(np.std([0.75, 0.6, 0.65]))
    # model mean MAE 120 against 300, 130 and 450
    assert result["model_beats_baseline_mae"] == {
        "mean_ct": True,
        "intensity_map": True,
        "intensity_map_unpaired": True,
    }
    assert [s["volume"] for s in result["subjects"]] == [
        "OAS30001_MR_d0001",
        "OAS30002_MR_d0001",
        "OAS30003_MR_d0001",
    ]
    assert set(result["definitions"]["methods"]) == set(METHODS)


def test_a_baseline_that_wins_is_reported(tmp_path):
    one = write_eval(
        tmp_path / "a.json", "V1", {"model": scores(200.0, 18.0, 0.6), "mean_ct": scores(150.0, 19.0, 0.7)}
    )
    result = metrics_table([one], tmp_path / "m.csv", tmp_path / "m.json", task="pet2ct")
    assert result["model_beats_baseline_mae"] == {"mean_ct": False}  # baselines without scores are left out
    assert result["summary"]["intensity_map"]["mae_hu"] == {"mean": None, "std": None}
    assert result["model_step"] is None


def test_no_scored_subject_gives_an_empty_table(tmp_path):
    rejected = tmp_path / "r.json"
    rejected.write_text(json.dumps({"volume": "V9", "status": "rejected"}))
    result = metrics_table([rejected], tmp_path / "m.csv", tmp_path / "m.json", task="mr2ct")
    assert (tmp_path / "m.csv").read_text().strip() == "volume"
    assert result["n_subjects"] == 0 and result["rejected"] == ["V9"] and result["subjects"] == []
    assert result["model_beats_baseline_mae"] is None
    assert all(v == {"mean": None, "std": None} for m in result["summary"].values() for v in m.values())


def test_paired_differences_bootstrap_intervals_and_ratios(tmp_path, evals):
    result = metrics_table(evals, tmp_path / "m.csv", tmp_path / "m.json", task="mr2ct")
    assert result["split"] == "test"
    assert result["bootstrap"] == {"resamples": 10000, "seed": 0, "level": 0.95}
    diff = result["model_minus_baseline"]
    assert set(diff) == set(METHODS[1:]) and all(set(d) == {"mae_hu", "psnr_db", "ssim"} for d in diff.values())
    # model MAE 100, 120, 140 - mean_ct 300: -200, -180, -160; the bootstrap means of 3 subjects
    # are -200 + 20 (i + j + k) / 3, whose 2.5 and 97.5 percentiles are the extremes (1/27 = 3.7% each)
    assert diff["mean_ct"]["mae_hu"] == {"mean": pytest.approx(-180.0), "ci95": [-200.0, -160.0], "n_subjects": 3}
    # intensity_map 90, 150, 150: 10, -30, -10 -> the interval reaches +10: not a clear win
    assert diff["intensity_map"]["mae_hu"]["mean"] == pytest.approx(-10.0)
    assert diff["intensity_map"]["mae_hu"]["ci95"] == pytest.approx([-30.0, 10.0])
    # unpaired: subject b has no score, a and c give -300 and -360
    assert diff["intensity_map_unpaired"]["mae_hu"]["n_subjects"] == 2
    assert diff["intensity_map_unpaired"]["mae_hu"]["ci95"] == pytest.approx([-360.0, -300.0])
    assert diff["mean_ct"]["psnr_db"]["mean"] == pytest.approx(6.0)  # 21 - 15 on every subject
    assert diff["mean_ct"]["psnr_db"]["ci95"] == pytest.approx([5.0, 7.0])
    assert result["model_beats_baseline_mae_ci"] == {
        "mean_ct": True,
        "intensity_map": False,
        "intensity_map_unpaired": True,
    }
    assert result["model_to_baseline_mae_ratio"] == pytest.approx(
        {"mean_ct": 120 / 300, "intensity_map": 120 / 130, "intensity_map_unpaired": 120 / 450}
    )
    again = metrics_table(evals, tmp_path / "m2.csv", tmp_path / "m2.json", task="mr2ct", split="validation")
    assert again["split"] == "validation" and again["model_minus_baseline"] == diff  # seeded


def test_one_subject_has_no_interval(tmp_path):
    one = write_eval(
        tmp_path / "a.json", "V1", {"model": scores(200.0, 18.0, 0.6), "mean_ct": scores(150.0, 19.0, 0.7)}
    )
    result = metrics_table(
        [one], tmp_path / "m.csv", tmp_path / "m.json", task="pet2ct", bootstrap_resamples=50, bootstrap_seed=3
    )
    mae = result["model_minus_baseline"]["mean_ct"]["mae_hu"]
    assert mae["mean"] == 50.0 and mae["ci95"] is None and mae["n_subjects"] == 1 and "at least 2" in mae["reason"]
    assert result["model_minus_baseline"]["intensity_map"]["mae_hu"]["n_subjects"] == 0
    assert result["model_beats_baseline_mae_ci"] == {"mean_ct": None}
    assert result["model_to_baseline_mae_ratio"] == {"mean_ct": pytest.approx(200 / 150)}
    assert result["bootstrap"] == {"resamples": 50, "seed": 3, "level": 0.95}
