"""Every command the README shows runs, in a scratch checkout of this repository on the tiny demo.

Each command is run as written where that is cheap; otherwise the substitution (a dry run, a
local file for ``/data/...``, a loopback port) is written next to it in ``COMMANDS``. A command
that cannot run here says why. The README and ``COMMANDS`` must list the same commands, so a new
or changed command in the README fails this test until it is covered.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medcyclegan.bench import planning
from medcyclegan.config.validation import deep_update
from medcyclegan.ingest.volume import read_volume
from medcyclegan.testing import report_browser, tensorboard_server
from medcyclegan.testing.dicom_mr import PATIENT, write_mr_series
from medcyclegan.testing.fake_trees import build_empty_layout_tree
from medcyclegan.testing.readme import activated_env, make_checkout, readme_commands
from medcyclegan.testing.workflow import ROOT, TINY_DEMO, TINY_TRAINING, scheduled_jobs, write_config

pytestmark = pytest.mark.workflow

QUICK_START = 'python3 -m venv .venv && .venv/bin/pip install -e ".[cpu,test]" && .venv/bin/snakemake -j8 results/mr2ct/examples.png'
DEFAULT_TARGET = ".venv/bin/snakemake -j8"
NOTHING_TO_DO = "Nothing to be done"


@dataclass(frozen=True)
class How:
    """How the test runs one README command."""

    how: str  #: the substitution, or why the command is not run
    replace: tuple[tuple[str, str], ...] = ()  #: (text, replacement); {work} and {data} are filled in
    run: bool = True
    expect: tuple[str, ...] = ()  #: text the command's output must contain
    check: str = ""  #: name of a check function below, called with the checkout
    timeout: int = 300
    env: dict = field(default_factory=dict)


DRY = (("snakemake ", "snakemake -n "),)

COMMANDS: dict[str, How] = {
    "sudo apt-get install python3-venv graphviz chromium chromium-driver": How(
        "not run: needs root and the network; .ci/run installs these Debian packages on a clean machine", run=False
    ),
    QUICK_START: How(
        "the venv and install half is what .ci/run did to make the venv this test runs in (linked as .venv); "
        "the snakemake half runs as written, first, on the tiny demo config",
        replace=(('python3 -m venv .venv && .venv/bin/pip install -e ".[cpu,test]" && ', ""),),
        check="examples_written",
        timeout=1200,
    ),
    ".venv/bin/python -m pytest": How(
        "--collect-only -q: this test is part of that run",
        replace=(("-m pytest", "-m pytest --collect-only -q"),),
        expect=("tests collected",),
    ),
    DEFAULT_TARGET: How("as written", check="everything_built", timeout=1200),
    ".venv/bin/snakemake -j8 preprocess": How("as written", expect=(NOTHING_TO_DO,)),
    ".venv/bin/snakemake -j8 results/pet2ct/examples.png": How("as written", expect=(NOTHING_TO_DO,)),
    ".venv/bin/snakemake -j8 results/mr2ct/metrics.json": How("as written", expect=(NOTHING_TO_DO,)),
    ".venv/bin/snakemake -n results/mr2ct/examples.png": How("as written", expect=(NOTHING_TO_DO,)),
    ". .venv/bin/activate": How(
        "followed by `command -v snakemake`, which must be the venv's",
        replace=((". .venv/bin/activate", ". .venv/bin/activate && command -v snakemake"),),
        expect=(".venv/bin/snakemake",),
    ),
    ".venv/bin/tensorboard --logdir results/mr2ct/tensorboard": How(
        "served on a free loopback port (--host 127.0.0.1 --port N appended); its HTTP API must list the losses, "
        "the learning rate and the translation images",
        run=False,
        check="tensorboard_shows_training",
    ),
    "snakemake -j8 results/mr2ct/examples.png --configfile config/full.yaml": How(
        "dry run (-n): the full recipe trains for a day on a GPU", replace=DRY, check="full_recipe_planned"
    ),
    ".venv/bin/python -m medcyclegan predict --model results/mr2ct/model --input my_t1.nii.gz --output my_sct.nii.gz": How(
        "as written; my_t1.nii.gz is a demo T1w copied into the checkout", check="predicted_on_input_grid"
    ),
    ".venv/bin/python -m medcyclegan predict --model results/mr2ct/model --input my_t1_dicom --output my_sct.nii.gz "
    "--output-dicom my_sct_dicom": How(
        "as written; my_t1_dicom is the demo T1w written as an MR DICOM series", check="dicom_series_written"
    ),
    ".venv/bin/snakemake -j8 predict --config predict='{mr2ct: [/data/my_t1.nii.gz]}'": How(
        "/data/my_t1.nii.gz -> the checkout's my_t1.nii.gz",
        replace=(("/data/my_t1.nii.gz", "{work}/my_t1.nii.gz"),),
        check="predict_target_written",
    ),
    ".venv/bin/snakemake -j8 predict --config predict='{mr2ct: [/data/mr_dicom], dicom: true}'": How(
        "/data/mr_dicom -> the checkout's my_t1_dicom (the demo T1w as an MR DICOM series)",
        replace=(("/data/mr_dicom", "{work}/my_t1_dicom"),),
        check="predict_dicom_target_written",
    ),
    "snakemake -j8 preprocess --config data='{ct_dir: /data/cq500, mr_dir: /data/oasis3/mr, pet_dir: /data/oasis3/pet}'": How(
        "dry run (-n) on CQ500 / OASIS-3 folder layouts of empty files (3 studies, 3 + 3 sessions) for the /data folders",
        replace=DRY
        + (
            ("/data/cq500", "{data}/cq500"),
            ("/data/oasis3/mr", "{data}/oasis_mr"),
            ("/data/oasis3/pet", "{data}/oasis_pet"),
        ),
        check="real_layouts_planned",
    ),
    "snakemake -j8 preprocess --config data='{sample_sheet: /data/cohort/cohort.tsv, ct_dir: /data/cq500}'": How(
        "dry run (-n): the README's example sheet, its paths made as empty files and folders next to it, and the "
        "CQ500 layout of empty files for /data/cq500",
        replace=DRY + (("/data/cohort/cohort.tsv", "{data}/cohort/cohort.tsv"), ("/data/cq500", "{data}/cq500")),
        check="sample_sheet_planned",
    ),
    'snakemake -n results/mr2ct/examples.png --config "masking={mr: {threshold_scale: 0.45}}"': How(
        "as written: the typed override must plan the MR preprocessing again", check="override_planned"
    ),
    "snakemake -j8": How("as written (after the default target)", expect=(NOTHING_TO_DO,)),
    "snakemake --report results/report.html": How(
        "as written, then opened in headless Chromium", check="report_renders_every_category", timeout=600
    ),
    "snakemake --profile profiles/slurm --workflow-profile none results/mr2ct/examples.png": How(
        "dry run (-n): no cluster here (tests/workflow/test_profiles_slurm.py submits to a real one)",
        replace=DRY,
        expect=(NOTHING_TO_DO,),
    ),
    "snakemake results/mr2ct/examples.png --profile profiles/slurm --workflow-profile none --default-resources "
    "slurm_partition=compute slurm_account=my_project mem_mb=1000 runtime=15": How(
        "dry run (-n) with -R train, so that a job takes the resources",
        replace=(("snakemake ", "snakemake -n -R train "),),
        expect=("rule train",),
    ),
    'python3 -m venv .venv && .venv/bin/pip install -e ".[gpu,test]"': How(
        "not run: installs the CUDA build for an NVIDIA GPU machine; .ci/run checks that `.[gpu]` resolves "
        "(pip install --dry-run)",
        run=False,
    ),
    ".venv/bin/python -c \"import tensorflow as tf; print(tf.config.list_physical_devices('GPU'))\"": How(
        "as written (prints [] here: no GPU)", expect=("[]",)
    ),
    "snakemake -n results/mr2ct/examples.png": How("as written", expect=(NOTHING_TO_DO,)),
    ".venv/bin/python -m medcyclegan locate results/qc/rejected.csv": How(
        "as written: the demo rejects nothing, so there is no reference to map "
        "(tests/workflow/test_free_text_privacy.py maps real ones)",
        expect=("no reference",),
    ),
    "snakemake -n results/mr2ct/examples.png --quiet rules": How("as written"),
    "snakemake --summary": How("as written", expect=("results/mr2ct/examples.png",)),
    "snakemake --detailed-summary": How("as written", expect=("results/mr2ct/examples.png",)),
    "snakemake --unlock": How("as written", expect=("Unlocked",)),
    "snakemake --lint": How("as written"),
    ".venv/bin/python benchmarks/dag_scale.py --smoke": How("as written", timeout=600),
}


def readme_config() -> dict:
    overrides = copy.deepcopy(TINY_DEMO)
    deep_update(overrides, copy.deepcopy(TINY_TRAINING))
    overrides["training"]["tensorboard_images"] = True  # the TensorBoard check looks for them
    return overrides


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A checkout with the tiny demo config, a T1w to predict on and empty real-layout trees."""
    work = make_checkout(ROOT, tmp_path_factory.mktemp("readme") / "medcyclegan")
    write_config(work, readme_config())
    data = work.parent / "data"
    build_empty_layout_tree(data, 3, 3, 3, ct_slices=4)
    write_readme_sample_sheet(data / "cohort" / "cohort.tsv")
    return work


