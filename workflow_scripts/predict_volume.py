# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import job_logging  # noqa: E402

smk = snakemake  # noqa: F821
with job_logging(smk.log[0]):
    from medcyclegan.inference.predict import predict
    from medcyclegan.inference.runtime import configure_tensorflow

    configure_tensorflow(smk.threads)
    predict(
        smk.input.model,
        smk.input.volume,
        smk.output[0],
        batch_size=smk.params.batch_size,
        flip_average=smk.params.flip_average,
    )
