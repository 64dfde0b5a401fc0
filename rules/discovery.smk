# What discovery found: every entry directly under each data.*_dir and every sample-sheet row,
# with the volume it became or why it was not used (medcyclegan.ingest.discovery).


rule discovery_table:
    # no file input: the table is the folder listing made while planning (names only), passed
    # as params, so it is rewritten exactly when the listing changes
    output:
        f"{RESULTS}/qc/discovery.csv",
    log:
        "logs/discovery_table.log",
    benchmark:
        "logs/benchmarks/discovery_table/discovery_table.tsv"
    conda:
        "../envs/medcyclegan.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        rows=discovery_rows(),
    script:
        "../workflow_scripts/discovery_table.py"
