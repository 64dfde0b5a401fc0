"""Slice evaluation of an exported generator against paired ground truth, on tiny phantoms."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from medcyclegan.evaluation import slice_eval  # noqa: E402
from medcyclegan.testing.phantoms import phantom, write_domain  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfr")
    return {
        "mr_test": write_domain(d / "mr_test.tfrecord", "mr", n_volumes=1, n_slices=3),
        "ct": write_domain(d / "ct_train.tfrecord", "ct"),
    }


def test_mae_in_mask_by_hand():
    pred = np.array([[0.0, 100.0], [50.0, -20.0]])
    true = np.array([[10.0, 100.0], [0.0, 1000.0]])
    mask = np.array([[True, True], [True, False]])
    mae, n = slice_eval.mae_in_mask(pred, true, mask)
    assert n == 3 and mae == pytest.approx((10 + 0 + 50) / 3)
    assert np.isnan(slice_eval.mae_in_mask(pred, true, np.zeros_like(mask))[0])
    np.testing.assert_allclose(slice_eval.to_physical(np.array([-1.0, 0.0, 1.0]), -1024, 3000), [-1024, 988, 3000])


def test_evaluate_against_ground_truth(tmp_path, data):
    # ground truth for volume mrV0: the CT phantom of the same slices, in HU
    lo, hi = -1024.0, 3000.0
    idx = np.array([10, 11, 12, 99])  # 99 is not in the TFRecord: skipped and counted
    hu = np.stack([slice_eval.to_physical(phantom("ct", k), lo, hi) for k in range(4)]).astype(np.float32)
    mask = np.stack([phantom("ct", k) > -1 for k in range(4)])
    np.savez(tmp_path / "mrV0.npz", hu=hu, mask=mask, slice=idx)

    def perfect(x, batch_size=8):  # knows the answer: returns the CT phantom for each MR phantom
        return np.where(x > -1, np.where(x < -0.5, 0.0, -0.45), -1.0).astype(np.float32)

    r = slice_eval.evaluate(perfect, (lo, hi), data["mr_test"], data["ct"], [tmp_path / "mrV0.npz"])
    assert r["n_volumes"] == 1 and r["n_slices"] == 3 and r["volumes"][0]["n_slices_missing"] == 1
    rows = r["volumes"][0]["per_slice"]["rows"]
    assert [row[0] for row in rows] == [10, 11, 12] and all(row[2] == 0.0 for row in rows)
    assert r["mae_hu"] == pytest.approx(0.0, abs=1e-3)
    assert r["baseline_mae_hu"] > 100 and r["model_beats_baseline"] is True
    # baseline value: mean head HU of the CT training phantoms
    head = [slice_eval.to_physical(phantom("ct", k)[phantom("ct", k) > -1 + 1e-3], lo, hi) for k in range(8)]
    assert r["baseline_value_hu"] == pytest.approx(np.concatenate(head).mean(), rel=1e-6)
    empty = slice_eval.evaluate(perfect, (lo, hi), data["mr_test"], data["ct"], [])
    assert empty["mae_hu"] is None and "no ground truth" in empty["note"]
