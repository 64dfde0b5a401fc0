# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake, tensorflow=True) as smk:  # noqa: F821
    from medcyclegan.inference.predict import predict

    dicom = smk.rule == "predict_dicom"
    predict(
        smk.input.model,
        smk.input.volume,
        None if dicom else smk.output[0],
        output_dicom=smk.output[0] if dicom else None,
        full_head=smk.params.full_head,
        batch_size=smk.params.batch_size,
        flip_average=smk.params.flip_average,
    )
