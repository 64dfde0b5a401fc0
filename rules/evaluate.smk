# Synthetic CT volumes in the input's own geometry, bring-your-own prediction, and evaluation
# against paired real CT (demo ground truth, SynthRAD2023) with two baselines.
#
#   snakemake -j8 results/mr2ct/metrics.json     # sCT of every test subject + metrics + baselines
#   snakemake -j8 results/mr2ct/validation_metrics.json   # the same over the validation subjects
#   (the default target includes metrics.json and evaluation.png of every task with paired CT)
#   snakemake -j8 predict                        # the volumes listed under predict: in config
#
# Helpers (eval_volumes, baseline_inputs, byo_volumes, ...) are in rules/evaluate_common.smk;
# paired_ct is in rules/common.smk (rule ground_truth_slices needs it too).


include: "evaluate_common.smk"


rule synthesize:
    input:
        model=f"{RESULTS}/{{task}}/model",
        npz=lambda w: f"{RESULTS}/slices/{TASKS[w.task]}/{w.volume}.npz",
        mask=lambda w: f"{RESULTS}/masks/{TASKS[w.task]}/{w.volume}.nii.gz",
        volume=lambda w: f"{RESULTS}/volumes/{TASKS[w.task]}/{w.volume}.nii.gz",
        info=lambda w: f"{RESULTS}/volumes/{TASKS[w.task]}/{w.volume}.json",
        source=task_source,
        gt_mask=lambda w: paired_mask(TASKS[w.task], w.volume),  # SynthRAD's mask.nii.gz (whole-mask synthesis)
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
        id_key=config["privacy"]["id_key"],  # ingest.file is a keyed reference to the original file
        # SynthRAD2023: every slice holding the given mask or head is translated (the challenge's region)
        whole_mask=lambda w: whole_mask(w.volume),
    script:
        "../workflow_scripts/synthesize.py"


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
        source=task_source,
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
        id_key=config["privacy"]["id_key"],  # ingest.file is a keyed reference to the original file
        # SynthRAD2023: scored over the whole mask; else over the mask restricted to the synthesised slab
        whole_mask=lambda w: whole_mask(w.volume),
    script:
        "../workflow_scripts/evaluate_volume.py"


rule metrics:
    input:
        scores=lambda w: [f"{RESULTS}/{w.task}/eval/{v}.json" for v in eval_volumes(w.task)],
        # every test subject gets its synthetic CT, paired or not
        sct=lambda w: [f"{RESULTS}/{w.task}/sct/{v}.nii.gz" for v in test_volumes(w.task)],
        model=f"{RESULTS}/{{task}}/model",
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
    params:
        split="test",
        bootstrap_resamples=config["evaluation"]["bootstrap_resamples"],
        bootstrap_seed=config["evaluation"]["bootstrap_seed"],
    script:
        "../workflow_scripts/metrics_table.py"


rule validation_metrics:
    # the same table over the validation subjects with a paired CT (choose settings on these; the
    # test split is scored only by rule metrics)
    input:
        scores=lambda w: [f"{RESULTS}/{w.task}/eval/{v}.json" for v in eval_volumes(w.task, "validation")],
        model=f"{RESULTS}/{{task}}/model",
    output:
        csv=f"{RESULTS}/{{task}}/validation_metrics.csv",
        json=f"{RESULTS}/{{task}}/validation_metrics.json",
    log:
        "logs/validation_metrics/{task}.log",
    benchmark:
        "logs/benchmarks/validation_metrics/{task}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        split="validation",
        bootstrap_resamples=config["evaluation"]["bootstrap_resamples"],
        bootstrap_seed=config["evaluation"]["bootstrap_seed"],
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
    # bring your own volume: preprocessed as the training volumes were (the model folder's
    # preprocessing.json), output on the input's grid
    input:
        model=f"{RESULTS}/{{task}}/model",
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
        full_head=config["predict"]["full_head"],
    script:
        "../workflow_scripts/predict_volume.py"


rule predict_dicom:
    # the same sCT as a DICOM CT series for a planning system (config predict.dicom); for a DICOM
    # input it carries the input's patient, study and frame of reference (opt-in identity)
    input:
        model=f"{RESULTS}/{{task}}/model",
        volume=lambda w: byo_volumes(w.task)[w.name],
    output:
        directory(f"{RESULTS}/{{task}}/predict/{{name}}_dicom"),
    log:
        "logs/predict_dicom/{task}/{name}.log",
    benchmark:
        "logs/benchmarks/predict_dicom/{task}/{name}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        batch_size=config["evaluation"]["batch_size"],
        flip_average=config["evaluation"]["flip_average"],
        full_head=config["predict"]["full_head"],
    script:
        "../workflow_scripts/predict_volume.py"


rule predict:
    input:
        byo_targets(),
