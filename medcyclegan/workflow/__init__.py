"""The job functions behind each Snakemake rule, rejection rows and the privacy scrub, job
logging and the rule graph.

Top layer: may import every stage; only ``rules/``, ``workflow_scripts/``, the CLI and the
benchmarks import it.
"""
