"""Optional dependencies, imported only when a feature needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from nvdimm.errors import NotSupported


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or explain which extra of the package brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NotSupported(
            f"{feature} needs {module.split('.')[0]}, which is not installed; install the "
            f"optional extra: pip install 'nvdimm-model[{extra}]'") from None
