"""The real ``tensorboard`` command shows what the training's own summary writers write."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from medcyclegan.testing.tensorboard_server import serve, tensorboard_executable

pytestmark = pytest.mark.skipif(
    tensorboard_executable() is None, reason="no tensorboard executable in this venv or on PATH"
)

STEPS = (2, 4, 6)
IMAGE_TAG = "mr_to_ct_and_back/x"


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])


def _write_events(logdir) -> None:
    tf = pytest.importorskip("tensorflow")
    from medcyclegan.training.tensorboard import tb_images, write_progress

    writer = tf.summary.create_file_writer(str(logdir))
    for s in STEPS:
        write_progress(writer, {"g_total": 1.5 + s, "d_total": 0.7}, lr=2e-4, steps_per_s=3.0, step=s)
    images = np.linspace(0, 1, 2 * 16 * 32, dtype=np.float32).reshape(2, 16, 32, 1)
    with writer.as_default():
        tb_images(IMAGE_TAG, images, step=STEPS[-1])
    writer.close()


def test_scalars_and_images_are_listed_and_served(tmp_path):
    _write_events(tmp_path)
    with serve(tmp_path, timeout_s=60) as tb:
        tb.wait_for_tags(scalars=["loss/g_total", "loss/d_total", "learning_rate"], images=[IMAGE_TAG], timeout_s=20)
        (run,) = tb.scalar_tags()
        assert {"loss/g_total", "loss/d_total", "learning_rate", "steps_per_second"} <= set(tb.scalar_tags()[run])
        g_total = tb.scalars(run, "loss/g_total")
        assert [step for step, _ in g_total] == list(STEPS)
        np.testing.assert_allclose([v for _, v in g_total], [1.5 + s for s in STEPS], rtol=1e-6)
        np.testing.assert_allclose([v for _, v in tb.scalars(run, "learning_rate")], [2e-4] * 3, rtol=1e-6)
        assert tb.image_tags() == {run: [IMAGE_TAG]}
        assert tb.image_steps(run, IMAGE_TAG) == [STEPS[-1]]
        assert _png_size(tb.image(run, IMAGE_TAG)) == (32, 16)
        assert _png_size(tb.image(run, IMAGE_TAG, sample=1)) == (32, 16)
        process = tb.process
    assert process.poll() is not None, "tensorboard still running after serve() exited"


def test_empty_logdir_lists_nothing_and_a_missing_tag_times_out(tmp_path):
    with serve(tmp_path, timeout_s=60) as tb:
        assert tb.scalar_tags() == {} and tb.image_tags() == {}
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="loss/absent"):
            tb.wait_for_tags(scalars=["loss/absent"], timeout_s=1)
        assert time.monotonic() - t0 < 10
        process = tb.process
    assert process.poll() is not None
