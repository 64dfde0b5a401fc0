"""Partial reruns after a config change, proven on a real (tiny) demo run.

One real run of the demo (3 subjects per modality, tiny training of both tasks), then dry runs
with changed config files (`--configfile`, a full file each). Each test prints the jobs it saw
scheduled and asserts the exact set of (rule, modality or task) pairs. The same run feeds the
HTML report test.
"""

from __future__ import annotations

import re

import pytest

from medcyclegan.testing.workflow import ROOT, TINY_DEMO, TINY_TRAINING, snakemake, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.timeout(3000)]

DEMO = {**TINY_DEMO, **TINY_TRAINING}
TASKS = ("mr2ct", "pet2ct")
TARGETS = ["preprocess"] + [
    f"results/{t}/{f}" for t in TASKS for f in ("examples.png", "training_curves.png", "slice_eval.json")
]
# rules that aggregate every modality (one job for all): they rerun after any preprocessing change
ALL_MODALITY_AGGREGATES = {"rejected_table"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("rerun")
    write_config(work, DEMO)
    snakemake(work, "-j2", *TARGETS, timeout=2700)
    return work


def scheduled(dry_run_output: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run would execute (a job of a group, e.g. the
    per-volume rules' ``per_volume``, is printed indented under ``Group job ...``)."""
    jobs = []
    pattern = r"^( *)(?:local)?rule (\w+):\n((?:\1    .*\n?)*)"  # a rule line, then its deeper-indented block
    for m in re.finditer(pattern, dry_run_output, flags=re.M):
        wc = re.search(r"^\s+wildcards: (.*)$", m[3], flags=re.M)
        wildcards = dict(kv.split("=", 1) for kv in wc[1].split(", ")) if wc else {}
        jobs.append((m[2], wildcards))
    return jobs


def dry_run(work, overrides: dict, name: str) -> list[tuple[str, dict]]:
    write_config(work, overrides, name=name, base=work / "config.yaml")
    out = snakemake(work, "-n", *TARGETS, config=name).stdout
    jobs = scheduled(out)
    print(f"\n{name}: {len(jobs)} jobs scheduled")
    for rule, wc in sorted(jobs, key=lambda j: (j[0], sorted(j[1].items()))):
        print(f"  {rule} {' '.join(f'{k}={v}' for k, v in sorted(wc.items()))}")
    return jobs


def kinds(jobs) -> set[tuple[str, str]]:
    """{(rule, modality-or-task)}: what a change touched, per rule."""
    return {(rule, wc.get("modality") or wc.get("task") or "") for rule, wc in jobs}


def test_nothing_changed_nothing_to_do(demo_run):
    assert dry_run(demo_run, {}, "unchanged.yaml") == []


def test_a_default_spelled_out_on_the_command_line_reruns_nothing(demo_run):
    # the benchmark's `--config "training={seed: S}"` with the default seed: same values, so no
    # job may see its params as changed (Snakemake compares them by repr, key order included)
    from medcyclegan.config.validation import schema_defaults

    seed = schema_defaults("training")["seed"]
    out = snakemake(demo_run, "-n", *TARGETS, "--config", f"training={{seed: {seed}}}").stdout
    assert scheduled(out) == []


def test_mr_masking_change_reruns_mr_masking_and_downstream_only(demo_run):
    jobs = dry_run(demo_run, {"masking": {"mr": {"threshold_scale": 0.45}}}, "mr_masking.yaml")
    assert kinds(jobs) == {
        ("preprocess_volume", "mr"),
        ("ground_truth_slices", "mr"),
        ("tfrecords", "mr"),
        ("qc_slice_table", "mr"),
        ("qc_preview", "mr"),
        ("train", "mr2ct"),
        ("examples_grid", "mr2ct"),
        ("slice_eval", "mr2ct"),
        ("training_curves", "mr2ct"),
        ("preprocess", ""),  # the target rule itself (no command)
    } | {(r, "") for r in ALL_MODALITY_AGGREGATES}
    assert sum(r == "preprocess_volume" for r, _ in jobs) == 3  # every MR volume, nothing else
    assert sum(r == "tfrecords" for r, _ in jobs) == 2


def test_mr2ct_training_change_reruns_that_task_only(demo_run):
    jobs = dry_run(demo_run, {"training": {"tasks": {"mr2ct": {"learning_rate": 0.0004}}}}, "mr2ct_training.yaml")
    assert kinds(jobs) == {
        ("train", "mr2ct"),
        ("examples_grid", "mr2ct"),
        ("slice_eval", "mr2ct"),
        ("training_curves", "mr2ct"),
    }
    assert len(jobs) == 4


def test_new_subject_reruns_its_volume_jobs_and_the_aggregations(demo_run):
    import yaml

    from medcyclegan import demo

    seed = yaml.safe_load((demo_run / "config.yaml").read_text())["demo"]["seed"]
    old, new = demo.mr_session_ids(3, seed), demo.mr_session_ids(4, seed)
    (added,) = set(new) - set(old)
    jobs = dry_run(demo_run, {"demo": {"n_mr_subjects": 4}}, "new_subject.yaml")
    per_volume = {"demo_mr_session", "ingest", "preprocess_volume", "ground_truth_slices"}
    for rule, wc in jobs:
        if rule in per_volume:
            assert added in (wc.get("volume"), wc.get("session")), (rule, wc)
    rules = {r for r, _ in jobs}
    # the new volume's own jobs, the MR aggregations and what follows them (MR training)
    required = {"demo_mr_session", "ingest", "preprocess_volume", "split", "tfrecords", "qc_slice_table", "train"}
    allowed = required | {
        "ground_truth_slices",
        "qc_preview",
        "examples_grid",
        "slice_eval",
        "training_curves",
        "preprocess",
        "discovery_table",  # the new session's row
    }
    assert required <= rules <= allowed | ALL_MODALITY_AGGREGATES, rules
    assert kinds(jobs) - {(r, "") for r in ALL_MODALITY_AGGREGATES | {"preprocess"}} <= {
        (r, m) for r in allowed for m in ("mr", "mr2ct", "")
    }
    assert not any(wc.get("modality") in ("ct", "pet") or wc.get("task") == "pet2ct" for _, wc in jobs)


def test_report_holds_grids_qc_metrics_and_curves(demo_run):
    report = demo_run / "results" / "report.html"
    snakemake(demo_run, "--report", str(report), *TARGETS)
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 100_000
    for text in (
        "Preprocessing QC",
        "Training",
        "examples.png",
        "training_curves.png",
        "slice_eval.json",
        "mr_preview.png",
    ):
        assert text in html, text
    assert (ROOT / "report" / "workflow.rst").exists()
