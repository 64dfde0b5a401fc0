"""Slice evaluation of an exported generator against paired ground truth, on tiny phantoms."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from medcyclegan.evaluation import slice_eval  # noqa: E402
from medcyclegan.preprocessing.intensity import to_physical  # noqa: E402
from medcyclegan.testing.slice_phantoms import phantom, write_domain  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfr")
    return {
        "mr_test": write_domain(d / "mr_test.tfrecord", "mr", n_volumes=1, n_slices=3),
        "ct": write_domain(d / "ct_train.tfrecord", "ct"),
    }


def test_to_physical_in_float64_for_scores():
    hu = to_physical(np.array([-1.0, 0.0, 1.0], np.float32), -1024.0, 3000.0, np.float64)
    assert hu.dtype == np.float64
    np.testing.assert_array_equal(hu, [-1024.0, 988.0, 3000.0])
    # float64 keeps what float32 rounds away (scores are sums over many pixels)
    x = np.float32(0.1)
    assert to_physical(x, -1024.0, 3000.0, np.float64) == -1024.0 + (float(x) + 1.0) / 2.0 * 4024.0


def test_evaluate_against_ground_truth(tmp_path, data):
    # ground truth for volume mrV0: the CT phantom of the same slices, in HU
    lo, hi = -1024.0, 3000.0
    idx = np.array([10, 11, 12, 99])  # 99 is not in the TFRecord: skipped and counted
    hu = np.stack([to_physical(phantom("ct", k), lo, hi, np.float64) for k in range(4)]).astype(np.float32)
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
    head = [to_physical(phantom("ct", k)[phantom("ct", k) > -1 + 1e-3], lo, hi, np.float64) for k in range(8)]
    assert r["baseline_value_hu"] == pytest.approx(np.concatenate(head).mean(), rel=1e-6)
    empty = slice_eval.evaluate(perfect, (lo, hi), data["mr_test"], data["ct"], [])
    assert empty["mae_hu"] is None and "no ground truth" in empty["note"]
