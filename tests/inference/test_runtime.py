"""Thread pools of a TensorFlow job: cores shared between side-by-side ops."""

import pytest

from medcyclegan.inference.runtime import thread_pools


@pytest.mark.parametrize(
    ("threads", "concurrent", "expected"),
    [
        (1, 1, (1, 1)),
        (2, 1, (2, 2)),  # a chain of ops: every core inside each op
        (8, 1, (8, 2)),
        (2, 2, (1, 2)),  # two branches on two cores: one core each, side by side
        (8, 2, (4, 2)),
        (1, 2, (1, 1)),  # one core cannot run two ops at once
        (3, 2, (1, 2)),
    ],
)
def test_thread_pools_share_the_cores(threads, concurrent, expected):
    intra, inter = thread_pools(threads, concurrent)
    assert (intra, inter) == expected
    if concurrent > 1:  # side-by-side ops never ask for more threads than cores
        assert intra * inter <= threads
