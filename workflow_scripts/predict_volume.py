# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake, tensorflow=True) as smk:  # noqa: F821
    from medcyclegan.inference.predict import predict

    predict(
        smk.input.model,
        smk.input.volume,
        smk.output[0],
        batch_size=smk.params.batch_size,
        flip_average=smk.params.flip_average,
    )
