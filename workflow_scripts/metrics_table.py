# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as smk:  # noqa: F821
    from medcyclegan.evaluation.table import metrics_table
    from medcyclegan.inference.runtime import load_manifest

    metrics_table(
        list(smk.input.scores),
        smk.output.csv,
        smk.output.json,
        task=smk.wildcards.task,
        model_manifest=load_manifest(smk.input.model),
        split=smk.params.split,
        bootstrap_resamples=smk.params.bootstrap_resamples,
        bootstrap_seed=smk.params.bootstrap_seed,
    )
