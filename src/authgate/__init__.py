"""AuthGate: a self-hostable authentication service for REST APIs."""

from __future__ import annotations

__version__ = "0.1.0"

from authgate.app import create_app  # noqa: E402

__all__ = ["__version__", "create_app"]
