# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as smk:  # noqa: F821
    from medcyclegan.training.loop import run_training

    run_training(
        {**smk.params.training, "device": smk.resources.device},
        task=smk.params.task,
        src_train=smk.input.src,
        ct_train=smk.input.ct,
        model_dir=smk.output.model,
        summary_path=smk.output.summary,
        checkpoint_dir=smk.params.checkpoint_dir,
        tensorboard_dir=smk.params.tensorboard_dir,
        threads=smk.threads,
        preprocessing=dict(smk.params.preprocessing),
        metrics_path=smk.output.metrics,
    )
