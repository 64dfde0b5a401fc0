"""Cheap checks behind the benchmarks (the benchmark smoke runs themselves are in .ci/run):
the faster head-mask morphology gives exactly the whole-array results, and the DAG benchmark
reads Snakemake's job table and sees every file a command opens, and the planning benchmark
recognises a TensorFlow-family import."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medcyclegan.bench import dag, planning
from medcyclegan.preprocessing import masking


def _whole_array_dilate(mask, radius, sampling):
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing([float(s) for s in sampling[::-1]])
    dist = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return sitk.GetArrayFromImage(dist) <= radius


@pytest.mark.parametrize("seed", range(4))
def test_cropped_morphology_and_hole_filling_are_exact(seed):
    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.random((24, 40, 36)), 2) > 0.5
    mask[:, :, :3] |= seed % 2 == 1  # sometimes touching the array's border
    sampling = (2.0, 0.7, 1.3)
    for radius in (1.5, 3.0):
        assert np.array_equal(masking._dilate(mask, radius, sampling), _whole_array_dilate(mask, radius, sampling))
        assert np.array_equal(masking._erode(mask, radius, sampling), ~_whole_array_dilate(~mask, radius, sampling))
    per_slice = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    assert np.array_equal(masking.fill_holes_axial(mask), per_slice)


def test_job_counts_parses_the_dry_run_table():
    text = "Job stats:\njob                  count\n-----------------  -------\ningest                  12\ntfrecords                6\ntotal                   18\n"
    assert dag.job_counts(text) == {"ingest": 12, "tfrecords": 6}


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_files_opened_sees_a_read_file_but_not_a_listed_folder(tmp_path):
    (tmp_path / "raw" / "a").mkdir(parents=True)
    image = tmp_path / "raw" / "a" / "image.nii.gz"
    image.touch()
    log = tmp_path / "x.log"
    read = [sys.executable, "-c", f"open({str(image)!r}).read()"]
    listing = [sys.executable, "-c", f"import os; list(os.walk({str(tmp_path / 'raw')!r}))"]
    assert dag.files_opened(read, [str(tmp_path / "raw")], log) == [str(image)]
    assert dag.files_opened(listing, [str(tmp_path / "raw")], log) == []


def test_heavy_modules_found_in_importtime_output():
    import subprocess

    code = "import json, tensorboard.version"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    assert "tensorboard.version" in planning.heavy_modules(proc.stderr)
    assert "json" not in planning.heavy_modules(proc.stderr)
