"""Optional dependencies: imported when a feature needs them, with the extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or say which extra of contrastkit installs it.

    Raises:
        ModuleNotFoundError: ``"<feature> needs <package>: pip install 'contrastkit[<extra>]'"``.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        package = module.split(".")[0]
        raise ModuleNotFoundError(
            f"{feature} needs {package}: pip install 'contrastkit[{extra}]'", name=err.name
        ) from err
