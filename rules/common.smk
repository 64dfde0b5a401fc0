# Shared helpers: config validation, data discovery (folder names only) and target lists.
import functools
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import WorkflowError

from medcyclegan.config.settings import MODALITIES, ingest_settings, modality_settings, preprocess_settings
from medcyclegan.config.tasks import TASKS, TaskConfigs, training_only
from medcyclegan.config.validation import ConfigError, validate_config
from medcyclegan import privacy
from medcyclegan.config import job_resources
from medcyclegan.ingest import discovery
from medcyclegan.preprocessing.split import volumes_in

TASK_TRAINING = TaskConfigs(config["training"])  # each task's merged training settings, computed once
try:
    validate_config(config, source="config")
    for _task in TASKS:  # per-task overrides are checked at start-up too, not when a job needs them
        TASK_TRAINING(_task)
except (ConfigError, ValueError) as err:
    raise WorkflowError(str(err)) from None

RESULTS = config["results_dir"]
DEMO = f"{RESULTS}/demo"
SOURCE_LINKS = ".medcyclegan/sources"  # links to the raw inputs, named by volume id (not an output)


wildcard_constraints:
    modality="|".join(MODALITIES),
    split="train|validation|test",
    volume=discovery.WILDCARD_REGEX,
    task="|".join(TASKS),


def demo_ids(modality):
    from medcyclegan import demo  # only needed (and imported) when demo data is used

    return demo.volume_ids(config["demo"], modality)


@functools.cache
def discovered():
    """Every data source (data.*_dir, data.sample_sheet, else the demo), from names only, once per
    run: the volumes and the rows of results/qc/discovery.csv (medcyclegan.ingest.discovery)."""
    try:
        return discovery.discover(config, DEMO, demo_ids=demo_ids)
    except (FileNotFoundError, ValueError) as err:
        raise WorkflowError(str(err)) from None


def using_demo(modality):
    return modality in discovered().demo


def synthrad_volumes(modality):
    """SynthRAD2023 Task 1 brain patients (data.synthrad_dir): id -> folder, for MR and CT."""
    return discovered().synthrad if modality in ("mr", "ct") else {}


def discover(modality):
    """volume id -> raw study/session folder or file, from names only."""
    return discovered().volumes[modality]


VOLUMES = {m: discover(m) for m in MODALITIES}
for _m in MODALITIES:
    if len(VOLUMES[_m]) < 2:
        _unused = discovered().not_used(_m)
        raise WorkflowError(
            f"{_m}: found {len(VOLUMES[_m])} volume(s) in "
            f"{'the demo dataset' if using_demo(_m) else 'the data folders and sample sheet'}; "
            "a train/test split needs at least 2" + (f". Not used: {_unused}" if _unused else "")
        )


def discovery_rows():
    """The rows of results/qc/discovery.csv (no raw path: dataset ids and references only)."""
    return discovered().public_rows()


def pinned_subjects(modality):
    """subject -> split pinned by the sample sheet, for the subjects of this modality's volumes."""
    pins = discovered().pins
    subjects = {discovery.subject_of(v) for v in VOLUMES[modality]}
    return {s: pins[s] for s in sorted(subjects) if s in pins}


def pin_params():
    """``pinned`` (subject -> split) for the split rule's params, only when the sample sheet pins
    a subject: a workflow without pins keeps the params it always had, so nothing reruns."""
    return {"pinned": lambda w: pinned_subjects(w.modality)} if discovered().pins else {}


def sheet_tracer(wildcards):
    """The PET tracer the sample sheet gives for this volume, or None."""
    return discovered().tracers.get(wildcards.volume) if wildcards.modality == "pet" else None


def raw_source(wildcards):
    """Raw study/session folder of a volume (see job_source_of)."""
    return job_source_of(wildcards.modality, wildcards.volume)


def task_source(wildcards):
    """The raw input of a task's source volume (see job_source_of)."""
    return job_source_of(TASKS[wildcards.task], wildcards.volume)


def job_source_of(modality, volume):
    """Raw input of a volume, with a clear message for an unknown id. Real data is given through a
    link named by the volume id (privacy.job_source), so that no folder or file name of the input
    shows in Snakemake's job listing; the demo's own folders need none."""
    try:
        raw = VOLUMES[modality][volume]
    except KeyError:
        known = ", ".join(list(VOLUMES[modality])[:5])
        raise WorkflowError(
            f"no raw {modality} volume named {volume!r} (found {len(VOLUMES[modality])}: {known}, ...)"
        ) from None
    if using_demo(modality) and raw.startswith(f"{DEMO}/"):
        return raw
    return privacy.job_source(raw, volume, f"{SOURCE_LINKS}/{modality}")


def ingest_params(wildcards):
    """The ingest stage's settings of this modality only: changing MR settings never reruns CT jobs.
    ``id_key`` keys the pseudonymous references of the privacy boundary (medcyclegan.privacy)."""
    settings = ingest_settings(modality_settings(config, wildcards.modality)) | {"id_key": config["privacy"]["id_key"]}
    tracer = sheet_tracer(wildcards)  # only sample-sheet PET rows name one: no other job's params change
    return settings | ({"tracer": tracer} if tracer else {})