def write_readme_sample_sheet(sheet: Path) -> None:
    """The README's example ``cohort.tsv``, as shown, with each path it names as an empty file
    (NIfTI) or folder (a DICOM series or study) relative to the sheet."""
    block = (ROOT / "README.md").read_text().split("```text\n# cohort.tsv", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines()[1:] if line.strip() and not line.startswith("#")]
    header = lines[0].split("\t")
    for line in lines[1:]:
        path = sheet.parent / dict(zip(header, line.split("\t")))["path"]
        if path.name.endswith((".nii", ".nii.gz")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    sheet.write_text("# cohort.tsv" + block)


def command_line(command: str, how: How, work: Path) -> str:
    for text, replacement in how.replace:
        assert text in command, f"substitution {text!r} no longer matches the README command {command!r}"
        command = command.replace(text, replacement.format(work=work, data=work.parent / "data"), 1)
    return command


def run_command(command: str, work: Path, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=work, env=activated_env(work), capture_output=True, text=True, timeout=timeout
    )


def test_the_readme_and_this_test_list_the_same_commands():
    shown = readme_commands((ROOT / "README.md").read_text())
    assert sorted(set(shown) - set(COMMANDS)) == [], "README commands this test does not run"
    assert sorted(set(COMMANDS) - set(shown)) == [], "commands no longer in the README"


#: what became of the commands run so far: True (done) or the failure
_RAN: dict[str, bool | str] = {}


def execute(command: str, work: Path) -> None:
    """Run one README command the way COMMANDS says, then its check."""
    how = COMMANDS[command]
    output = ""
    if how.run:
        proc = run_command(command_line(command, how, work), work, how.timeout)
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            _RAN[command] = f"{command} failed ({proc.returncode})"
            pytest.fail(f"{command}\n{output[-6000:]}")
        for text in how.expect:
            assert text in output, f"{command}: {text!r} not in its output:\n{output[-3000:]}"
    if how.check:
        CHECKS[how.check](work, output, command)
    _RAN[command] = True


def build_prerequisites(work: Path, before: str = "") -> None:
    """The quick start, then the default target, run once (also when one command is tested alone)."""
    for command in (QUICK_START, DEFAULT_TARGET):
        if command == before:
            return
        if isinstance(_RAN.get(command), str):
            pytest.fail(f"not run: {_RAN[command]}")
        if command not in _RAN:
            execute(command, work)


@pytest.mark.parametrize("command", readme_commands((ROOT / "README.md").read_text()))
def test_readme_command(command, checkout):
    if command not in COMMANDS:
        pytest.fail(f"not covered: {command}")
    how = COMMANDS[command]
    if how.run or how.check:  # a command that is only listed needs no demo run
        build_prerequisites(checkout, before=command)
    execute(command, checkout)


# --- checks of what a command produced ---------------------------------------------------------


def examples_written(work, output, command):
    """The main command's figure; then the user's own inputs: a demo T1w as NIfTI and as DICOM."""
    assert (work / "results/mr2ct/examples.png").stat().st_size > 10_000
    shutil.copy(next((work / "results/demo/raw/mr").rglob("*T1w.nii.gz")), work / "my_t1.nii.gz")
    image, _ = read_volume("mr", work / "my_t1.nii.gz")
    write_mr_series(sitk.Round(image), work / "my_t1_dicom", description="T1 MPRAGE")


def everything_built(work, output, command):
    for task in ("mr2ct", "pet2ct"):
        for name in ("examples.png", "training_curves.png", "metrics.json", "evaluation.png", "slice_eval.json"):
            assert (work / "results" / task / name).is_file(), (task, name)


def tensorboard_shows_training(work, output, command):
    if tensorboard_server.tensorboard_executable() is None:
        pytest.fail("tensorboard is a dependency of the package but is not installed")
    with tensorboard_server.serve(command=shlex.split(command), cwd=work) as server:
        server.wait_for_tags(scalars=["loss/g_total", "loss/cycle_ct", "learning_rate"], timeout_s=60)
        images = [t for tags in server.image_tags().values() for t in tags]
        assert any(t.startswith("mr_to_ct_and_back/") for t in images), images
        run = next(r for r, tags in server.image_tags().items() if tags)
        assert server.image(run, images[0]).startswith(b"\x89PNG")
        steps = [s for s, _ in server.scalars(run, "learning_rate")]
        assert steps and steps == sorted(steps)


def full_recipe_planned(work, output, command):
    assert scheduled_jobs(output).get("train", 0) >= 1, output[-2000:]


def predicted_on_input_grid(work, output, command):
    source, sct = nib.load(work / "my_t1.nii.gz"), nib.load(work / "my_sct.nii.gz")
    assert sct.shape == source.shape[:3]
    np.testing.assert_allclose(sct.affine, source.affine, atol=1e-4)


def dicom_series_written(work, output, command):
    files = sorted((work / "my_sct_dicom").glob("CT_*.dcm"))
    assert len(files) >= 100, len(files)
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert header.Modality == "CT" and header.PatientID == PATIENT["PatientID"]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    sct = sitk.ReadImage(str(work / "my_sct.nii.gz"))
    # the demo T1w is sagittal: the axial series holds the same voxels, reordered
    on_nifti_grid = sitk.Resample(reader.Execute(), sct, sitk.Transform(), sitk.sitkNearestNeighbor, -2000)
    assert (sitk.GetArrayFromImage(on_nifti_grid) == sitk.GetArrayFromImage(sct)).all()


def predict_dicom_target_written(work, output, command):
    nifti = sitk.ReadImage(str(work / "results/mr2ct/predict/my_t1_dicom.nii.gz"))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(work / "results/mr2ct/predict/my_t1_dicom_dicom")))
    on_nifti_grid = sitk.Resample(reader.Execute(), nifti, sitk.Transform(), sitk.sitkNearestNeighbor, -2000)
    assert (sitk.GetArrayFromImage(on_nifti_grid) == sitk.GetArrayFromImage(nifti)).all()


