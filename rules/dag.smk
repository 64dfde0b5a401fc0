# Pictures of the workflow: the rule graph of the default target (`snakemake dag`), as Graphviz
# SVG (needs `dot`, Debian package graphviz) and as a Mermaid flowchart. The whole config is a
# param because the graph depends on it (demo rules appear only without data).


localrules:
    dag,


rule dag:
    input:
        snakefiles=workflow_snakefiles(),
    output:
        svg=f"{RESULTS}/dag/rulegraph.svg",
        mmd=f"{RESULTS}/dag/rulegraph.mmd",
    log:
        "logs/dag/rulegraph.log",
    benchmark:
        "logs/benchmarks/dag/rulegraph.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        config=config,
        target="all",
    script:
        "../workflow_scripts/dag.py"
