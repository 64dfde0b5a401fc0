# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import job_logging  # noqa: E402

smk = snakemake  # noqa: F821
with job_logging(smk.log[0]):
    from medcyclegan.evaluation import volume as evaluation

    evaluation.evaluation_figure(
        list(smk.input.panels),
        smk.output[0],
        task=smk.wildcards.task,
        hu_window=smk.params.hu_window,
        max_subjects=smk.params.max_subjects,
    )
