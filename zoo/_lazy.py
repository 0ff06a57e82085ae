"""Lazy public names for a package's ``__init__``: ``name -> "module:attribute"`` (or ``"module"`` for a
submodule), imported on first access and then cached in the package's namespace (PEP 562).

Standard library only: ``import zoo`` and the catalogue path must stay torch-free.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, namespace: dict[str, Any], table: dict[str, str],
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for the lazy names in ``table``.

    Example:
        >>> __getattr__, __dir__ = lazy_exports(__name__, globals(), {"load": "zoo.factory:load"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        value = getattr(module, attr) if attr else module
        namespace[name] = value  # resolve once
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
