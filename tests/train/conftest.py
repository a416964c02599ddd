from __future__ import annotations

import pytest

from contrastkit.data.fashion_mnist import DataNotFoundError, load_fashion_mnist


@pytest.fixture(scope="session", autouse=True)
def _needs_fmnist() -> None:
    try:
        load_fashion_mnist("test")
    except DataNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Baseline / text caches go to a per-session temp folder, never the user's home.
    cache = tmp_path_factory.getbasetemp() / "ck-cache"
    monkeypatch.setenv("CONTRASTKIT_CACHE_DIR", str(cache))
