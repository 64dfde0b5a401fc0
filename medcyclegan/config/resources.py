"""How many cores a job may use: the rule's ``threads`` (set by the workflow scripts as
SimpleITK's global default), never more than the cores this process is allowed to run on."""

from __future__ import annotations

import os

import SimpleITK as sitk


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which Slurm and taskset restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def job_threads() -> int:
    """The job's thread budget: SimpleITK's global default number of threads (the workflow
    scripts set it from the rule's ``threads``), at most the cores this process may use."""
    return max(1, min(int(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()), available_cores()))
