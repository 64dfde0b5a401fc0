# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.logutil import job_logging  # noqa: E402

smk = snakemake  # noqa: F821
with job_logging(smk.log[0]):
    from medcyclegan import io
    from medcyclegan.synthesis import preprocessing_record

    rec = dict(smk.params.record)
    io.write_json(smk.output[0], preprocessing_record(rec.pop("modality"), **rec))
