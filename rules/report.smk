# Figures for the HTML report (`snakemake --report results/report.html`): training curves parsed
# from the training job's log (a rule's log file is a product, so it can be another rule's input).


rule training_curves:
    input:
        log="logs/train/{task}.log",
        summary=f"{RESULTS}/{{task}}/training_summary.json",
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
