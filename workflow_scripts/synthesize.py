# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake, tensorflow=True) as smk:  # noqa: F821
    from medcyclegan.inference import synthesis

    synthesis.synthesize_job(
        smk.input.model,
        smk.input.npz,
        smk.input.mask,
        smk.input.volume,
        smk.input.info,
        smk.input.source,
        smk.output[0],
        batch_size=smk.params.batch_size,
        flip_average=smk.params.flip_average,
        id_key=smk.params.id_key,
        whole_mask=smk.params.whole_mask,
        given_mask_path=smk.input.gt_mask[0] if smk.input.gt_mask else None,
    )
