# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow import jobs as pipeline  # noqa: E402
from medcyclegan.workflow.job_log import job_logging  # noqa: E402

smk = snakemake  # noqa: F821
with job_logging(smk.log[0]):
    pipeline.preprocess(
        smk.wildcards.modality,
        smk.wildcards.volume,
        smk.input.volume,
        smk.output.npz,
        smk.output.table,
        smk.output.mask,
        mask_cfg=smk.params.mask,
        slicing_cfg=smk.params.slicing,
        intensity_cfg=smk.params.intensity,
        reject_cfg={"min_head_volume_ml": smk.params.min_head_volume_ml},
    )
