"""The checks every raw volume passes before anything is written (medcyclegan.ingest.volume)."""

import numpy as np
import pytest
import SimpleITK as sitk

from medcyclegan.errors import BadInput
from medcyclegan.ingest.volume import check_plausible


def image(values: np.ndarray, spacing=2.0) -> sitk.Image:
    img = sitk.GetImageFromArray(values.astype(np.float32))
    img.SetSpacing((spacing,) * 3)
    return img


def test_nan_or_infinite_values_are_refused_whatever_the_reader():
    head = np.random.default_rng(0).normal(100.0, 10.0, (60, 60, 60))
    assert check_plausible("mr", image(head), {}, {"min_extent_mm": 50.0}, where="t1.nii.gz") == []
    for bad in (np.nan, np.inf):
        broken = head.copy()
        broken[30, 30, 30] = bad
        with pytest.raises(BadInput, match="NaN or infinite"):
            check_plausible("mr", image(broken), {}, {"min_extent_mm": 50.0}, where="t1.nii.gz")
