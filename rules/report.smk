# Figures for the HTML report (`snakemake --report results/report.html`): training curves from
# the metrics the training job writes (one JSON object per logged step).


rule training_curves:
    input:
        metrics=f"{RESULTS}/{{task}}/training_metrics.jsonl",
    output:
        report(
            f"{RESULTS}/{{task}}/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="{task}",
            labels={"task": "{task}", "figure": "training curves"},
        ),
    log:
        "logs/training_curves/{task}.log",
    benchmark:
        "logs/benchmarks/training_curves/{task}.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../workflow_scripts/training_curves.py"
