"""A package `__init__` that lists its public names and imports each one's module on first use (PEP 562).

Written by hand: the standard library gives the hook (a module-level `__getattr__`), not the table lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_api(package: str, api: dict[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """(`__getattr__`, `__dir__`) for `package`: name -> the module (relative to `package`) that defines it.

    A name, once imported, is stored in `namespace` (the package's globals), so the hook runs once per name."""

    def __getattr__(name: str):
        if name in api:
            value = getattr(importlib.import_module(api[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*namespace, *api])

    return __getattr__, __dir__
