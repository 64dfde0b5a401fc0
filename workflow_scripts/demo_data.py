# Snakemake script: unpacks the rule's arguments and calls the medcyclegan package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

import logging  # noqa: E402

from medcyclegan import demo  # noqa: E402
from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402

with snakemake_job(snakemake) as smk:  # noqa: F821
    p = smk.params
    if smk.rule == "demo_ct_study":
        root = Path(smk.output[0]).parent
        out = demo.write_ct_study(root, p.index, p.seed, matrix=p.matrix, thin_mm=p.thin_mm, thick_mm=p.thick_mm)
    else:
        root = Path(smk.output.session).parent
        gt_root = Path(smk.output.ground_truth).parent
        write = demo.write_mr_session if smk.rule == "demo_mr_session" else demo.write_pet_session
        out = write(root, gt_root, p.index, p.seed)
    if Path(out) != Path(smk.output[0]):
        raise RuntimeError(f"demo writer produced {out}, expected {smk.output[0]}")
    logging.getLogger("medcyclegan").info("wrote %s", out)
