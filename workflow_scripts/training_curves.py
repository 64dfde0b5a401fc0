# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.figures.training_curves import plot_training_curves  # noqa: E402
from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as smk:  # noqa: F821
    plot_training_curves(smk.input.metrics, smk.output[0], title=smk.wildcards.task)
