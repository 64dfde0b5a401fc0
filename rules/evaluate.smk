# Synthetic CT volumes in the input's own geometry, bring-your-own prediction, and evaluation
# against paired real CT (demo ground truth, SynthRAD2023) with two baselines.
#
#   snakemake -j8 results/mr2ct/metrics.json     # sCT of every test subject + metrics + baselines
#   snakemake -j8 predict                        # the volumes listed under predict: in config
#
# Helpers (paired_ct, eval_volumes, byo_volumes, ...) are in rules/evaluate_common.smk.


include: "evaluate_common.smk"


ruleorder: synthrad_ground_truth_slices > ground_truth_slices


rule model_preprocessing:
    # the settings that made the training slices, kept next to the model: predict reads them
    input:
        model=f"{RESULTS}/{{task}}/model",
    output:
        f"{RESULTS}/{{task}}/preprocessing.json",
    log:
        "logs/model_preprocessing/{task}.log",
    benchmark:
        "logs/benchmarks/model_preprocessing/{task}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        record=preprocessing_params,
    script:
        "../workflow_scripts/model_preprocessing.py"


rule synthesize:
    input:
        model=f"{RESULTS}/{{task}}/model",
        npz=lambda w: f"{RESULTS}/slices/{TASKS[w.task]}/{w.volume}.npz",
        mask=lambda w: f"{RESULTS}/masks/{TASKS[w.task]}/{w.volume}.nii.gz",
        volume=lambda w: f"{RESULTS}/volumes/{TASKS[w.task]}/{w.volume}.nii.gz",
        info=lambda w: f"{RESULTS}/volumes/{TASKS[w.task]}/{w.volume}.json",
        source=lambda w: VOLUMES[TASKS[w.task]][w.volume],
    output:
        f"{RESULTS}/{{task}}/sct/{{volume}}.nii.gz",
    log:
        "logs/synthesize/{task}/{volume}.log",
    benchmark:
        "logs/benchmarks/synthesize/{task}/{volume}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        batch_size=config["evaluation"]["batch_size"],
        flip_average=config["evaluation"]["flip_average"],
    script:
        "../workflow_scripts/synthesize.py"


rule synthrad_ground_truth_slices:
    # SynthRAD2023: the patient's real CT on the input's slices (as ground_truth_slices for the demo)
    input:
        ground_truth=lambda w: paired_ct(w.modality, w.volume),
        volume=f"{RESULTS}/volumes/{{modality}}/{{volume}}.nii.gz",
        npz=f"{RESULTS}/slices/{{modality}}/{{volume}}.npz",
    output:
        f"{RESULTS}/ground_truth/{{modality}}/{{volume}}.npz",
    log:
        "logs/synthrad_ground_truth_slices/{modality}/{volume}.log",
    benchmark:
        "logs/benchmarks/synthrad_ground_truth_slices/{modality}/{volume}.tsv"
    wildcard_constraints:
        modality="mr",
        volume=SYNTHRAD_ID_REGEX,
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


rule baseline_fit:
    input:
        unpack(baseline_inputs),
    output:
        f"{RESULTS}/{{task}}/baselines.json",
    log:
        "logs/baseline_fit/{task}.log",
    benchmark:
        "logs/benchmarks/baseline_fit/{task}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=15,
    params:
        n_bins=config["evaluation"]["intensity_map_bins"],
    script:
        "../workflow_scripts/baseline_fit.py"


rule evaluate_volume:
    input:
        sct=f"{RESULTS}/{{task}}/sct/{{volume}}.nii.gz",
        ground_truth=lambda w: paired_ct(TASKS[w.task], w.volume),
        gt_mask=lambda w: paired_mask(TASKS[w.task], w.volume),
        npz=lambda w: f"{RESULTS}/slices/{TASKS[w.task]}/{w.volume}.npz",
        mask=lambda w: f"{RESULTS}/masks/{TASKS[w.task]}/{w.volume}.nii.gz",
        volume=lambda w: f"{RESULTS}/volumes/{TASKS[w.task]}/{w.volume}.nii.gz",
        info=lambda w: f"{RESULTS}/volumes/{TASKS[w.task]}/{w.volume}.json",
        source=lambda w: VOLUMES[TASKS[w.task]][w.volume],
        baselines=f"{RESULTS}/{{task}}/baselines.json",
    output:
        scores=f"{RESULTS}/{{task}}/eval/{{volume}}.json",
        panel=f"{RESULTS}/{{task}}/eval/{{volume}}.npz",
    log:
        "logs/evaluate_volume/{task}/{volume}.log",
    benchmark:
        "logs/benchmarks/evaluate_volume/{task}/{volume}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=15,
    params:
        ct_mask=config["masking"]["ct"],
    script:
        "../workflow_scripts/evaluate_volume.py"


rule metrics:
    input:
        scores=lambda w: [f"{RESULTS}/{w.task}/eval/{v}.json" for v in eval_volumes(w.task)],
        # every test subject gets its synthetic CT, paired or not
        sct=lambda w: [f"{RESULTS}/{w.task}/sct/{v}.nii.gz" for v in test_volumes(w.task)],
        model=f"{RESULTS}/{{task}}/model",
        preprocessing=f"{RESULTS}/{{task}}/preprocessing.json",
        figure=f"{RESULTS}/{{task}}/evaluation.png",  # so that the one target makes everything
    output:
        csv=report(
            f"{RESULTS}/{{task}}/metrics.csv",
            caption="../report/metrics.rst",
            category="Evaluation",
            subcategory="{task}",
            labels={"task": "{task}", "figure": "metrics per subject"},
        ),
        json=f"{RESULTS}/{{task}}/metrics.json",
    log:
        "logs/metrics/{task}.log",
    benchmark:
        "logs/benchmarks/metrics/{task}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../workflow_scripts/metrics_table.py"


rule evaluation_figure:
    input:
        panels=lambda w: [f"{RESULTS}/{w.task}/eval/{v}.npz" for v in eval_volumes(w.task)],
    output:
        report(
            f"{RESULTS}/{{task}}/evaluation.png",
            caption="../report/evaluation.rst",
            category="Evaluation",
            subcategory="{task}",
            labels={"task": "{task}", "figure": "evaluation"},
        ),
    log:
        "logs/evaluation_figure/{task}.log",
    benchmark:
        "logs/benchmarks/evaluation_figure/{task}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        max_subjects=config["evaluation"]["figure_subjects"],
        hu_window=config["evaluation"]["hu_window"],
    script:
        "../workflow_scripts/evaluation_figure.py"


rule predict_volume:
    # bring your own volume: preprocessing from the model's record, output on the input's grid
    input:
        model=f"{RESULTS}/{{task}}/model",
        preprocessing=f"{RESULTS}/{{task}}/preprocessing.json",
        volume=lambda w: byo_volumes(w.task)[w.name],
    output:
        f"{RESULTS}/{{task}}/predict/{{name}}.nii.gz",
    log:
        "logs/predict_volume/{task}/{name}.log",
    benchmark:
        "logs/benchmarks/predict_volume/{task}/{name}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        batch_size=config["evaluation"]["batch_size"],
        flip_average=config["evaluation"]["flip_average"],
    script:
        "../workflow_scripts/predict_volume.py"


rule predict:
    input:
        byo_targets(),
