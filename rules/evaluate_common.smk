# Helpers of rules/evaluate.smk: which volumes have a paired real CT, and the bring-your-own list.
# Needs from rules/common.smk: RESULTS, TASKS, SYNTHRAD, paired_ct, split_volumes, slices_npz.
# Splits scored: test (metrics.json) and validation (validation_metrics.json).
import re


def paired_mask(modality, volume):
    """SynthRAD's body mask when the patient folder has one (else the real CT's head mask is used)."""
    if volume in SYNTHRAD and Path(SYNTHRAD[volume], "mask.nii.gz").is_file():
        return [f"{SYNTHRAD[volume]}/mask.nii.gz"]
    return []


def test_volumes(task):
    return split_volumes(TASKS[task], "test")


def validation_volumes(task):
    """Validation volumes of the task's source (empty while the split has no validation subjects)."""
    return split_volumes(TASKS[task], "validation")


def eval_volumes(task, split="test"):
    """Volumes of the task's source in ``split`` (test or validation) that have a paired real CT."""
    src = TASKS[task]
    return [v for v in split_volumes(src, split) if paired_ct(src, v)]


def whole_mask(volume):
    """SynthRAD2023 volumes are scored over the whole given mask (the challenge's region), so every
    slice holding mask or head is translated; others (demo) keep the useful-slice slab."""
    return volume in SYNTHRAD


def evaluation_targets():
    """Metrics and figure of every task whose test volumes have a paired real CT, and the
    validation metrics where validation volumes have one."""
    test = [f"{RESULTS}/{t}/{f}" for t in TASKS if eval_volumes(t) for f in ("metrics.json", "evaluation.png")]
    return test + [f"{RESULTS}/{t}/validation_metrics.json" for t in TASKS if eval_volumes(t, "validation")]


def baseline_inputs(wildcards):
    src = TASKS[wildcards.task]
    train = split_volumes(src, "train")
    return {
        "src": slices_npz(src, train),
        "ct": slices_npz("ct", split_volumes("ct", "train")),
        "ground_truth": [f"{RESULTS}/ground_truth/{src}/{v}.npz" for v in train if paired_ct(src, v)],
    }


def _byo_name(path):
    name = re.sub(r"\.nii(\.gz)?$", "", Path(path).name)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "volume"


def byo_volumes(task):
    """{output name: input path} of the user's own volumes for a task (config predict.<task>)."""
    out = {}
    for path in config["predict"][task]:
        name = _byo_name(path)
        if name in out:
            raise WorkflowError(f"predict.{task}: two inputs named {name!r} ({out[name]}, {path}); rename one")
        out[name] = path
    return out


def byo_targets():
    """The NIfTI sCT of every listed volume, and its DICOM series when predict.dicom is on."""
    kinds = [".nii.gz"] + (["_dicom"] if config["predict"]["dicom"] else [])
    return [f"{RESULTS}/{t}/predict/{n}{kind}" for t in TASKS for n in byo_volumes(t) for kind in kinds]
