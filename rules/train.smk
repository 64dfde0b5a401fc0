# CycleGAN training per task (mr2ct: MR <-> CT, pet2ct: PET <-> CT), example figure and
# evaluation on the demo's paired ground truth.
#
# Needs from rules/common.smk: RESULTS, TASKS ({task: source modality}), the `task` wildcard
# constraint, and ground_truth_npz(wildcards) (list of the source's test-volume ground-truth
# .npz files, empty without ground truth).
#
# Checkpoints ({RESULTS}/{task}/checkpoints/, with the run's metrics.jsonl) and TensorBoard logs
# ({RESULTS}/{task}/tensorboard/) are deliberately NOT outputs: Snakemake's cleanup of a
# failed/killed job's outputs never deletes them, so rerunning the same command resumes from the
# last checkpoint. The finished run copies its metrics to training_metrics.jsonl.
# (task_training, train_params and model_preprocessing are defined in rules/common.smk)


rule train:
    input:
        src=lambda w: f"{RESULTS}/tfrecords/{TASKS[w.task]}/train.tfrecord",
        ct=f"{RESULTS}/tfrecords/ct/train.tfrecord",
    output:
        model=directory(f"{RESULTS}/{{task}}/model"),
        summary=f"{RESULTS}/{{task}}/training_summary.json",
        metrics=f"{RESULTS}/{{task}}/training_metrics.jsonl",
    log:
        "logs/train/{task}.log",
    benchmark:
        "logs/benchmarks/train/{task}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 8
    resources:
        mem_mb=lambda w: task_training(w)["mem_mb"],
        runtime=lambda w: task_training(w)["runtime_min"],
        # where the job runs, not what it learns: a resource, so that a change reruns nothing
        device=lambda w: task_training(w)["device"],
    params:
        task=lambda w: w.task,
        training=train_params,
        checkpoint_dir=lambda w: f"{RESULTS}/{w.task}/checkpoints",
        tensorboard_dir=lambda w: f"{RESULTS}/{w.task}/tensorboard",
        preprocessing=model_preprocessing,
    script:
        "../workflow_scripts/train.py"


rule examples_grid:
    input:
        model=f"{RESULTS}/{{task}}/model",
        src_test=lambda w: f"{RESULTS}/tfrecords/{TASKS[w.task]}/test.tfrecord",
        ct_test=f"{RESULTS}/tfrecords/ct/test.tfrecord",
        ground_truth=ground_truth_npz,
    output:
        report(
            f"{RESULTS}/{{task}}/examples.png",
            caption="../report/examples.rst",
            category="Training",
            subcategory="{task}",
            labels={"task": "{task}", "figure": "example grid"},
        ),
    log:
        "logs/examples_grid/{task}.log",
    benchmark:
        "logs/benchmarks/examples_grid/{task}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 2
    resources:
        mem_mb=1500,
        runtime=10,
    params:
        examples=lambda w: task_training(w)["examples"],
    script:
        "../workflow_scripts/examples_grid.py"


rule slice_eval:
    input:
        model=f"{RESULTS}/{{task}}/model",
        src_test=lambda w: f"{RESULTS}/tfrecords/{TASKS[w.task]}/test.tfrecord",
        ct_train=f"{RESULTS}/tfrecords/ct/train.tfrecord",
        ground_truth=ground_truth_npz,
    output:
        report(
            f"{RESULTS}/{{task}}/slice_eval.json",
            caption="../report/slice_eval.rst",
            category="Training",
            subcategory="{task}",
            labels={"task": "{task}", "figure": "slice evaluation"},
        ),
    log:
        "logs/slice_eval/{task}.log",
    benchmark:
        "logs/benchmarks/slice_eval/{task}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/slice_eval.py"
