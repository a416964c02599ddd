"""Every peer that scripts/install_peers.sh promises must import: a missing peer FAILS here.

The parity tests skip (with the reason) when a peer cannot be imported; this test makes sure
that in CI, where `make test` runs the install script first, those skips cannot happen silently.
"""

from __future__ import annotations

import pytest
import torch
from peers import PEERS, import_peer, installed_version


@pytest.mark.parametrize("dist", sorted(PEERS))
def test_peer_imports_at_pinned_version(dist: str) -> None:
    pinned, module = PEERS[dist]
    have = installed_version(dist)
    assert have is not None, (
        f"{dist} is not installed; run `bash scripts/install_peers.sh .venv/bin/python`"
    )
    assert have == pinned, f"{dist}: parity tests are written against {pinned}, found {have}"
    mod = import_peer(dist)  # raises (test fails) on any import error
    assert mod.__name__ == module


def test_peers_left_torch_alone() -> None:
    for dist in PEERS:
        import_peer(dist)
    assert torch.__version__.split("+")[0] == "2.13.0"
