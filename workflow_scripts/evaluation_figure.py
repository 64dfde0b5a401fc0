# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as smk:  # noqa: F821
    from medcyclegan.figures.evaluation import evaluation_figure

    evaluation_figure(
        list(smk.input.panels),
        smk.output[0],
        task=smk.wildcards.task,
        hu_window=smk.params.hu_window,
        max_subjects=smk.params.max_subjects,
    )
