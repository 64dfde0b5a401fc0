"""Errors every stage may raise; the lowest layer of the package (imports nothing of it).

:class:`BadInput` marks a known kind of bad input, as opposed to a bug: the workflow turns it into
a recorded rejection (a row in ``results/qc/rejected.csv``) instead of failing the run.
"""

from __future__ import annotations

import os


class BadInput(ValueError):
    """A known kind of bad input (not a bug): the volume is rejected with this message.

    ``file``: the offending file or folder (else taken from a leading ``/path: `` in the
    message); ``action``: what the user can do (else taken from the message's imperative
    sentences).
    """

    def __init__(self, message: str, *, file: str | os.PathLike | None = None, action: str | None = None):
        super().__init__(message)
        self.file = None if file is None else str(file)
        self.action = action
