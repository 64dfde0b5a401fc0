"""A Snakemake report opened in headless Chromium shows every category, subcategory and image, and a broken image
is reported as not loaded (:mod:`medcyclegan.testing.report_browser`). Builds its own tiny workflow: no demo run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medcyclegan.testing.report_browser import _category_labels, browser_available, render_report

# four categories like the real report's: subcategories, a toggle between two labelled results (preview image /
# slice table), a category without subcategory, an SVG, a CSV, and a ".png" that is not a PNG
SNAKEFILE = """
import struct
import zlib


def write_png(path, width=12, height=8):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\\0" + bytes(v for x in range(width) for v in (20 * x, 30 * y, 160)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="40pt" height="20pt"><rect width="30" height="10"/></svg>'


# one job writes every result: each Snakemake job costs about two seconds of scheduling
rule results:
    output:
        ct=report("qc/ct_preview.png", category="Preprocessing QC", subcategory="ct", labels={"modality": "ct", "figure": "mask preview"}),
        ct_table=report("qc/ct_slices.csv", category="Preprocessing QC", subcategory="ct", labels={"modality": "ct", "figure": "slice table"}),
        mr=report("qc/mr_preview.png", category="Preprocessing QC", subcategory="mr", labels={"modality": "mr", "figure": "mask preview"}),
        mr_table=report("qc/mr_slices.csv", category="Preprocessing QC", subcategory="mr", labels={"modality": "mr", "figure": "slice table"}),
        curves=report("train/curves.svg", category="Training"),
        mr2ct=report("eval/mr2ct/evaluation.png", category="Evaluation", subcategory="mr2ct"),
        metrics=report("eval/mr2ct/metrics.csv", category="Evaluation", subcategory="mr2ct"),
        pet2ct=report("eval/pet2ct/evaluation.png", category="Evaluation", subcategory="pet2ct"),
        broken=report("broken/not_a.png", category="Broken"),
    run:
        for png in (output.ct, output.mr, output.mr2ct, output.pet2ct):
            write_png(png)
        for csv in (output.ct_table, output.mr_table, output.metrics):
            open(csv, "w").write("subject,value\\ns1,1.0\\n")
        open(output.curves, "w").write(SVG)
        open(output.broken, "w").write("this is not a PNG")
"""


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    reason = browser_available()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "Snakefile").write_text(SNAKEFILE)
    base = [sys.executable, "-m", "snakemake", "-s", str(tmp / "Snakefile"), "-d", str(tmp), "-j1"]
    for extra in ([], ["--report", str(tmp / "report.html")]):
        proc = subprocess.run(base + extra, cwd=tmp, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return render_report(tmp / "report.html", timeout_s=60)


def test_every_category_subcategory_and_image_is_shown(view):
    assert set(view.categories) == {"Preprocessing QC", "Training", "Evaluation", "Broken"}
    assert set(view.categories["Preprocessing QC"]) == {"ct", "mr"}
    assert set(view.categories["Training"]) == {""}  # a single subcategory: the app shows the results directly
    assert set(view.categories["Evaluation"]) == {"mr2ct", "pet2ct"}
    ct = {r.labels: (r.kind, r.image_loaded, r.path) for r in view.categories["Preprocessing QC"]["ct"]}
    assert ct == {  # both sides of the "figure" toggle
        ("ct", "mask preview"): ("image", True, "qc/ct_preview.png"),
        ("ct", "slice table"): ("download", None, "qc/ct_slices.csv"),
    }
    for category in ("Preprocessing QC", "Training", "Evaluation"):
        for sub, rows in view.categories[category].items():
            images = [r for r in rows if r.kind == "image"]
            assert images and all(r.image_loaded and r.natural_size[0] > 0 for r in images), (category, sub, rows)
    assert [r.name for r in view.categories["Training"][""]] == ["curves.svg"]
    assert sorted(r.name for r in view.categories["Evaluation"]["mr2ct"]) == ["evaluation.png", "metrics.csv"]
    assert view.missing == []
    assert view.console_errors == []
    assert 'id="app"' in view.dom


def test_a_broken_image_is_reported_not_loaded(view):
    broken = view.categories["Broken"][""]
    assert [(r.name, r.kind, r.image_loaded) for r in broken] == [("not_a.png", "image", False)]
    assert view.images_not_loaded() == broken


def test_category_menu_entries():
    general = [["h", "General"], ["a", "Workflow"], ["a", "Statistics"], ["a", "About"]]
    assert _category_labels(general + [["h", "Results"], ["a", "Evaluation"], ["a", "Training"]]) == [
        "Evaluation",
        "Training",
    ]
    assert _category_labels([["a", "Workflow"], ["a", "Statistics"], ["a", "About"], ["a", "Results"]]) == ["Results"]
    assert _category_labels(general) == []
