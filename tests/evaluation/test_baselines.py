"""The two intensity baselines on tiny slice stacks whose answers are known by construction."""

import numpy as np
import pytest

from medcyclegan.evaluation import baselines

LO, HI = -1024.0, 3000.0  # CT stacks: [-1, 1] -> HU = LO + (v + 1) / 2 * (HI - LO)


def stack(path, images, volume, **extra):
    """A per-volume slice stack as preprocessing writes it (only the arrays the baselines read)."""
    images = np.asarray(images, np.float32)
    np.savez(
        path,
        images=images,
        slice=np.arange(len(images)),
        volume=np.array(volume),
        value_lo=np.array(LO),
        value_hi=np.array(HI),
        **extra,
    )
    return path


def rejected(path, volume):
    """A rejection placeholder: no slice, ``rejected`` set."""
    np.savez(
        path,
        images=np.zeros((0, 2, 2), np.float32),
        slice=np.zeros(0, np.int64),
        volume=np.array(volume),
        rejected=np.array(True),
        reject_reason=np.array("bad input"),
    )
    return path


def ground_truth(path, volume, hu, mask):
    hu = np.asarray(hu, np.float32)
    np.savez(path, hu=hu, mask=np.asarray(mask, bool), slice=np.arange(len(hu)), volume=np.array(volume))
    return path


@pytest.fixture()
def ct_stacks(tmp_path):
    # head pixels: 0 -> 988 HU, 0.5 -> 1994 HU, -0.5 -> -18 HU; -1 is background, never counted
    a = stack(tmp_path / "ctA.npz", [[[0.0, 0.5], [-1.0, -1.0]]], "ctA")
    b = stack(tmp_path / "ctB.npz", [[[-0.5, -1.0], [-1.0, -1.0]], [[0.0, -1.0], [-1.0, -1.0]]], "ctB")
    return [a, b, rejected(tmp_path / "ctC.npz", "ctC")]


def test_mean_ct_is_the_mean_hu_of_the_ct_head_pixels(tmp_path, ct_stacks):
    src = [stack(tmp_path / "mrA.npz", [[[0.2, 0.4], [-1.0, 0.6]]], "mrA")]
    fitted = baselines.fit_baselines(src, ct_stacks)
    assert fitted["mean_ct"]["hu"] == pytest.approx((988.0 + 1994.0 - 18.0 + 988.0) / 4)
    assert fitted["mean_ct"]["n_pixels"] == 4  # the placeholder and the background add nothing


def test_head_pixels_are_those_above_background_by_head_eps():
    images = np.array([-1.0, -1.0 + 5e-4, -1.0 + 2e-3, 0.3], np.float32)
    np.testing.assert_array_equal(baselines.head_pixels(images), images[2:])


def test_without_ground_truth_the_map_is_histogram_matching(tmp_path, ct_stacks):
    # every head voxel of the inputs has the same value: all quantile knots share one x and
    # merge into one knot whose HU is the mean of the CT's HU quantiles
    src = [
        stack(tmp_path / "mrA.npz", [[[0.2, 0.2], [-1.0, 0.2]]], "mrA"),
        stack(tmp_path / "mrB.npz", [[[0.2, -1.0], [-1.0, -1.0]]], "mrB"),
        rejected(tmp_path / "mrC.npz", "mrC"),
    ]
    fitted = baselines.fit_baselines(src, ct_stacks)
    ct_hu = np.array([988.0, 1994.0, -18.0, 988.0])
    expected_hu = np.mean([np.percentile(ct_hu, q) for q in np.linspace(0, 100, 101)])
    unpaired = fitted["intensity_map_unpaired"]
    assert unpaired["kind"] == "quantile" and unpaired["x"] == pytest.approx([0.2])
    assert unpaired["hu"] == pytest.approx([expected_hu])
    assert unpaired["n_voxels"] == 4 and unpaired["n_subjects"] == 3  # n_subjects counts the input files
    assert {k: v for k, v in fitted["intensity_map"].items() if k != "doc"} == {
        k: v for k, v in unpaired.items() if k != "doc"
    }


def test_quantile_map_sends_input_quantiles_to_ct_quantiles(tmp_path):
    ct = [stack(tmp_path / "ct.npz", [np.linspace(-0.9, 0.9, 101).reshape(1, 101)], "ct")]
    src = [stack(tmp_path / "mr.npz", [np.linspace(0.0, 1.0, 101).reshape(1, 101)], "mr")]
    fitted = baselines.fit_baselines(src, ct)["intensity_map"]
    # 101 evenly spaced values: the q-th percentile is the q-th value, for inputs and CT alike
    np.testing.assert_allclose(fitted["x"], np.linspace(0.0, 1.0, 101), atol=1e-6)
    np.testing.assert_allclose(fitted["hu"], LO + (np.linspace(-0.9, 0.9, 101) + 1) / 2 * (HI - LO), atol=1e-3)
    # so between the knots the map is the straight line from (0, -822.8 HU) to (1, 2798.8 HU)...
    mapped = baselines.apply_map(fitted, np.array([0.25, 0.5]))
    np.testing.assert_allclose(mapped, LO + (np.array([-0.45, 0.0]) + 1) / 2 * (HI - LO), atol=0.05)
    # ... and constant beyond it
    assert baselines.apply_map(fitted, np.array([-0.5, 2.0])) == pytest.approx([fitted["hu"][0], fitted["hu"][-1]])