def preprocess_params(wildcards):
    """The preprocessing stage's settings of this modality only."""
    return preprocess_settings(modality_settings(config, wildcards.modality))


def model_preprocessing(wildcards):
    """How the task's source volumes became training slices: kept in the model folder, so that
    predicting from a new volume preprocesses it the same way."""
    return modality_settings(config, TASKS[wildcards.task])


SYNTHRAD = synthrad_volumes("mr")


def paired_ct(modality, volume):
    """Real CT on the grid of the input's original file (demo ground truth, SynthRAD ct), or None."""
    if volume in SYNTHRAD:
        return f"{SYNTHRAD[volume]}/ct.nii.gz"
    if using_demo(modality):
        return f"{DEMO}/ground_truth/{volume}_ct.nii.gz"
    return None


def paired_ct_input(wildcards):
    path = paired_ct(wildcards.modality, wildcards.volume)
    if path is None:
        raise WorkflowError(f"{wildcards.modality} volume {wildcards.volume}: no paired real CT (demo or SynthRAD)")
    return path


def preview_volumes(wildcards):
    return sorted(VOLUMES[wildcards.modality])[: config["qc"]["preview_subjects"]]


def task_training(wildcards):
    """The merged training config of this task (common values + training.tasks.<task>)."""
    return TASK_TRAINING(wildcards.task)


def train_params(wildcards):
    # only the keys training uses: changing the figure's settings must not retrain
    return training_only(task_training(wildcards))


def split_volumes(modality, split):
    return volumes_in(
        VOLUMES[modality],
        split,
        seed=config["split"]["seed"],
        test_fraction=config["split"]["test_fraction"],
        val_fraction=config["split"]["val_fraction"],
        pinned=pinned_subjects(modality),
    )


def slices_npz(modality, volumes):
    return [f"{RESULTS}/slices/{modality}/{v}.npz" for v in volumes]


def ground_truth_npz(wildcards):
    """Paired true-CT slices of the TEST volumes of a task's source modality (demo only)."""
    src = TASKS[wildcards.task]
    if not using_demo(src):
        return []
    return [f"{RESULTS}/ground_truth/{src}/{v}.npz" for v in split_volumes(src, "test")]


def preprocessing_targets():
    ground_truth = [
        f"{RESULTS}/ground_truth/{m}/{v}.npz" for m in ("mr", "pet") if using_demo(m) for v in split_volumes(m, "test")
    ]
    return ground_truth + (
        [f"{RESULTS}/tfrecords/{m}/{s}.tfrecord" for m in MODALITIES for s in ("train", "validation", "test")]
        + [f"{RESULTS}/qc/{m}_slices.csv" for m in MODALITIES]
        + [f"{RESULTS}/qc/{m}_preview.png" for m in MODALITIES]
        + [f"{RESULTS}/splits/{m}.csv" for m in MODALITIES]
        + [f"{RESULTS}/qc/rejected.csv", f"{RESULTS}/qc/discovery.csv"]
    )


def training_targets():
    return [f"{RESULTS}/{t}/examples.png" for t in TASKS]


def workflow_snakefiles():
    """The Snakefile and every rules/*.smk: the rule graph changes when one of them does."""
    base = Path(workflow.basedir)
    return [str(base / "Snakefile")] + sorted(str(p) for p in (base / "rules").glob("*.smk"))


def report_targets():
    """Figures and metrics for the HTML report (snakemake --report): training curves, and the
    slice evaluation where the demo's paired true CT exists."""
    curves = [f"{RESULTS}/{t}/training_curves.png" for t in TASKS]
    return curves + [f"{RESULTS}/{t}/slice_eval.json" for t, src in TASKS.items() if using_demo(src)]


# Memory and time of the per-volume jobs follow their input (docs/resources.md): Snakemake calls
# these once per job while planning (the raw folder is listed, no file opened) and again when
# the job is ready to run (its input then exists), with attempt = 1, 2, ... on retries.
_SOURCE_BYTES = {}


def ingest_source_bytes(source):
    """The raw folder listed once for both requests; a missing (demo) input is asked again later."""
    size = _SOURCE_BYTES.get(source) or job_resources.source_bytes(source)
    if size:
        _SOURCE_BYTES[source] = size
    return size


def ingest_mem_mb(wildcards, input, attempt):
    return job_resources.ingest_mem_mb(ingest_source_bytes(input.source), attempt)


def ingest_runtime(wildcards, input, attempt):
    return job_resources.ingest_runtime_min(ingest_source_bytes(input.source), attempt)


def preprocess_mem_mb(wildcards, input, attempt):
    return job_resources.preprocess_mem_mb(job_resources.nifti_voxels(input.volume), attempt)


def preprocess_runtime(wildcards, input, attempt):
    return job_resources.preprocess_runtime_min(job_resources.nifti_voxels(input.volume), attempt)
