"""Example figure: deterministic slice choice, layout, PNG size, end to end from an exported model."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from medcyclegan.figures import examples_grid  # noqa: E402


def test_select_slices_is_deterministic_and_central():
    vols = {"b": list(range(100, 140)), "a": list(range(0, 21)), "empty": []}
    picks = examples_grid.select_slices(vols, 4, slice_range=(0.25, 0.75))
    assert picks == examples_grid.select_slices(dict(reversed(list(vols.items()))), 4, (0.75, 0.25))
    assert [v for v, _ in picks] == ["a", "b", "a", "b"]  # round-robin over sorted volumes
    a = [s for v, s in picks if v == "a"]
    b = [s for v, s in picks if v == "b"]
    assert a == sorted(a) and len(set(a)) == 2 and all(5 <= s <= 15 for s in a)
    assert len(set(b)) == 2 and all(110 <= s <= 130 for s in b)
    # more columns than slices: returns what exists, all distinct
    few = examples_grid.select_slices({"x": [1, 2]}, 5)
    assert sorted(few) == [("x", 1), ("x", 2)]
    # a range narrower than the columns: nearest unused slices, still sorted
    assert examples_grid.select_slices({"x": list(range(10))}, 3, (0.9, 1.0)) == [("x", 7), ("x", 8), ("x", 9)]
    assert examples_grid.select_slices({}, 3) == []


@pytest.mark.parametrize("with_gt", [False, True])
def test_grid_layout_and_png_size(tmp_path, with_gt):
    import matplotlib.image as mpimg

    rng = np.random.default_rng(0)
    n = 4
    rows = 3 if with_gt else 2
    real_ct = [(rng.uniform(-1000, 1500, (64, 64)), f"CT{r}") for r in range(rows)]
    inputs = [(rng.uniform(-1, 1, (64, 64)), f"MR{c}") for c in range(n)]
    generated = [rng.uniform(-1000, 1500, (64, 64)) for _ in range(n)]
    gt = None
    if with_gt:
        gt = [(g + 10.0, np.ones((64, 64), bool), "true CT") for g in generated[:3]] + [None]
    out = tmp_path / "examples.png"
    fig = examples_grid.make_grid(
        real_ct, inputs, generated, out, src="mr", ground_truth=gt, hu_window=(-200, 1500), title="t", dpi=50
    )
    image_axes = [ax for ax in fig.axes if ax.images]
    colorbars = [ax for ax in fig.axes if not ax.images and ax.get_ylabel()]  # the two colourbar axes
    assert len(colorbars) == 2
    assert len(image_axes) == rows + n * 2 + (3 if with_gt else 0)
    w, h = fig.get_size_inches()
    png = mpimg.imread(out)
    assert abs(png.shape[0] - h * 50) <= 1 and abs(png.shape[1] - w * 50) <= 1
    # real CT in the first (left) column, inputs above generated, CT panels in the HU window
    left = sorted(ax.get_position().x0 for ax in image_axes)[0]
    ct_axes = [ax for ax in image_axes if abs(ax.get_position().x0 - left) < 1e-6]
    assert len(ct_axes) == rows
    for ax in image_axes:
        assert ax.images[0].get_clim() in ((-200, 1500), (-1, 1))
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any("input MR" in s for s in labels) and any("generated CT" in s for s in labels)
    assert any("HU" in ax.get_ylabel() for ax in colorbars)
    if with_gt:
        titles = [ax.get_title() for ax in image_axes]
        assert sum("MAE 10 HU" in t for t in titles) == 3


@pytest.mark.slow
def test_examples_grid_from_exported_model(tmp_path):
    """End to end on tiny TFRecords with an (untrained) exported model and one ground-truth file."""
    import matplotlib.image as mpimg

    from medcyclegan.config.tasks import task_config
    from medcyclegan.gan import models
    from medcyclegan.inference.export import export_models
    from medcyclegan.testing.slice_phantoms import write_domain

    mr_test = write_domain(tmp_path / "mr_test.tfrecord", "mr", n_volumes=2, n_slices=5)
    ct_test = write_domain(tmp_path / "ct_test.tfrecord", "ct", n_volumes=2, n_slices=5)
    g = models.casnet(32, n_unets=1, depth=3, base_filters=4, norm="instance")
    manifest = export_models(g, g, tmp_path / "model", "mr2ct", 32, 7, (-1024, 3000))
    assert json.loads((tmp_path / "model" / "manifest.json").read_text()) == manifest
    np.savez(
        tmp_path / "mrV0.npz",
        hu=np.zeros((5, 32, 32), np.float32),
        mask=np.ones((5, 32, 32), bool),
        slice=np.arange(10, 15),
    )
    cfg = task_config({}, "mr2ct")["examples"]
    out = tmp_path / "mr2ct" / "examples.png"
    shown = examples_grid.examples_grid(
        tmp_path / "model", mr_test, ct_test, out, {**cfg, "dpi": 50}, [tmp_path / "mrV0.npz"]
    )
    assert shown["rows"] == 3 and len(shown["inputs"]) == 4 and len(shown["real_ct"]) == 3
    assert {v for v, _ in shown["inputs"]} == {"mrV0", "mrV1"}
    assert mpimg.imread(out).shape[2] in (3, 4)
    again = examples_grid.examples_grid(
        tmp_path / "model", mr_test, ct_test, tmp_path / "b.png", {**cfg, "dpi": 50}, []
    )
    assert again["inputs"] == shown["inputs"] and again["rows"] == 2
