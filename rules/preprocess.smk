# Per-volume jobs: ingest (read raw, select series / sum PET frames, canonical grid) and
# preprocess (head mask, useful slices, 256x256 window, [-1, 1] scaling), each with only its
# modality's settings (medcyclegan/config/settings.py); the paired real CT on the input's slices.
# All three are in the job group "per_volume": on a cluster, profiles/slurm submits the jobs of 50
# volumes as one Slurm job (group-components; docs/slurm.md). Local runs ignore groups.
# mem_mb and runtime of ingest and preprocess_volume follow their input: rules/common.smk


rule ingest:
    input:
        source=raw_source,
    output:
        volume=f"{RESULTS}/volumes/{{modality}}/{{volume}}.nii.gz",
        info=f"{RESULTS}/volumes/{{modality}}/{{volume}}.json",
    log:
        "logs/ingest/{modality}/{volume}.log",
    benchmark:
        "logs/benchmarks/ingest/{modality}/{volume}.tsv"
    group:
        "per_volume"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 2
    resources:
        mem_mb=ingest_mem_mb,
        runtime=ingest_runtime,
        # stated, so that planning 5,000 volumes does not look up every job's input size
        # for Snakemake's default disk_mb (README "Resources")
        disk_mb=1000,
    params:
        settings=ingest_params,
    script:
        "../workflow_scripts/ingest.py"


rule preprocess_volume:
    input:
        volume=f"{RESULTS}/volumes/{{modality}}/{{volume}}.nii.gz",
    output:
        npz=f"{RESULTS}/slices/{{modality}}/{{volume}}.npz",
        table=f"{RESULTS}/slices/{{modality}}/{{volume}}.csv",
        mask=f"{RESULTS}/masks/{{modality}}/{{volume}}.nii.gz",
    log:
        "logs/preprocess_volume/{modality}/{volume}.log",
    benchmark:
        "logs/benchmarks/preprocess_volume/{modality}/{volume}.tsv"
    group:
        "per_volume"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=preprocess_mem_mb,
        runtime=preprocess_runtime,
        disk_mb=1000,
    params:
        settings=preprocess_params,
    script:
        "../workflow_scripts/preprocess_volume.py"


rule ground_truth_slices:
    # the paired real CT of an MR/PET volume (demo ground truth, SynthRAD2023 ct.nii.gz) on
    # exactly the input's slices and window
    input:
        ground_truth=paired_ct_input,
        volume=f"{RESULTS}/volumes/{{modality}}/{{volume}}.nii.gz",
        npz=f"{RESULTS}/slices/{{modality}}/{{volume}}.npz",
    output:
        f"{RESULTS}/ground_truth/{{modality}}/{{volume}}.npz",
    log:
        "logs/ground_truth_slices/{modality}/{volume}.log",
    benchmark:
        "logs/benchmarks/ground_truth_slices/{modality}/{volume}.tsv"
    wildcard_constraints:
        modality="mr|pet",
    group:
        "per_volume"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        ct_mask=config["masking"]["ct"],
    script:
        "../workflow_scripts/ground_truth_slices.py"
