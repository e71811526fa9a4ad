"""AuthGate: a self-hostable authentication service for REST APIs."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "create_app"]


def __getattr__(name: str) -> Any:
    """``authgate.create_app``, imported on first use: ``import authgate.client`` and
    ``import authgate.resource`` stay light (no SQLAlchemy, no Authlib)."""
    if name == "create_app":
        from authgate.app import create_app

        return create_app
    raise AttributeError(f"module 'authgate' has no attribute {name!r}")
