# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import job_logging  # noqa: E402

smk = snakemake  # noqa: F821
with job_logging(smk.log[0]):
    from medcyclegan.figures import examples_grid
    from medcyclegan.training.loop import configure_tensorflow

    configure_tensorflow(smk.threads)
    examples_grid.examples_grid(
        smk.input.model,
        smk.input.src_test,
        smk.input.ct_test,
        smk.output[0],
        dict(smk.params.examples),
        ground_truth_npz=list(smk.input.ground_truth),
    )
