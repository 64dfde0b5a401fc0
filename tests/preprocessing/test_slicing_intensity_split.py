import numpy as np
import pytest

from medcyclegan.preprocessing import intensity
from medcyclegan.preprocessing.slicing import centred_window, extract_window, place_window, slice_table
from medcyclegan.preprocessing.split import assign_split, n_test_subjects


def test_extract_window_crop_and_pad_roundtrip():
    img = np.arange(300 * 200, dtype=np.float32).reshape(300, 200)
    mask = np.zeros_like(img, bool)
    mask[100:220, 20:180] = True
    tl = centred_window(mask, 256)
    assert tl == (160 - 128, 100 - 128)
    win = extract_window(img, tl, 256, fill=-5)
    assert win.shape == (256, 256)
    # rows 32..287 of the image, cols -28..227: padding left and right
    assert win[0, 28] == img[32, 0]
    assert (win[:, :28] == -5).all() and (win[:, 228:] == -5).all()
    back = place_window(win, tl, img.shape, fill=0)
    assert np.array_equal(back[32:288, :], img[32:288, :])


def test_window_is_centred_on_head_in_3d():
    mask = np.zeros((3, 400, 400), bool)
    mask[1, 50:150, 300:380] = True
    r0, c0 = centred_window(mask, 256)
    assert (r0 + 128, c0 + 128) == (100, 340)


def test_slice_table_reasons():
    mask = np.zeros((4, 100, 100), bool)
    mask[1, :80, :80] = True  # 6400 mm2: kept
    mask[2, :50, :50] = True  # 2500 mm2: below the absolute minimum
    mask[3, :70, :70] = True  # 4900: above 3000 but below 0.8 x largest
    t = slice_table(mask, (1, 1, 1), min_head_area_mm2=3000, min_head_fraction_of_max=0.8)
    assert t.kept.tolist() == [False, True, False, False]
    assert t.reason[0] == "no head in slice"
    assert "min_head_area_mm2" in t.reason[2]
    assert "largest" in t.reason[3]
    deep = slice_table(mask, (10, 1, 1), min_head_area_mm2=0, min_head_fraction_of_max=0, max_depth_below_vertex_mm=15)
    assert deep.depth_below_vertex_mm.tolist() == [30, 20, 10, 0]
    assert deep.kept.tolist() == [False, False, True, True]
    assert "below the top of the head" in deep.reason[1]


def test_intensity_roundtrip_and_clipping():
    lo, hi = intensity.ct_window([-1024, 3000])
    hu = np.array([-2000, -1024, 0, 1000, 3000, 4000], np.float32)
    y = intensity.to_unit_range(hu, lo, hi)
    assert y.min() == -1 and y.max() == 1
    assert np.allclose(intensity.to_physical(y, lo, hi), np.clip(hu, lo, hi), atol=1e-3)
    lo, hi = intensity.percentile_window(np.arange(1001, dtype=float), [0.5, 99.5])
    assert (lo, hi) == pytest.approx((5.0, 995.0))
    with pytest.raises(ValueError):
        intensity.percentile_window(np.ones(10), [1, 99])


def test_split_is_by_subject_deterministic_and_stable():
    vols = [f"OAS3{i:04d}_MR_d0{j}00" for i in range(1, 21) for j in (1, 2)]
    t = assign_split(vols, seed=7, test_fraction=0.2)
    per_subject = t.groupby("subject").split.nunique()
    assert (per_subject == 1).all()  # both sessions of a subject on one side
    assert t[t.split == "test"].subject.nunique() == 4
    assert t.equals(assign_split(list(reversed(vols)), seed=7, test_fraction=0.2))
    assert not t.split.equals(assign_split(vols, seed=8, test_fraction=0.2).split)
    # adding a subject keeps everyone else's side unless they sit on the boundary
    t2 = assign_split(vols + ["OAS39999_MR_d0100"], seed=7, test_fraction=0.2)
    merged = t.merge(t2, on="volume")
    assert (merged.split_x != merged.split_y).sum() <= 2
    assert n_test_subjects(2, 0.2) == 1 and n_test_subjects(1, 0.5) == 0 and n_test_subjects(5, 0.99) == 4


def test_unit_range_stays_within_one_when_float32_rounds_the_window_edge_up():
    lo, hi = 766.0, 767.00004  # a float32 image clipped to hi holds 767.00006
    y = intensity.to_unit_range(np.array([0.0, 767.0, 800.0], np.float32), lo, hi)
    assert y.max() == 1.0 and y.min() == -1.0
