"""Deferred imports, so that ``authgate login|whoami|token|logout`` start without the server
stack (Flask, SQLAlchemy, Authlib ...): the admin commands import it on first use."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for a module; the module is imported on the first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}>"


class LazyAttribute:
    """Stands for ``module.attribute`` (an object such as ``db``); imported on first use."""

    def __init__(self, module: str, attribute: str) -> None:
        self._module = module
        self._attribute = attribute

    def __getattr__(self, name: str) -> Any:
        target = getattr(importlib.import_module(self._module), self._attribute)
        return getattr(target, name)

    def __repr__(self) -> str:
        return f"<lazy {self._module}.{self._attribute}>"
