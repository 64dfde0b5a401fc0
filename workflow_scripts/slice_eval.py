# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake, tensorflow=True) as smk:  # noqa: F821
    from medcyclegan.evaluation.slice_eval import run_slice_eval

    run_slice_eval(
        smk.input.model,
        smk.input.src_test,
        smk.input.ct_train,
        list(smk.input.ground_truth),
        smk.output[0],
    )
