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

# The multi-process tests run every rank on this machine: bind gloo to the loopback interface so
# that a flapping external interface cannot reset their connections (seen once in CI as a gloo
# abort, "terminate called without an active exception").
if sys.platform == "linux" and Path("/sys/class/net/lo").exists():
    import os

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
