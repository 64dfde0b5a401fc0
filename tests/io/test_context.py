"""2.5D context: the index rule (numpy and TensorFlow agree) and the per-volume TFRecord schema."""

import numpy as np
import pytest

from medcyclegan.io.context import context_indices, context_indices_tf, context_stacks
from medcyclegan.io.tfrecords import read_dataset, volume_example, write_tfrecord

# stored slices 10, 11, 12, 14, 15 (13 dropped by the useful-slice filter)
SLICES = [10, 11, 12, 14, 15]
#: positions for k = 1 and k = 2, written out by hand from the rule (edge repeat toward the centre)
EXPECTED = {
    0: [[0], [1], [2], [3], [4]],
    1: [[0, 0, 1], [0, 1, 2], [1, 2, 2], [3, 3, 4], [3, 4, 4]],
    2: [
        [0, 0, 0, 1, 2],  # 8, 9 missing -> 10
        [0, 0, 1, 2, 2],  # 9 -> 10; 13 missing -> 12
        [0, 1, 2, 2, 3],  # 13 -> 12; 14 present
        [2, 3, 3, 4, 4],  # 12 present; 13 -> 14; 16 -> 15
        [3, 3, 4, 4, 4],  # 13 -> 14; 16, 17 -> 15
    ],
}


@pytest.mark.parametrize("k", [0, 1, 2])
def test_context_indices_edges_and_gaps(k):
    np.testing.assert_array_equal(context_indices(SLICES, k), EXPECTED[k])
    np.testing.assert_array_equal(context_indices_tf(np.array(SLICES), k).numpy(), EXPECTED[k])


def test_context_indices_unsorted_and_tf_agree():
    rng = np.random.default_rng(0)
    s = rng.permutation(np.r_[3:9, 11, 12, 20])
    for k in (1, 3):
        expected = context_indices(s, k)
        assert (s[expected][:, k] == s).all()  # the centre is the slice itself
        np.testing.assert_array_equal(context_indices_tf(s, k).numpy(), expected)
    assert context_indices([], 2).shape == (0, 5)


def test_context_stacks_channel_order():
    images = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 2, 3), np.float32)
    stacks = context_stacks(images, SLICES, 1)
    assert stacks.shape == (5, 2, 3, 3)
    np.testing.assert_array_equal(stacks[:, 0, 0, :], np.array(EXPECTED[1], np.float32))


def _write(path):
    recs = []
    for v, slices in enumerate([SLICES, [3, 4]]):
        n = len(slices)
        images = (100 * v + np.arange(n, dtype=np.float32))[:, None, None] * np.ones((n, 4, 6), np.float32)
        meta = dict(subject=f"S{v}", volume=f"V{v}", slice=slices, modality="mr", spacing=[1, 1, 2])
        meta.update(z_mm=[2.0 * s for s in slices], crop_offset=[-1, 2], value_lo=0.0, value_hi=1000.0, unit="a.u.")
        recs.append(volume_example(images, meta))
    assert write_tfrecord(path, recs) == 2


@pytest.mark.parametrize("k", [0, 1])
def test_tfrecord_round_trip_per_slice(tmp_path, k):
    path = tmp_path / "mr.tfrecord"
    _write(path)
    elements = list(read_dataset(str(path), context_slices=k).as_numpy_iterator())
    assert [(e["volume"].decode(), int(e["slice"])) for e in elements] == [("V0", s) for s in SLICES] + [
        ("V1", 3),
        ("V1", 4),
    ]
    for e in elements[:5]:
        assert e["image"].shape == (4, 6, 2 * k + 1)
        assert e["subject"] == b"S0" and e["unit"] == b"a.u." and float(e["z_mm"]) == 2.0 * int(e["slice"])
        np.testing.assert_array_equal(e["crop_offset"], [-1, 2])
        np.testing.assert_allclose(e["spacing"], [1, 1, 2])
    channels = np.array([e["image"][0, 0, :] for e in elements[:5]])
    np.testing.assert_array_equal(channels, np.array(EXPECTED[k], np.float32))  # value = position in volume 0
    v1 = np.array([e["image"][0, 0, :] for e in elements[5:]])
    np.testing.assert_array_equal(
        v1, [[100.0] * (2 * k + 1), [101.0] * (2 * k + 1)] if k == 0 else [[100, 100, 101], [100, 101, 101]]
    )


def test_read_dataset_interleaves_volumes(tmp_path):
    path = tmp_path / "mr.tfrecord"
    _write(path)
    images = list(read_dataset(str(path), image_only=True, context_slices=1, cycle_length=2).as_numpy_iterator())
    centres = [float(x[0, 0, 1]) for x in images]
    assert centres == [0, 100, 1, 101, 2, 3, 4]  # one slice of each volume in turn
