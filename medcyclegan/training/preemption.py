"""Stop a training run cleanly on SIGTERM or SIGUSR1, at a checkpoint of the current step.

A cluster ends a job at its time limit (or on preemption) with SIGTERM and, some seconds later,
SIGKILL; Slurm can also send SIGUSR1 ahead of the limit (``--signal``). Without a handler the
run loses every step since the last periodic checkpoint. :class:`SignalWatch` records the signal;
the training loop finishes the step in progress, writes a checkpoint of it and raises
:class:`Preempted`, so the job fails (Snakemake resubmits or the user reruns it) and the next run
resumes from exactly that step.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("medcyclegan.training")

SIGNALS = ("SIGTERM", "SIGUSR1")


class Preempted(RuntimeError):
    """The run stopped on a signal after writing a checkpoint of its current step."""


class SignalWatch:
    """While active, SIGTERM and SIGUSR1 are recorded in :attr:`received` instead of ending the process."""

    def __init__(self, names=SIGNALS):
        self.names = [n for n in names if hasattr(signal, n)]
        self.received: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            log.warning("%s received: stopping after the current step, with a checkpoint of it", name)
        self.received = self.received or name

    def __enter__(self) -> SignalWatch:
        if threading.current_thread() is not threading.main_thread():  # handlers need the main thread
            log.info("not in the main thread: %s not handled (no checkpoint on preemption)", "/".join(self.names))
            return self
        for name in self.names:
            sig = getattr(signal, name)
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
