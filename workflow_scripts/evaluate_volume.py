# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as smk:  # noqa: F821
    from medcyclegan.evaluation.volume import evaluate_volume
    from medcyclegan.inference.synthesis import original_input

    evaluate_volume(
        smk.wildcards.volume,
        smk.input.sct,
        smk.input.ground_truth,
        smk.input.npz,
        smk.input.mask,
        smk.input.volume,
        original_input(smk.input.info, smk.input.source, smk.params.id_key),
        smk.input.baselines,
        smk.output.scores,
        smk.output.panel,
        gt_mask_path=smk.input.gt_mask[0] if smk.input.gt_mask else None,
        ct_mask_cfg=smk.params.ct_mask,
        whole_mask=smk.params.whole_mask,
    )
