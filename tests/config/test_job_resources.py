"""Memory and time requests of the per-volume jobs from their input size (config/job_resources)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from medcyclegan.config import job_resources as jr

MB = 2**20

#: measured peaks of the ingest job (benchmark 7, benchmarks/RESULTS.md): slices of 512x512 ->
#: (input bytes as source_bytes counts them, peak MB)
MEASURED_INGEST = {240: (120.2 * MB, 1203), 400: (200.3 * MB, 1870), 600: (300.5 * MB, 2702)}
MEASURED_PREPROCESS = {240: (256 * 256 * 150, 498), 400: (256 * 256 * 250, 688), 600: (256 * 256 * 375, 896)}


def test_small_inputs_get_the_former_fixed_requests():
    assert jr.ingest_mem_mb(0) == jr.INGEST_FLOOR_MB == 1500
    assert jr.ingest_mem_mb(10 * MB) == 1500  # an MR session, a short CT series
    assert jr.ingest_runtime_min(0) == 20
    assert jr.preprocess_mem_mb(0) == jr.PREPROCESS_FLOOR_MB == 1000
    assert jr.preprocess_runtime_min(256 * 256 * 176) == 20


def test_the_request_is_the_measured_line_with_margin():
    size = 500 * MB
    line = jr.INGEST_BASE_MB + jr.INGEST_MB_PER_INPUT_MB * 500
    assert jr.ingest_mem_mb(size) == int(np.ceil(jr.MARGIN * line + jr.MARGIN_MB))
    assert jr.ingest_mem_mb(size) > jr.ingest_mem_mb(400 * MB) > 1500  # grows with the input


def test_retries_ask_for_more():
    assert jr.ingest_mem_mb(0, attempt=2) == 3000
    assert jr.ingest_mem_mb(300 * MB, attempt=3) >= 3 * jr.ingest_mem_mb(300 * MB) - 2
    assert jr.ingest_runtime_min(0, attempt=2) == 40
    assert jr.preprocess_mem_mb(0, attempt=2) == 2000
    assert jr.ingest_mem_mb(0, attempt=0) == 1500  # never below the first attempt's


@pytest.mark.parametrize("slices", sorted(MEASURED_INGEST))
def test_declared_memory_is_above_the_measured_peaks(slices):
    size, peak = MEASURED_INGEST[slices]
    assert jr.ingest_mem_mb(int(size)) > peak * 1.2  # the 400-slice series peaked at 1870 MB
    voxels, pre_peak = MEASURED_PREPROCESS[slices]
    assert jr.preprocess_mem_mb(voxels) > pre_peak * 1.1


def test_source_bytes_is_the_largest_series_with_compressed_slices_counted_decoded(tmp_path):
    study = tmp_path / "CQ500-CT-1" / "CQ500CT1 CQ500CT1" / "Unknown Study"
    thin, thick = study / "CT PLAIN THIN", study / "CT 5mm"
    thin.mkdir(parents=True)
    thick.mkdir()
    for k in range(40):  # compressed slices: 0.1 MB on disk, a 512x512 16-bit slice decoded
        (thin / f"CT{k:06d}.dcm").write_bytes(b"\0" * 100_000)
    for k in range(8):  # uncompressed, larger than a 512x512 slice
        (thick / f"IM{k}").write_bytes(b"\0" * 600_000)
    (thin / "notes.txt").write_bytes(b"x" * 10)
    assert jr.source_bytes(tmp_path / "CQ500-CT-1") == 40 * jr.SLICE_BYTES + 10
    assert jr.source_bytes(thick) == 8 * 600_000
    assert jr.source_bytes(tmp_path / "missing") == 0  # a demo input not generated yet
    nii = tmp_path / "t1.nii.gz"
    nii.write_bytes(b"\0" * 1234)
    assert jr.source_bytes(nii) == 1234  # a file: its size


def test_nifti_voxels_from_the_header_only(tmp_path):
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((7, 5, 3), np.int16), np.eye(4)), path)
    assert jr.nifti_voxels(path) == 105
    plain = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 3, 2, 2), np.float32), np.eye(4)), plain)
    assert jr.nifti_voxels(plain) == 48
    with gzip.open(tmp_path / "junk.nii.gz", "wb") as fh:
        fh.write(b"not a header")
    assert jr.nifti_voxels(tmp_path / "junk.nii.gz") == 0
    assert jr.nifti_voxels(tmp_path / "missing.nii.gz") == 0


def test_runtime_grows_only_for_huge_inputs():
    assert jr.ingest_runtime_min(300 * MB) == 20  # 8 s measured
    assert jr.ingest_runtime_min(8 * 2**30) == 40
    assert jr.preprocess_runtime_min(2 * 10**9) == 40
