"""The workflow's rule graph as Graphviz SVG and Mermaid, and parsing of both for tests.

``snakemake --rulegraph`` prints the graph of the rules a target needs (one node per rule, not per
job). Rendering the dot text needs Graphviz's ``dot`` (Debian package ``graphviz``).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from medcyclegan.io import atomic as io

log = logging.getLogger(__name__)


def rulegraph_text(snakefile, config: dict | None = None, target: str = "all", fmt: str = "dot", workdir=".") -> str:
    """``snakemake --rulegraph`` output (``fmt``: ``dot`` or ``mermaid-js``) for ``target``."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--workflow-profile", "none", "--nolock"]
        if config is not None:
            cfg = Path(tmp, "config.yaml")
            cfg.write_text(yaml.safe_dump(config))
            cmd += ["--configfile", str(cfg)]
        cmd += ["--rulegraph", fmt, "--", target]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake --rulegraph failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def dot_to_svg(dot_text: str) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("Graphviz `dot` not found: install it (Debian/Ubuntu: apt-get install graphviz)")
    proc = subprocess.run([dot, "-Tsvg"], input=dot_text, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"dot -Tsvg failed: {proc.stderr}")
    return proc.stdout


def write_rulegraph(snakefile, config: dict | None, target: str, svg, mermaid=None, workdir=".") -> None:
    dot_text = rulegraph_text(snakefile, config, target, "dot", workdir)
    io.write_text(svg, dot_to_svg(dot_text))
    nodes, edges = parse_dot(dot_text)
    log.info("rule graph of %r: %d rules, %d edges -> %s", target, len(nodes), len(edges), svg)
    if mermaid is not None:
        io.write_text(mermaid, rulegraph_text(snakefile, config, target, "mermaid-js", workdir))
        log.info("mermaid flowchart -> %s", mermaid)


def parse_dot(dot_text: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Rule names and (from, to) rule-name edges of ``snakemake --rulegraph`` dot text."""
    labels = dict(re.findall(r'^\s*(\d+)\s*\[label\s*=\s*"([^"]+)"', dot_text, flags=re.M))
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+)\s*->\s*(\d+)", dot_text, flags=re.M)}
    return set(labels.values()), edges


def parse_svg(svg_text: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Rule names and edges of an SVG rendered by ``dot`` from a rule graph (node titles are ids)."""
    import xml.etree.ElementTree as ET

    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.fromstring(svg_text)
    labels, raw_edges = {}, []
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        title = g.find("s:title", ns)
        if title is None:
            continue
        if g.get("class") == "node":
            labels[title.text] = "".join(t.text or "" for t in g.findall("s:text", ns)).strip()
        elif g.get("class") == "edge":
            raw_edges.append(title.text.split("->"))
    return set(labels.values()), {(labels[a], labels[b]) for a, b in raw_edges}
