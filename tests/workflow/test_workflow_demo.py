"""Workflow test: the whole DAG on a tiny built-in demo, from nothing to TFRecords (and beyond).

No data is configured: the demo rules write CQ500 / OASIS-3 trees, which the same ingest code
reads as it would read real downloads.
"""

import numpy as np
import pandas as pd
import pytest

from medcyclegan.testing.workflow import (
    TINY_DEMO,
    TINY_TRAINING,
    scheduled_jobs,
    snakemake,
    snakemake_command,
    write_config,
)

pytestmark = [pytest.mark.workflow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    write_config(work, TINY_DEMO)
    snakemake(work, "-j2", "preprocess")
    return work


def read(path):
    from medcyclegan.io.tfrecords import read_dataset

    return [{k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in ex.items()} for ex in read_dataset(str(path))]


def test_demo_preprocessing_outputs(demo_run):
    from medcyclegan.preprocessing.intensity import to_physical

    for modality in ("ct", "mr", "pet"):
        subjects = {}
        for split in ("train", "test"):
            examples = read(demo_run / f"results/tfrecords/{modality}/{split}.tfrecord")
            assert len(examples) > 50
            images = np.stack([e["image"][..., 0] for e in examples])
            assert images.shape[1:] == (256, 256)
            assert images.min() >= -1 and images.max() <= 1
            # corners of every slice are outside the head: background
            assert (images[:, :8, :8] == -1).all() and (images[:, -8:, -8:] == -1).all()
            subjects[split] = {e["subject"] for e in examples}
        assert not subjects["train"] & subjects["test"]
        if modality == "ct":
            hu = np.stack([to_physical(e["image"][..., 0], e["value_lo"], e["value_hi"]) for e in examples])
            assert hu.max() > 700 and np.isclose(hu.min(), -1024, atol=0.5)
    # the demo's thin JPEG 2000 series was the one chosen, not BONE or 5 mm
    import json

    from medcyclegan.privacy import file_ref

    info = json.loads((demo_run / "results/volumes/ct/CQ500-CT-1.json").read_text())
    study = next((demo_run / "results/demo/raw/ct/CQ500-CT-1").iterdir()) / "Unknown Study"
    names = {file_ref("CQ500-CT-1", f"{study.parent.name}/Unknown Study/{s.name}"): s.name for s in study.iterdir()}
    assert names[info["ingest"]["series_folder"]] not in ("CT BONE", "CT 5mm")
    syntax = info["ingest"]["transfer_syntax"]
    syntax = " ".join(syntax) if isinstance(syntax, list) else syntax
    assert "JPEG 2000" in syntax.replace("JPEG2000", "JPEG 2000"), syntax
    table = pd.read_csv(demo_run / "results/qc/ct_slices.csv")
    assert (~table.kept).any() and table.kept.any()


def test_demo_ground_truth_aligned_with_input_slices(demo_run):
    split = pd.read_csv(demo_run / "results/splits/mr.csv")
    volume = split.loc[split.split == "test", "volume"].iloc[0]
    snakemake(demo_run, "-j2", f"results/ground_truth/mr/{volume}.npz")
    gt = np.load(demo_run / f"results/ground_truth/mr/{volume}.npz")
    sl = np.load(demo_run / f"results/slices/mr/{volume}.npz")
    assert np.array_equal(gt["slice"], sl["slice"])
    assert gt["hu"].shape == sl["images"].shape
    head = gt["mask"]
    assert head.mean() > 0.1
    assert gt["hu"][head].max() > 700  # the true skull is there
    # the input MR's head and the true CT's head overlap (same pose, same grid)
    mr_head = sl["images"] > -1
    overlap = (mr_head & head).sum() / max(head.sum(), 1)
    assert overlap > 0.8, overlap


def test_demo_nothing_to_do_and_seed_change_reruns_everything(demo_run):
    out = snakemake(demo_run, "-n", "preprocess").stdout
    assert not scheduled_jobs(out), out[-2000:]
    write_config(demo_run, {"split": {"seed": 43}}, name="seed.yaml", base=demo_run / "config.yaml")
    jobs = scheduled_jobs(snakemake(demo_run, "-n", "preprocess", config="seed.yaml").stdout)
    print("scheduled after split.seed change:", jobs)
    assert jobs.get("split") == 3 and "ingest" not in jobs and "preprocess_volume" not in jobs


def test_demo_training_to_examples_grid(demo_run):
    """The main command's DAG end to end (tiny budget): TFRecords -> model -> examples.png."""
    write_config(demo_run, TINY_TRAINING, name="tiny_training.yaml", base=demo_run / "config.yaml")
    snakemake(
        demo_run, "-j2", "results/mr2ct/examples.png", "results/mr2ct/slice_eval.json", config="tiny_training.yaml"
    )
    png = demo_run / "results/mr2ct/examples.png"
    assert png.stat().st_size > 20_000
    import json

    summary = json.loads((demo_run / "results/mr2ct/training_summary.json").read_text())
    assert summary["steps"] == 6
    evaluation = json.loads((demo_run / "results/mr2ct/slice_eval.json").read_text())
    print("tiny-budget slice evaluation:", {k: v for k, v in evaluation.items() if not isinstance(v, (list, dict))})
    log = (demo_run / "logs/train/mr2ct.log").read_text()
    assert "step" in log
    # nothing left to do afterwards, and the PET task was never touched
    out = snakemake(demo_run, "-n", "results/mr2ct/examples.png", config="tiny_training.yaml").stdout
    assert not scheduled_jobs(out)
    assert not (demo_run / "results/pet2ct").exists()


def test_killed_training_job_resumes_when_the_command_is_rerun(demo_run):
    """The training job killed (SIGKILL) mid-training, then the same command again:
    the job resumes from its last checkpoint, continues the step counter and finishes."""
    import json
    import os
    import signal
    import subprocess
    import time

    budget = {
        "training": {
            **TINY_TRAINING["training"],
            # long enough that the interruption lands mid-run even on a fast, idle machine
            "steps": 2000,
            "lr_decay_steps": 500,
            "checkpoint_every": 50,
            "log_every": 50,
            "tasks": {"pet2ct": {"steps": 2000, "lr_decay_steps": 500}},
        }
    }
    write_config(demo_run, budget, name="resume.yaml", base=demo_run / "config.yaml")
    target = "results/pet2ct/training_summary.json"
    cmd = snakemake_command(demo_run, "-j2", target, config="resume.yaml")
    ckdir = demo_run / "results/pet2ct/checkpoints"
    proc = subprocess.Popen(
        cmd, cwd=demo_run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 900
        while not sorted(ckdir.glob("ckpt-*.index"))[1:] and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, f"training ended before it could be interrupted:\n{proc.stdout.read()[-3000:]}"
        # kill the training job itself (as an out-of-memory kill or a node failure would): SIGKILL
        # cannot be caught, so it dies mid-run; snakemake reports the failed job and exits
        # (snakemake starts each job in a session of its own: find it by its script in this workdir)
        ps = subprocess.run(["ps", "-ww", "-e", "-o", "pid=,args="], capture_output=True, text=True).stdout
        rows = [ln.split(None, 1) for ln in ps.splitlines()]
        jobs = [
            int(r[0]) for r in rows if len(r) == 2 and f"{demo_run}/.snakemake/scripts/" in r[1] and "train.py" in r[1]
        ]
        assert jobs, ps
        for pid in jobs:
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (demo_run / target).exists()
    saved = sorted(int(p.name[len("ckpt-") : -len(".index")]) for p in ckdir.glob("ckpt-*.index"))
    assert saved and saved[-1] < 2000, saved

    snakemake(demo_run, "-j2", target, config="resume.yaml")
    log = (demo_run / "logs/train/pet2ct.log").read_text()
    assert f"resuming from step {saved[-1]}" in log
    summary = json.loads((demo_run / target).read_text())
    print(
        "interrupted after checkpoint",
        saved[-1],
        "-> resumed:",
        {k: summary[k] for k in ("resumed_from", "steps_this_run", "steps")},
    )
    assert summary["resumed_from"] == saved[-1] and summary["steps"] == 2000
    assert summary["steps_this_run"] == 2000 - saved[-1]


def test_default_target_plans_the_evaluation_of_both_tasks(tmp_path):
    """`snakemake` with no target builds the evaluation too, so `snakemake --report` has an
    Evaluation section (the metrics table and figure are report items of that category)."""
    write_config(tmp_path, TINY_DEMO)
    jobs = scheduled_jobs(snakemake(tmp_path, "-n").stdout)
    assert jobs.get("metrics") == 2 and jobs.get("evaluation_figure") == 2, jobs
    assert jobs.get("train") == 2 and jobs.get("synthesize", 0) >= 2, jobs
    assert "model_preprocessing" not in jobs  # the model folder carries its preprocessing record
