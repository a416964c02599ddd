"""Makes the test helper modules importable under ``--import-mode=importlib``.

``tests/peers.py`` (``from peers import load_pml``) and the ``_*.py`` helpers of test
sub-packages (``from _train_helpers import ...``) are plain modules, not test files.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for folder in [_TESTS, *(p.parent for p in _TESTS.glob("*/_*.py"))]:
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
