"""Access to provider bindings: generated ones (Scaleway) are put on sys.path first.

Import provider classes through this module's `scaleway()` helper so a missing
generation step gives one clear message instead of a ModuleNotFoundError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from toolchain import bindings


def scaleway(resource_module: str) -> ModuleType:
    """The generated binding module for one Scaleway resource, e.g. scaleway("vpc")."""
    bindings.ensure_importable()
    return importlib.import_module(f"{bindings.PACKAGE}.scaleway.{bindings.module_name(resource_module)}")
