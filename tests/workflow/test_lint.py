"""Static checks: Snakemake's linter, snakefmt (Snakefile, rules/*.smk), ruff (lint and format),
and the README's rule graph picture kept in sync with the workflow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medcyclegan.testing.workflow import ROOT

BIN = Path(sys.executable).parent
README_GRAPH = ROOT / "docs" / "rulegraph.svg"
REGENERATE = "snakemake -j1 dag && cp results/dag/rulegraph.svg docs/rulegraph.svg"


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not installed: pip install -e '.[cpu,test]'")
    return str(path)


def _run(cmd, cwd=ROOT, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_snakemake_lint_reports_nothing(tmp_path):
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    proc = _run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--lint"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Lints for" not in out, out[-6000:]
    assert "Congratulations, your workflow is in a good condition!" in out, out[-2000:]


def test_snakefiles_formatted_with_snakefmt():
    proc = _run([_tool("snakefmt"), "--check", "--diff", "Snakefile", "rules"])
    assert proc.returncode == 0, f"run `snakefmt Snakefile rules`:\n{(proc.stdout + proc.stderr)[-4000:]}"


def test_python_passes_ruff_check():
    proc = _run([_tool("ruff"), "check", "."])
    assert proc.returncode == 0, f"run `ruff check --fix .`:\n{proc.stdout[-4000:]}{proc.stderr[-1000:]}"


def test_python_formatted_with_ruff():
    proc = _run([_tool("ruff"), "format", "--check", "."])
    assert proc.returncode == 0, f"run `ruff format .`:\n{proc.stdout[-4000:]}{proc.stderr[-1000:]}"


def test_dag_target_and_readme_rule_graph(tmp_path):
    """`snakemake dag` writes the rule graph as SVG and Mermaid, and docs/rulegraph.svg (shown in
    the README) has the same rules and edges."""
    from medcyclegan.workflow.rulegraph import parse_dot, parse_svg, rulegraph_text

    assert "docs/rulegraph.svg" in (ROOT / "README.md").read_text()
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    proc = _run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-j1", "dag"])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    nodes, edges = parse_svg((tmp_path / "results/dag/rulegraph.svg").read_text())
    assert {"all", "ingest", "preprocess_volume", "tfrecords", "train"} <= nodes
    mermaid = (tmp_path / "results/dag/rulegraph.mmd").read_text()
    assert "flowchart" in mermaid and all(f"[{n}]" in mermaid for n in nodes), mermaid[:500]
    # the SVG is the rule graph Snakemake prints
    assert parse_dot(rulegraph_text(ROOT / "Snakefile", None, "all", "dot", workdir=tmp_path)) == (nodes, edges)
    shown_nodes, shown_edges = parse_svg(README_GRAPH.read_text())
    assert (shown_nodes, shown_edges) == (nodes, edges), (
        f"docs/rulegraph.svg is out of date (rules missing: {sorted(nodes - shown_nodes)}, extra: "
        f"{sorted(shown_nodes - nodes)}; edges missing: {sorted(edges - shown_edges)}, extra: "
        f"{sorted(shown_edges - edges)}); regenerate it with: {REGENERATE}"
    )


def _declared_rules() -> dict[str, dict]:
    """{rule: {"threads": int|None, "mem_mb": int|None, "runs": bool, "local": bool}} from the rule files."""
    import re

    rules = {}
    text = "\n".join(p.read_text() for p in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))])
    local = set(re.findall(r"^localrules:\s*\n((?:\s+\w+,?\n)+)", text, flags=re.M))
    local_names = {n for block in local for n in re.findall(r"\w+", block)}
    for m in re.finditer(r"^rule (\w+):\n((?:(?:    .*)?\n)*)", text, flags=re.M):
        body = m[2]
        threads = re.search(r"^    threads: (\d+)$", body, flags=re.M)
        mem = re.search(r"^        mem_mb=(\d+),?$", body, flags=re.M)
        rules[m[1]] = {
            "threads": int(threads[1]) if threads else None,
            "mem_mb": int(mem[1]) if mem else None,
            "runs": bool(re.search(r"^    (script|shell|run|wrapper|notebook):", body, flags=re.M)),
            "local": m[1] in local_names,
        }
    return rules


def test_profiles_match_the_rules():
    """Every rule that runs a job declares threads and memory; the Slurm profile covers every
    rule that is submitted, with the rule's threads as CPUs and at least its memory."""
    import yaml

    yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())  # valid YAML
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())["set-resources"]
    rules = _declared_rules()
    for name, rule in rules.items():
        if rule["runs"]:
            assert rule["threads"] is not None, f"rule {name}: no threads"
    submitted = {n for n, r in rules.items() if r["runs"] and not r["local"]}
    assert submitted <= set(profile), (
        f"rules without Slurm resources in profiles/slurm: {sorted(submitted - set(profile))}"
    )
    for name, res in profile.items():
        assert name in rules, f"profiles/slurm: no rule {name}"
        if "cpus_per_task" in res and rules[name]["threads"] is not None:
            assert res["cpus_per_task"] == rules[name]["threads"], f"{name}: cpus_per_task != threads"
        if "mem_mb" in res and rules[name]["mem_mb"] is not None:
            assert res["mem_mb"] >= rules[name]["mem_mb"], f"{name}: less memory than the rule declares"
