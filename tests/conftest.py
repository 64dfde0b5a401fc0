"""Shared by every test: ``ROOT``, the repository root (``from conftest import ROOT``), which is
also put on ``sys.path`` so the tests import the package from this checkout."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
