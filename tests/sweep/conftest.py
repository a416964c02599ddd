from __future__ import annotations

import pytest

from contrastkit.data.fashion_mnist import DataNotFoundError, load_fashion_mnist


@pytest.fixture(scope="session")
def fmnist() -> None:
    try:
        load_fashion_mnist("test")
    except DataNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")
