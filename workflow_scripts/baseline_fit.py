# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as smk:  # noqa: F821
    from medcyclegan.evaluation import baselines
    from medcyclegan.io import atomic as io

    io.write_json(
        smk.output[0],
        baselines.fit_baselines(
            list(smk.input.src), list(smk.input.ct), list(smk.input.ground_truth), n_bins=smk.params.n_bins
        ),
    )
