# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import job_logging  # noqa: E402

smk = snakemake  # noqa: F821
with job_logging(smk.log[0]):
    from medcyclegan.evaluation import volume as evaluation
    from medcyclegan.inference.synthesis import original_input

    evaluation.evaluate_volume(
        smk.wildcards.volume,
        smk.input.sct,
        smk.input.ground_truth,
        smk.input.npz,
        smk.input.mask,
        smk.input.volume,
        original_input(smk.input.info, smk.input.source),
        smk.input.baselines,
        smk.output.scores,
        smk.output.panel,
        gt_mask_path=smk.input.gt_mask[0] if smk.input.gt_mask else None,
        ct_mask_cfg=smk.params.ct_mask,
    )
