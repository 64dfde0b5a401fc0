# Per-volume jobs: ingest (read raw, select series / sum PET frames, canonical grid) and
# preprocess (head mask, useful slices, 256x256 window, [-1, 1] scaling).


def modality_params(section):
    """Only the modality's own settings, so changing MR settings never reruns CT jobs."""

    def get(wildcards):
        if section == "ingest":
            if wildcards.modality == "ct":
                return {"ct_series": config["ct_series"]}
            if wildcards.modality == "pet":
                return {"pet": config["pet"]}
            return {}
        if section == "intensity":
            key = "ct_window_hu" if wildcards.modality == "ct" else f"{wildcards.modality}_percentiles"
            return {key: config["intensity"][key]}
        return config[section][wildcards.modality]

    return get


rule ingest:
    input:
        source=raw_source,
    output:
        volume=f"{RESULTS}/volumes/{{modality}}/{{volume}}.nii.gz",
        info=f"{RESULTS}/volumes/{{modality}}/{{volume}}.json",
    params:
        settings=modality_params("ingest"),
        spacing_mm=config["geometry"]["spacing_mm"],
    log:
        "logs/ingest/{modality}/{volume}.log",
    benchmark:
        "logs/benchmarks/ingest/{modality}/{volume}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../workflow_scripts/ingest.py"


rule preprocess_volume:
    input:
        volume=f"{RESULTS}/volumes/{{modality}}/{{volume}}.nii.gz",
    output:
        npz=f"{RESULTS}/slices/{{modality}}/{{volume}}.npz",
        table=f"{RESULTS}/slices/{{modality}}/{{volume}}.csv",
        mask=f"{RESULTS}/masks/{{modality}}/{{volume}}.nii.gz",
    params:
        mask=modality_params("masking"),
        slicing=config["slicing"],
        intensity=modality_params("intensity"),
    log:
        "logs/preprocess_volume/{modality}/{volume}.log",
    benchmark:
        "logs/benchmarks/preprocess_volume/{modality}/{volume}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    script:
        "../workflow_scripts/preprocess_volume.py"


rule ground_truth_slices:
    # demo only: the true CT of an MR/PET subject, on exactly the input's slices and window
    input:
        ground_truth=f"{DEMO}/ground_truth/{{volume}}_ct.nii.gz",
        volume=f"{RESULTS}/volumes/{{modality}}/{{volume}}.nii.gz",
        npz=f"{RESULTS}/slices/{{modality}}/{{volume}}.npz",
    output:
        f"{RESULTS}/ground_truth/{{modality}}/{{volume}}.npz",
    params:
        ct_mask=config["masking"]["ct"],
    wildcard_constraints:
        modality="mr|pet",
    log:
        "logs/ground_truth_slices/{modality}/{volume}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/ground_truth_slices.py"
