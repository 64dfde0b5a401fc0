# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow import jobs  # noqa: E402
from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as smk:  # noqa: F821
    jobs.split(
        list(smk.params.volumes),
        smk.output[0],
        seed=smk.params.seed,
        test_fraction=smk.params.test_fraction,
        val_fraction=smk.params.val_fraction,
        pinned=dict(smk.params.get("pinned", {})),
    )
