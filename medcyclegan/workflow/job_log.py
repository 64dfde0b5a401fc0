"""Job logging: each Snakemake job writes its own log file; failures end up there with the reason.

:func:`snakemake_job` is all a script in ``workflow_scripts/`` needs around its one package call.
"""

from __future__ import annotations

import contextlib
import logging
import sys


@contextlib.contextmanager
def job_logging(log_path: str | None, name: str = "medcyclegan"):
    """Send ``logging`` output to the job's log file (and stderr); log any exception before re-raising."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    log = logging.getLogger(name)
    try:
        yield log
    except Exception as exc:
        log.error("job failed: %s: %s", type(exc).__name__, exc, exc_info=True)
        raise
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()


@contextlib.contextmanager
def snakemake_job(smk, *, tensorflow: bool = False, itk: bool = False):
    """Run a Snakemake script's body with the job's log file (:func:`job_logging` on ``log[0]``)
    and the rule's ``threads`` given to TensorFlow (``tensorflow``) and SimpleITK (``itk``), so a
    job uses the cores Snakemake reserved for it and no more. Yields ``smk``."""
    with job_logging(smk.log[0]):
        if tensorflow:
            from medcyclegan.inference.runtime import configure_tensorflow

            configure_tensorflow(smk.threads)
        if itk:
            import SimpleITK as sitk

            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(smk.threads)
        yield smk