def predict_target_written(work, output, command):
    assert nib.load(work / "results/mr2ct/predict/my_t1.nii.gz").shape == nib.load(work / "my_t1.nii.gz").shape[:3]


def real_layouts_planned(work, output, command):
    jobs = scheduled_jobs(output)
    # 3 splits x 3 modalities, but the CT studies keep the demo's ids (CQ500-CT-0..2), so the CT
    # split is unchanged and its validation file (no subject at this size) is already up to date
    assert jobs.get("ingest") == 9 and jobs.get("tfrecords") == 8 and jobs.get("split") == 2, jobs


def sample_sheet_planned(work, output, command):
    jobs = scheduled_jobs(output)  # 3 CQ500 studies + the sheet's CT, 2 MR and 2 PET rows
    assert jobs.get("ingest") == 8 and jobs.get("discovery_table") == 1, jobs


def override_planned(work, output, command):
    jobs = scheduled_jobs(output)
    assert jobs.get("preprocess_volume") == 3 and "ingest" not in jobs, jobs


def report_renders_every_category(work, output, command):
    reason = report_browser.browser_available()
    if reason:
        pytest.fail(f"the report test needs a browser: {reason}")
    view = report_browser.render_report(work / "results/report.html", timeout_s=180)
    assert {"Preprocessing QC", "Training", "Evaluation"} <= set(view.categories), list(view.categories)
    assert set(view.categories["Preprocessing QC"]) == {"ct", "mr", "pet"}
    for category in ("Training", "Evaluation"):
        assert set(view.categories[category]) == {"mr2ct", "pet2ct"}, view.categories[category]
    names = {r.name for r in view.results()}
    for name in ("examples.png", "training_curves.png", "evaluation.png", "mr_preview.png", "metrics.csv"):
        assert any(n.endswith(name) for n in names), (name, sorted(names))
    assert view.images_not_loaded() == [], view.images_not_loaded()
    assert sum(r.kind == "image" for r in view.results()) >= 9
    assert view.missing == [], view.missing
    assert not [e for e in view.console_errors if re.search(r"error", e, re.I)], view.console_errors


CHECKS = {
    f.__name__: f
    for f in (
        examples_written,
        everything_built,
        tensorboard_shows_training,
        full_recipe_planned,
        predicted_on_input_grid,
        predict_target_written,
        dicom_series_written,
        predict_dicom_target_written,
        real_layouts_planned,
        sample_sheet_planned,
        override_planned,
        report_renders_every_category,
    )
}


def test_planning_a_finished_workflow_imports_no_tensorflow(checkout):
    """Building the DAG (and every cluster job's own parse of the Snakefile) must not pay for TensorFlow."""
    build_prerequisites(checkout)
    for target in ("results/mr2ct/examples.png", ""):
        proc = run_command(f"python -X importtime -m snakemake -n {target}", checkout, 300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert NOTHING_TO_DO in proc.stdout + proc.stderr
        assert planning.heavy_modules(proc.stderr) == [], planning.heavy_modules(proc.stderr)[:10]
