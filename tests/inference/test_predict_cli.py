"""``python -m medcyclegan predict`` on a NIfTI that is not from the demo (own shape, spacing, orientation)."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import yaml

from medcyclegan.testing.phantoms import HEAD_RAS, phantom
from medcyclegan.testing.workflow import ROOT


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory):
    """A tiny real SavedModel exported the way training exports, with the preprocessing record."""
    import keras

    from medcyclegan.config.settings import modality_settings
    from medcyclegan.config.validation import validate_config
    from medcyclegan.inference.export import export_models

    keras.utils.set_random_seed(0)
    model_dir = tmp_path_factory.mktemp("model") / "model"

    def tiny():
        inp = keras.Input((64, 64, 1))
        return keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same", activation="tanh")(inp))

    cfg = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    export_models(
        tiny(),
        tiny(),
        model_dir,
        "mr2ct",
        image_size=64,
        step=0,
        ct_value_range=(-1024.0, 3000.0),
        preprocessing=modality_settings(cfg, "mr"),
    )
    return model_dir


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "medcyclegan", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def test_predict_cli_on_a_foreign_nifti(tmp_path, exported_model):
    src = tmp_path / "someone_else_t1.nii"  # uncompressed, oblique, anisotropic, its own axis order
    phantom(src, codes="SAL", shape=(110, 150, 124), zooms=(1.5, 0.9, 1.2), oblique_deg=8.0)
    out = tmp_path / "out" / "sct.nii.gz"
    proc = run_cli("--model", exported_model, "--input", src, "--output", out, "--threads", 1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["task"] == "mr2ct" and info["n_slices_translated"] > 50
    sct, mr = nib.load(str(out)), nib.load(str(src))
    assert sct.shape == mr.shape and np.array_equal(sct.affine, mr.affine)
    data = np.asarray(sct.dataobj)
    assert data.dtype == np.int16 and data.min() >= -1024 and data.max() <= 3000
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in mr.shape], indexing="ij"), -1).reshape(-1, 3)
    ras = ijk @ mr.affine[:3, :3].T + mr.affine[:3, 3]
    d = np.sqrt((((ras - HEAD_RAS) / np.array([70.0, 88.0, 75.0])) ** 2).sum(1)).reshape(mr.shape)
    assert (data[d > 1.1] == -1024).all()  # air well outside the head (the mask is smoothed at its edge)
    assert (data[d < 0.8] != -1024).mean() > 0.5  # the generator's values inside it
    assert info["flip_average"] is True  # the workflow's default test-time augmentation
    once = tmp_path / "out" / "sct_once.nii.gz"
    proc = run_cli("--model", exported_model, "--input", src, "--output", once, "--threads", 1, "--no-flip-average")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["flip_average"] is False
    single = np.asarray(nib.load(str(once)).dataobj)
    assert (single != data).any()  # a random 3x3 kernel is not mirror-symmetric: the two passes differ


def test_predict_cli_errors_are_one_line(tmp_path, exported_model):
    proc = run_cli("--model", exported_model, "--input", tmp_path / "missing.nii.gz", "--output", tmp_path / "o.nii.gz")
    assert proc.returncode == 2 and "error:" in proc.stderr and "missing.nii.gz" in proc.stderr
    bare = tmp_path / "bare_model"
    bare.mkdir()
    (bare / "manifest.json").write_text((exported_model / "manifest.json").read_text())
    src = tmp_path / "mr.nii.gz"
    phantom(src, marker=False)
    proc = run_cli("--model", bare, "--input", src, "--output", tmp_path / "o.nii.gz")
    assert proc.returncode == 2 and "preprocessing" in proc.stderr


def test_missing_tensorflow_says_which_extra_to_install(monkeypatch):
    from medcyclegan.inference.runtime import configure_tensorflow

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    with pytest.raises(ImportError, match=r"\.\[cpu\].*\.\[gpu\]"):
        configure_tensorflow(1)


def test_extras_install_exactly_one_tensorflow_build():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("tensorflow")]
    extras = project["optional-dependencies"]
    assert any(d.startswith("tensorflow-cpu") for d in extras["cpu"])
    assert any(d.startswith("tensorflow[and-cuda]") and "linux" in d for d in extras["gpu"])
    assert not [d for d in extras["test"] if d.startswith("tensorflow")]
