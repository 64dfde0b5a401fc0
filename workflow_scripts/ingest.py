# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

import SimpleITK as sitk  # noqa: E402

from medcyclegan.workflow import jobs as pipeline  # noqa: E402
from medcyclegan.workflow.job_log import job_logging  # noqa: E402

smk = snakemake  # noqa: F821
sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(smk.threads)
with job_logging(smk.log[0]):
    pipeline.ingest(
        smk.wildcards.modality,
        smk.input.source,
        smk.wildcards.volume,
        smk.output.volume,
        smk.output.info,
        **smk.params.settings,
    )
