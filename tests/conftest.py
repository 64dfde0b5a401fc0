"""Shared by every test: the repository root goes first on ``sys.path``, so the tests import the
package from this checkout. Tests that need the root's path take ``ROOT`` from
:mod:`medcyclegan.testing.workflow`; builders of test data live in :mod:`medcyclegan.testing`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
