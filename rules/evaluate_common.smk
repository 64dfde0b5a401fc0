# Helpers of rules/evaluate.smk: which volumes have a paired real CT, and the bring-your-own list.
# Needs from rules/common.smk: RESULTS, DEMO, TASKS, VOLUMES, using_demo, split_volumes,
# slices_npz, synthrad_volumes.
import re

from medcyclegan.ingest.synthrad import ID_REGEX as SYNTHRAD_ID_REGEX

SYNTHRAD = synthrad_volumes("mr")


def paired_ct(modality, volume):
    """Real CT on the grid of the input's original file (demo ground truth, SynthRAD ct), or None."""
    if volume in SYNTHRAD:
        return f"{SYNTHRAD[volume]}/ct.nii.gz"
    if using_demo(modality):
        return f"{DEMO}/ground_truth/{volume}_ct.nii.gz"
    return None


def paired_mask(modality, volume):
    """SynthRAD's body mask when the patient folder has one (else the real CT's head mask is used)."""
    if volume in SYNTHRAD and Path(SYNTHRAD[volume], "mask.nii.gz").is_file():
        return [f"{SYNTHRAD[volume]}/mask.nii.gz"]
    return []


def test_volumes(task):
    return split_volumes(TASKS[task], "test")


def eval_volumes(task):
    """Test volumes of the task's source that have a paired real CT."""
    src = TASKS[task]
    return [v for v in test_volumes(task) if paired_ct(src, v)]


def baseline_inputs(wildcards):
    src = TASKS[wildcards.task]
    train = split_volumes(src, "train")
    return {
        "src": slices_npz(src, train),
        "ct": slices_npz("ct", split_volumes("ct", "train")),
        "ground_truth": [f"{RESULTS}/ground_truth/{src}/{v}.npz" for v in train if paired_ct(src, v)],
    }


def preprocessing_params(wildcards):
    """The settings that made the task's source training slices (the same values rules/preprocess.smk passes)."""
    src = TASKS[wildcards.task]
    key = f"{src}_percentiles"
    return {
        "modality": src,
        "spacing_mm": config["geometry"]["spacing_mm"],
        "mask_cfg": config["masking"][src],
        "slicing_cfg": config["slicing"],
        "intensity_cfg": {key: config["intensity"][key]},
        "pet": config["pet"] if src == "pet" else None,
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
    return [f"{RESULTS}/{t}/predict/{n}.nii.gz" for t in TASKS for n in byo_volumes(t)]
