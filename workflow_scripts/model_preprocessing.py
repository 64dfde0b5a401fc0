# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import job_logging  # noqa: E402

smk = snakemake  # noqa: F821
with job_logging(smk.log[0]):
    from medcyclegan.inference.synthesis import preprocessing_record
    from medcyclegan.io import atomic as io

    rec = dict(smk.params.record)
    io.write_json(smk.output[0], preprocessing_record(rec.pop("modality"), **rec))
