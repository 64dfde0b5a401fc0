"""Whole-volume synthesis: putting translated windows back, test-time flip averaging (no TensorFlow)."""

import numpy as np

from medcyclegan.inference import synthesis
from medcyclegan.testing.phantoms import identity_generator


def test_canonical_volume_dropped_slices_and_outside_mask_are_background():
    windows = np.full((2, 4, 4), 100.0, np.float32)
    mask = np.ones((5, 6, 6), bool)
    mask[:, 0, :] = False
    vol = synthesis.canonical_volume(windows, [1, 3], (1, -1), (5, 6, 6), mask)
    assert vol.shape == (5, 6, 6)
    assert (vol[[0, 2, 4]] == -1024).all()  # slices the filter dropped
    assert (vol[1, 1:5, 0:3] == 100).all() and (vol[1, 0] == -1024).all()  # window rows 1..4, cols 0..2; masked row
    assert (vol[1, :, 3:] == -1024).all() and (vol[1, 5] == -1024).all()


def test_flip_average_mirrors_back_before_averaging():
    """A generator that adds a left-to-right ramp: averaging with the mirrored pass cancels the ramp."""
    width = 6
    ramp = np.linspace(-0.5, 0.5, width, dtype=np.float32)  # antisymmetric about the slice centre

    def ramp_generator(x, batch_size=8):
        return np.asarray(x, np.float32) + ramp[None, None, :, None]

    images = np.random.default_rng(0).uniform(-0.45, 0.45, (3, 4, width)).astype(np.float32)
    hu_range = (-1.0, 1.0)  # to_physical is then the identity
    single = synthesis.translate(ramp_generator, images, hu_range, batch_size=2, flip_average=False)
    averaged = synthesis.translate(ramp_generator, images, hu_range, batch_size=2, flip_average=True)
    np.testing.assert_allclose(single, images + ramp, atol=1e-6)
    np.testing.assert_allclose(averaged, images, atol=1e-6)  # ramp(c) + ramp(W-1-c) = 0
    # an asymmetric input is not mirrored in the output (a missing mirror-back would flip it)
    np.testing.assert_allclose(synthesis.translate(identity_generator, images, hu_range), images, atol=1e-6)