def test_paired_map_learns_a_monotone_relation_from_the_ground_truth(tmp_path, ct_stacks):
    x = np.linspace(-0.8, 0.9, 64, dtype=np.float32).reshape(1, 8, 8)
    head = np.ones_like(x, bool)
    head[0, 0, :4] = False  # voxels outside the true head mask are not paired
    src = [
        stack(tmp_path / "mrA.npz", x, "mrA"),
        stack(tmp_path / "mrB.npz", -x, "mrB"),  # no ground truth: unpaired map only
        rejected(tmp_path / "mrC.npz", "mrC"),
    ]
    gt = [
        ground_truth(tmp_path / "gtA.npz", "mrA", 1000.0 * x, head),
        ground_truth(tmp_path / "gtC.npz", "mrC", [], []),
    ]
    fitted = baselines.fit_baselines(src, ct_stacks, gt, n_bins=6)
    paired = fitted["intensity_map"]
    assert paired["kind"] == "paired" and paired["n_subjects"] == 1 and paired["n_voxels"] == 60
    assert len(paired["x"]) == 6
    # the median of a monotone function of x is that function of the median: knots lie on hu = 1000 x
    np.testing.assert_allclose(paired["hu"], 1000.0 * np.array(paired["x"]), rtol=1e-5)
    assert np.all(np.diff(paired["x"]) > 0)
    # the unpaired map still sees every head voxel of every input (both volumes)
    assert fitted["intensity_map_unpaired"]["n_voxels"] == 128


def test_paired_fit_refuses_ground_truth_of_other_slices(tmp_path, ct_stacks):
    src = [stack(tmp_path / "mrA.npz", np.zeros((2, 2, 2)), "mrA")]
    gt = tmp_path / "gtA.npz"
    np.savez(gt, hu=np.zeros((2, 2, 2)), mask=np.ones((2, 2, 2), bool), slice=np.array([5, 6]), volume=np.array("mrA"))
    with pytest.raises(ValueError, match="ground-truth slices do not match"):
        baselines.fit_baselines(src, ct_stacks, [gt])


def test_no_ct_head_pixels_or_no_inputs_is_an_error(tmp_path, ct_stacks):
    empty_ct = [stack(tmp_path / "ct0.npz", -np.ones((1, 2, 2)), "ct0")]
    src = [stack(tmp_path / "mrA.npz", np.zeros((1, 2, 2)), "mrA")]
    with pytest.raises(ValueError, match="no head pixels in the CT training slices"):
        baselines.fit_baselines(src, empty_ct)
    with pytest.raises(ValueError, match="no training input voxels"):
        baselines.fit_baselines([rejected(tmp_path / "mrR.npz", "mrR")], ct_stacks)


def test_fit_paired_bins_by_hand():
    # 6 voxels, 3 equal-count bins: (1, 2) (3, 4) (5, 6); medians 1.5, 3.5, 5.5 and their HU
    fitted = baselines.fit_paired([6, 1, 3, 2, 5, 4], [60, 10, 30, 20, 50, 45], n_bins=3)
    assert fitted["x"] == [1.5, 3.5, 5.5] and fitted["hu"] == [15.0, 37.5, 55.0] and fitted["n_voxels"] == 6
    with pytest.raises(ValueError, match="too few"):
        baselines.fit_paired([1, 2], [3, 4], n_bins=3)


def test_baseline_windows_fill_the_head_and_leave_background_outside():
    fitted = {
        "mean_ct": {"hu": 40.0},
        "intensity_map": {"x": [0.0, 1.0], "hu": [0.0, 1000.0]},
        "intensity_map_unpaired": {"x": [0.0, 1.0], "hu": [-500.0, 500.0]},
    }
    images = np.array([[[0.25, 0.5], [0.75, -1.0]]], np.float32)
    head = np.array([[[True, True], [False, False]]])
    out = baselines.baseline_windows(fitted, images, head)
    np.testing.assert_array_equal(out["mean_ct"], [[[40.0, 40.0], [-1024.0, -1024.0]]])
    np.testing.assert_array_equal(out["intensity_map"], [[[250.0, 500.0], [-1024.0, -1024.0]]])
    np.testing.assert_array_equal(out["intensity_map_unpaired"], [[[-250.0, 0.0], [-1024.0, -1024.0]]])
    assert all(v.dtype == np.float32 for v in out.values())
