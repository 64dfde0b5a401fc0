# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import job_logging  # noqa: E402

smk = snakemake  # noqa: F821
with job_logging(smk.log[0]):
    from medcyclegan.evaluation import volume as evaluation
    from medcyclegan.training.loop import load_manifest

    evaluation.metrics_table(
        list(smk.input.scores),
        smk.output.csv,
        smk.output.json,
        task=smk.wildcards.task,
        model_manifest=load_manifest(smk.input.model),
    )
