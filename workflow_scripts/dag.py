# Snakemake script: the workflow's rule graph as SVG (Graphviz) and Mermaid.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 (injected by Snakemake)

from medcyclegan.workflow.job_log import snakemake_job  # noqa: E402
from medcyclegan.workflow.rulegraph import write_rulegraph  # noqa: E402

with snakemake_job(snakemake) as smk:  # noqa: F821
    write_rulegraph(
        Path(smk.scriptdir).parent / "Snakefile",
        dict(smk.params.config),
        smk.params.target,
        svg=smk.output.svg,
        mermaid=smk.output.mmd,
    )
